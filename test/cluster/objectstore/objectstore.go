package objectstore

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Where it runs (objectstore.yaml) and how clients reach it.
const (
	Namespace = "objectstore"
	Name      = "objectstore" // the host daemon and the Service
	Port      = 7070          // versitygw's default
	URL       = "http://objectstore.objectstore:7070"
	Region    = "us-east-1" // versitygw's default; a client signs with it
	// RootSecret is the Secret in Namespace with the root account's keys, under the key names the shipped
	// ObjectStores read (kustomize/components/backup: Secret backup-s3-credentials); a client Secret,
	// CredentialsSecret, has the same layout.
	RootSecret = "objectstore-root"
	AccessKey  = "ACCESS_KEY_ID"
	SecretKey  = "SECRET_ACCESS_KEY"
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

// Objects renders what makes the host's gateway a Service of the cluster: namespace objectstore, Secret
// objectstore-root with its keys (what a later run reads back: the daemon keeps running with them), and
// Service objectstore with an EndpointSlice at hostIP (the host's bridge address), Port.
func Objects(hostIP string, c Credentials) ([]*unstructured.Unstructured, error) {
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return nil, errors.New("object store: empty access or secret key")
	}
	if ip := net.ParseIP(hostIP); ip == nil || ip.To4() == nil {
		return nil, fmt.Errorf("object store: host address %q is not IPv4", hostIP)
	}
	objs, err := manifests.Decode([]byte(strings.ReplaceAll(manifest, "HOST_IP", hostIP)))
	if err != nil {
		return nil, err
	}
	// The Secret after the Namespace.
	out := append([]*unstructured.Unstructured{}, objs[0], CredentialsSecret(Namespace, RootSecret, c))
	return append(out, objs[1:]...), nil
}

// Env is the gateway's environment: its root keys.
func Env(c Credentials) []string {
	return []string{"ROOT_ACCESS_KEY_ID=" + c.AccessKeyID, "ROOT_SECRET_ACCESS_KEY=" + c.SecretAccessKey}
}
