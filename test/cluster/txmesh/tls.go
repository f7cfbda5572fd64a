package txmesh

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/certs"
)

// TLS are the files of the apps' own mTLS (outside a mesh): a CA and the client certificate the e2e driver
// presents to the Store's API.
type TLS struct {
	CA, ClientCert, ClientKey string
}

// AppTLS issues (once per directory: a reused cluster keeps its certificates) the CA, a certificate per app
// — serverAuth and clientAuth, named for its Service — and the driver's client certificate; it returns the
// files and the Secrets bank-tls and store-tls (tls.crt, tls.key, ca.crt) for namespace ns.
func AppTLS(dir, ns string) (TLS, []*unstructured.Unstructured, error) {
	t := TLS{CA: filepath.Join(dir, "ca.crt"), ClientCert: filepath.Join(dir, "e2e-client.crt"),
		ClientKey: filepath.Join(dir, "e2e-client.key")}
	if _, err := os.Stat(t.ClientKey); errors.Is(err, os.ErrNotExist) {
		ca, err := certs.NewCA(dir, "txmesh-apps-ca")
		if err != nil {
			return t, nil, err
		}
		for _, app := range []string{"bank", "store"} {
			if _, _, err := ca.Issue(certs.Spec{Name: app, CN: app, Server: true, Client: true,
				DNS: []string{app, app + "." + ns, app + "." + ns + ".svc", app + "." + ns + ".svc.cluster.local"}}); err != nil {
				return t, nil, err
			}
		}
		if _, _, err := ca.Issue(certs.Spec{Name: "e2e-client", CN: "e2e-client", Client: true}); err != nil {
			return t, nil, err
		}
	} else if err != nil {
		return t, nil, err
	}
	caPEM, err := os.ReadFile(t.CA)
	if err != nil {
		return t, nil, err
	}
	var secrets []*unstructured.Unstructured
	for _, app := range []string{"bank", "store"} {
		crt, err := os.ReadFile(filepath.Join(dir, app+".crt"))
		if err != nil {
			return t, nil, err
		}
		key, err := os.ReadFile(filepath.Join(dir, app+".key"))
		if err != nil {
			return t, nil, err
		}
		b64 := base64.StdEncoding.EncodeToString
		secrets = append(secrets, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
			"metadata": map[string]any{"name": app + "-tls", "namespace": ns,
				"labels": map[string]any{"app": app, "app.kubernetes.io/part-of": "txmesh"}},
			"data": map[string]any{"tls.crt": b64(crt), "tls.key": b64(key), "ca.crt": b64(caPEM)},
		}})
	}
	return t, secrets, nil
}
