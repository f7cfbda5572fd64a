package barman

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/objectstore"
)

// sidecar builds (or finds cached) the sidecar image in the cluster's image cache.
func sidecar(t *testing.T) images.Image {
	t.Helper()
	img, err := SidecarImage(context.Background(), &images.Builder{Log: testLog{t}}, map[string]string{"manager": manager(t)})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// The sidecar image: the manager as the entrypoint, as 26:26, Debian's barman-cloud tools on PATH, barman's
// version recorded, and nothing of the build machine's apt sources.
func TestSidecarImage(t *testing.T) {
	img := sidecar(t)
	t.Logf("%s: python3-barman %s, %d MiB", img.Ref, img.Version, img.Size>>20)
	if !regexp.MustCompile(`^3\.\d+\.\d+`).MatchString(img.Version) {
		t.Errorf("python3-barman version %q, want 3.x", img.Version)
	}
	i, err := img.Open()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := i.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != Binary || cfg.Config.User != "26:26" ||
		cfg.Config.Labels["io.txmesh.debian.python3-barman"] != img.Version {
		t.Errorf("entrypoint %v, user %q, labels %v", cfg.Config.Entrypoint, cfg.Config.User, cfg.Config.Labels)
	}
	rc := mutate.Extract(i)
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimPrefix(h.Name, "./")
		seen[n] = true
		if h.Typeflag == tar.TypeReg && (strings.HasPrefix(n, "etc/apt/sources.list") || n == "etc/resolv.conf" || n == "etc/hostname") {
			t.Errorf("%s should not be in the image", n)
		}
		if n == "etc/passwd" {
			raw, _ := io.ReadAll(tr)
			if !regexp.MustCompile(`\npostgres:[x*]:26:26:`).Match(raw) {
				t.Errorf("no postgres 26:26 in /etc/passwd:\n%s", raw)
			}
		}
	}
	for _, p := range []string{"manager", "usr/bin/barman-cloud-backup", "usr/bin/barman-cloud-wal-archive",
		"usr/bin/barman-cloud-wal-restore", "usr/bin/barman-cloud-restore", "usr/bin/barman-cloud-check-wal-archive",
		"usr/bin/barman-cloud-backup-delete", "usr/bin/tar"} {
		if !seen[p] {
			t.Errorf("/%s missing", p)
		}
	}
}

// The image's barman-cloud tools against the object store, as the sidecar runs them (as 26:26, S3 keys from
// the environment, the store's endpoint): the image's file system is unpacked and the tools run chrooted into
// it against versitygw on 127.0.0.1. An empty archive passes the check, a WAL segment is archived and
// restored intact, then the check refuses the archive (no longer empty), and a wrong secret key is refused.
func TestSidecarToolsAgainstObjectStore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("unpacking the image and chroot need root")
	}
	img := sidecar(t)
	store, creds := startStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s3, err := minio.New(store.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(creds.AccessKeyID, creds.SecretAccessKey, ""),
		Region: objectstore.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}

	root := unpack(t, img)
	wal := "000000010000000000000001"
	segment := make([]byte, 1<<20)
	for i := range segment {
		segment[i] = byte(i * 7)
	}
	if err := os.MkdirAll(filepath.Join(root, "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "wal", wal), segment, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"wal", "wal/" + wal} {
		if err := os.Chown(filepath.Join(root, p), 26, 26); err != nil {
			t.Fatal(err)
		}
	}
	dest := "s3://" + bucketName + "/"
	common := []string{"--endpoint-url", "http://" + store.Endpoint, "--cloud-provider", "aws-s3"}
	run := func(secret string, tool string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "/usr/bin/"+tool, append(append([]string{}, common...), args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/tmp",
			"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_DEFAULT_REGION=" + objectstore.Region}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: &syscall.Credential{Uid: 26, Gid: 26},
			Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(creds.SecretAccessKey, "barman-cloud-check-wal-archive", dest, "bank-db"); err != nil {
		t.Fatalf("check of the empty archive: %v\n%s", err, out)
	}
	if out, err := run(creds.SecretAccessKey, "barman-cloud-wal-archive", dest, "bank-db", "/wal/"+wal); err != nil {
		t.Fatalf("archive: %v\n%s", err, out)
	}
	var keys []string
	for o := range s3.ListObjects(ctx, bucketName, minio.ListObjectsOptions{Prefix: "bank-db/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	t.Logf("archived: %v", keys)
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "bank-db/wals/0000000100000000/"+wal) {
		t.Errorf("objects after archiving: %v", keys)
	}
	if out, err := run(creds.SecretAccessKey, "barman-cloud-wal-restore", dest, "bank-db", wal, "/wal/restored"); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(root, "wal", "restored")); err != nil || !bytes.Equal(got, segment) {
		t.Errorf("restored segment: %d bytes (%v), want the %d archived", len(got), err, len(segment))
	}
	if out, err := run(creds.SecretAccessKey, "barman-cloud-check-wal-archive", dest, "bank-db"); err == nil {
		t.Errorf("the check passed an archive that holds WAL:\n%s", out)
	} else {
		t.Logf("check of the used archive refused it (%v): %s", err, lastLine(out))
	}
	if out, err := run(creds.SecretAccessKey+"x", "barman-cloud-wal-archive", dest, "other-db", "/wal/"+wal); err == nil {
		t.Errorf("archived with a wrong secret key:\n%s", out)
	} else if !strings.Contains(out, "SignatureDoesNotMatch") && !strings.Contains(out, "403") {
		t.Errorf("archiving with a wrong secret key failed, but not for the key (%v):\n%s", err, out)
	} else {
		t.Logf("a wrong secret key refused (%v): %s", err, lastLine(out))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// unpack writes the image's flattened file system into a temporary directory (as root: owners, modes and
// device nodes kept) and returns it.
func unpack(t *testing.T, img images.Image) string {
	t.Helper()
	root := t.TempDir()
	tag, err := name.NewTag(img.Ref)
	if err != nil {
		t.Fatal(err)
	}
	i, err := tarball.ImageFromPath(img.Path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(i)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return root
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.Clean("/"+h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := uint32(h.Mode & 0o7777)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600); err == nil {
				_, err = io.Copy(f, tr)
				err = errors.Join(err, f.Close())
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeLink:
			err = os.Link(filepath.Join(root, filepath.Clean("/"+h.Linkname)), p)
		case tar.TypeChar, tar.TypeBlock:
			kind := uint32(syscall.S_IFCHR)
			if h.Typeflag == tar.TypeBlock {
				kind = syscall.S_IFBLK
			}
			dev := int((h.Devmajor&0xfff)<<8 | h.Devminor&0xff | (h.Devminor&^0xff)<<12)
			err = syscall.Mknod(p, kind|mode, dev)
		default:
			continue
		}
		if err != nil {
			t.Fatalf("unpack %s: %v", h.Name, err)
		}
		if h.Typeflag != tar.TypeLink {
			if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
				t.Fatal(err)
			}
		}
		if h.Typeflag != tar.TypeSymlink && h.Typeflag != tar.TypeLink {
			if err := os.Chmod(p, os.FileMode(mode&0o777)|modeBits(mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// modeBits turns setuid, setgid and sticky bits of a tar mode into Go's.
func modeBits(m uint32) os.FileMode {
	var b os.FileMode
	if m&0o4000 != 0 {
		b |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		b |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		b |= os.ModeSticky
	}
	return b
}

// pgBin holds the machine's PostgreSQL server binaries (the repository's local tests use them too).
const pgBin = "/usr/lib/postgresql/15/bin"

// A base backup and its restore with the image's tools, against a throwaway PostgreSQL of this machine and
// the object store: barman-cloud-backup (a multipart upload of the data directory's tar) while PostgreSQL
// runs, barman-cloud-backup-list finds it, barman-cloud-restore brings the data directory back. The server
// runs as the machine's postgres user from a directory inside the unpacked image (the tools read the data
// directory directly, at the path the server reports, which a symbolic link inside the image resolves).
func TestSidecarBaseBackup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("unpacking the image, chroot and running PostgreSQL as postgres need root")
	}
	if _, err := os.Stat(pgBin + "/initdb"); err != nil {
		t.Fatalf("PostgreSQL server binaries: %v (apt-get install postgresql-15)", err)
	}
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	img := sidecar(t)
	store, creds := startStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	root := unpack(t, img)
	// The test's temporary directories are 0700: postgres must reach its own below them.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, sock, restored := filepath.Join(root, "pgdata"), filepath.Join(root, "run", "pg"), filepath.Join(root, "restored")
	for _, d := range []string{data, sock, restored} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	// The server reports its data directory by its path on this machine: the same path inside the image leads
	// to it.
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, data)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/pgdata", filepath.Join(root, data)); err != nil {
		t.Fatal(err)
	}
	asPostgres := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Setpgid: true,
		Pdeathsig: syscall.SIGKILL}
	pg := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.SysProcAttr, cmd.Dir = asPostgres, root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	pg(pgBin+"/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
	t.Cleanup(func() { stopPostgres(t, data) })
	pg(pgBin+"/pg_ctl", "-D", data, "-w", "-t", "60", "-l", filepath.Join(data, "server.log"), "-o",
		"-c listen_addresses='' -c unix_socket_directories="+sock+" -c fsync=off", "start")

	dest := "s3://" + bucketName + "/"
	run := func(tool string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "/usr/bin/"+tool, append([]string{"--endpoint-url", "http://" + store.Endpoint,
			"--cloud-provider", "aws-s3"}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/tmp", "PGUSER=postgres",
			"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
			"AWS_DEFAULT_REGION=" + objectstore.Region}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: asPostgres.Credential, Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	start := time.Now()
	if out, err := run("barman-cloud-backup", "--host", "/run/pg", "--user", "postgres", "--name", "e2e-base", dest, "bank-db"); err != nil {
		t.Fatalf("barman-cloud-backup: %v\n%s", err, out)
	}
	t.Logf("base backup in %s", time.Since(start).Round(time.Millisecond))
	out, err := run("barman-cloud-backup-list", "--format", "json", dest, "bank-db")
	if err != nil {
		t.Fatalf("barman-cloud-backup-list: %v\n%s", err, out)
	}
	var list struct {
		Backups []struct {
			BackupID   string `json:"backup_id"`
			BackupName string `json:"backup_name"`
			Status     string `json:"status"`
		} `json:"backups_list"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &list); err != nil {
		t.Fatalf("backup list: %v\n%s", err, out)
	}
	if len(list.Backups) != 1 || list.Backups[0].Status != "DONE" || list.Backups[0].BackupName != "e2e-base" {
		t.Fatalf("backups: %+v", list.Backups)
	}
	if out, err := run("barman-cloud-restore", dest, "bank-db", list.Backups[0].BackupID, "/restored"); err != nil {
		t.Fatalf("barman-cloud-restore: %v\n%s", err, out)
	}
	// The restored directory is the server's as of the backup: its version, its control file (which the
	// running server may have rewritten since, so not compared), and the backup_label that pg_backup_stop
	// gave the backup only.
	want, err := os.ReadFile(filepath.Join(data, "PG_VERSION"))
	if got, gerr := os.ReadFile(filepath.Join(restored, "PG_VERSION")); err != nil || gerr != nil || !bytes.Equal(got, want) {
		t.Errorf("restored PG_VERSION %q (%v), original %q (%v)", got, gerr, want, err)
	}
	if st, err := os.Stat(filepath.Join(restored, "global", "pg_control")); err != nil || st.Size() != 8192 {
		t.Errorf("restored global/pg_control: %v", err)
	}
	if label, err := os.ReadFile(filepath.Join(restored, "backup_label")); err != nil || !strings.Contains(string(label), "START WAL LOCATION") {
		t.Errorf("restored backup_label %q (%v)", label, err)
	}
	if _, err := os.Stat(filepath.Join(data, "backup_label")); err == nil {
		t.Error("the running server's directory has a backup_label: the backup was not concurrent")
	}
}

const bucketName = "backups"

// startStore runs versitygw on 127.0.0.1 over a temporary directory with a bucket bucketName, stopped at the
// end of the test.
func startStore(t *testing.T) (*objectstore.Local, objectstore.Credentials) {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gobuild.Ensure(context.Background(), cache, objectstore.Component(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := objectstore.NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	store, err := objectstore.StartLocal(gw["versitygw"], t.TempDir(), creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		store.Stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", store.Log())
		}
	})
	s3, err := minio.New(store.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(creds.AccessKeyID, creds.SecretAccessKey, ""),
		Region: objectstore.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.MakeBucket(context.Background(), bucketName, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	return store, creds
}

// stopPostgres stops the test's server at once, and kills it if pg_ctl cannot.
func stopPostgres(t *testing.T, data string) {
	raw, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return // never started, or stopped
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(raw), "\n", 2)[0])
	cmd := exec.Command(pgBin+"/pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(owner(data)), Gid: uint32(group(data))}}
	if out, err := cmd.CombinedOutput(); err != nil && pid > 0 {
		t.Logf("pg_ctl stop: %v %s; killing %d", err, out, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func owner(p string) int {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return int(st.Sys().(*syscall.Stat_t).Uid)
}

func group(p string) int {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return int(st.Sys().(*syscall.Stat_t).Gid)
}
