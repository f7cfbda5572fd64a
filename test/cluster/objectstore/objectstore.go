package objectstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Where it runs (objectstore.yaml) and how clients reach it.
const (
	Namespace = "objectstore"
	Name      = "objectstore" // the Deployment, its PVC and the Service
	Port      = 7070          // versitygw's default
	URL       = "http://objectstore.objectstore:7070"
	Region    = "us-east-1" // versitygw's default; a client signs with it
	// RootSecret is the Secret in Namespace with the root account's keys, under the key names the shipped
	// ObjectStores read (kustomize/components/backup: Secret backup-s3-credentials); a client Secret,
	// CredentialsSecret, has the same layout.
	RootSecret = "objectstore-root"
	AccessKey  = "ACCESS_KEY_ID"
	SecretKey  = "SECRET_ACCESS_KEY"
	dataDir    = "/data"
)

// Args are the gateway's arguments: listen on listen (host:port or :port), answer GET /health (the probes), and
// serve the posix backend over dir (a bucket is a directory of it, object metadata in extended attributes).
// The keys come from ROOT_ACCESS_KEY_ID and ROOT_SECRET_ACCESS_KEY.
func Args(listen, dir string) []string {
	return []string{"--port", listen, "--health", "/health", "--region", Region, "posix", dir}
}

// Credentials are the root account's S3 keys.
type Credentials struct{ AccessKeyID, SecretAccessKey string }

// NewCredentials makes random keys (the harness makes them per cluster; nothing is written down).
func NewCredentials() (Credentials, error) {
	b := make([]byte, 30)
	if _, err := rand.Read(b); err != nil {
		return Credentials{}, err
	}
	h := hex.EncodeToString(b)
	return Credentials{AccessKeyID: "txmesh" + h[:14], SecretAccessKey: h[14:]}, nil
}

// CredentialsSecret is a Secret holding c under AccessKey and SecretKey, e.g. for an ObjectStore's
// s3Credentials in the databases' namespace.
func CredentialsSecret(namespace, name string, c Credentials) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"stringData": map[string]any{AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey},
	}}
}

//go:embed objectstore.yaml
var manifest string

// Objects renders the object store with the given image and root keys: namespace objectstore, Secret
// objectstore-root, the PVC, the Deployment (its pod template carries the keys' hash, so new keys roll it) and
// the Service.
func Objects(image string, c Credentials) ([]*unstructured.Unstructured, error) {
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return nil, errors.New("object store: empty access or secret key")
	}
	sum := sha256.Sum256([]byte(c.AccessKeyID + "\x00" + c.SecretAccessKey))
	y := strings.NewReplacer("OBJECTSTORE_IMAGE", image, "CREDENTIALS_SHA256", hex.EncodeToString(sum[:])).Replace(manifest)
	objs, err := manifests.Decode([]byte(y))
	if err != nil {
		return nil, err
	}
	d := manifests.Find(objs, "Deployment", Name)
	if d == nil {
		return nil, errors.New("objectstore.yaml: no Deployment " + Name)
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	args := []any{}
	for _, a := range Args(":"+strconv.Itoa(Port), dataDir) {
		args = append(args, a)
	}
	cs[0].(map[string]any)["args"] = args
	if err := unstructured.SetNestedSlice(d.Object, cs, "spec", "template", "spec", "containers"); err != nil {
		return nil, fmt.Errorf("objectstore.yaml: %w", err)
	}
	// The Secret after the Namespace, before the Deployment that reads it.
	out := append([]*unstructured.Unstructured{}, objs[0], CredentialsSecret(Namespace, RootSecret, c))
	return append(out, objs[1:]...), nil
}

// Wait waits until the object store is available.
func Wait(ctx context.Context, a *manifests.Applier) error {
	return a.Wait(ctx, manifests.Deployments, Namespace, Name, 3*time.Minute, manifests.DeploymentAvailable)
}
