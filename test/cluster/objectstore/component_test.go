package objectstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// versitygw is the cached (or just built) gateway binary.
func versitygw(t *testing.T) string {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := gobuild.Ensure(context.Background(), cache, Component(), io.Discard)
	if err != nil {
		t.Fatalf("build versitygw: %v", err)
	}
	return bins["versitygw"]
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(versitygw(t), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("versitygw --version: %v\n%s", err, out)
	}
	if want := "Version  : " + strings.TrimPrefix(Version, "v"); !strings.Contains(string(out), want) {
		t.Errorf("versitygw --version printed %q, want a line %q", out, want)
	}
}

// The gateway, started with the Deployment's arguments (StartLocal) on 127.0.0.1 over a temporary directory,
// serves S3 to a real client: a bucket is created, an object put, listed and read back, and it lands in the
// directory; a request signed with a wrong secret key, or not signed, is refused.
func TestServesS3(t *testing.T) {
	bin := versitygw(t)
	dir := t.TempDir() // removed by the test framework after the gateway is killed (cleanups run last-first)
	const access, secret = "txmesh-test", "txmesh-test-secret-key"
	g, err := StartLocal(bin, dir, Credentials{AccessKeyID: access, SecretAccessKey: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", g.Log())
		}
	})
	endpoint := g.Endpoint

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s3 := client(t, endpoint, access, secret)
	const bucket, key = "cnpg-backups", "bank-db/base/one.txt"
	body := []byte("a base backup, in spirit\n")
	if err := s3.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	if _, err := s3.PutObject(ctx, bucket, key, bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "text/plain"}); err != nil {
		t.Fatalf("put: %v", err)
	}
	var listed []string
	for o := range s3.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: "bank-db/", Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list: %v", o.Err)
		}
		listed = append(listed, fmt.Sprintf("%s %d", o.Key, o.Size))
	}
	if want := fmt.Sprintf("%s %d", key, len(body)); strings.Join(listed, ",") != want {
		t.Errorf("listed %v, want [%s]", listed, want)
	}
	obj, err := s3.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	got, err := io.ReadAll(obj)
	obj.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Errorf("get returned %q (%v), want %q", got, err, body)
	}
	// The posix backend keeps a bucket as a directory and an object as a file.
	if onDisk, err := os.ReadFile(filepath.Join(dir, bucket, key)); err != nil || !bytes.Equal(onDisk, body) {
		t.Errorf("object on disk: %q (%v)", onDisk, err)
	}

	// Refused: a request signed with a wrong secret key, and an unsigned one.
	wrong := client(t, endpoint, access, secret+"x")
	_, err = wrong.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if resp := minio.ToErrorResponse(err); resp.StatusCode != http.StatusForbidden {
		t.Errorf("stat with a wrong secret key: %v (HTTP %d), want 403", err, resp.StatusCode)
	}
	for o := range wrong.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if resp := minio.ToErrorResponse(o.Err); resp.StatusCode != http.StatusForbidden || resp.Code != "SignatureDoesNotMatch" {
			t.Errorf("list with a wrong secret key: %q %v (%s, HTTP %d), want 403 SignatureDoesNotMatch", o.Key, o.Err, resp.Code, resp.StatusCode)
		}
	}
	anon := client(t, endpoint, "", "")
	if _, err := anon.StatObject(ctx, bucket, key, minio.StatObjectOptions{}); minio.ToErrorResponse(err).StatusCode != http.StatusForbidden {
		t.Errorf("stat without a signature: %v, want 403", err)
	}
	// The probes' endpoint.
	if resp, err := http.Get("http://" + endpoint + "/health"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func client(t *testing.T, endpoint, access, secret string) *minio.Client {
	t.Helper()
	c, err := minio.New(endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(access, secret, ""), Secure: false, Region: Region,
		BucketLookup: minio.BucketLookupPath, MaxRetries: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
