package barman

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/certs"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Names in the rendered manifests: the plugin runs in the operator's namespace, behind a Service whose
// annotations tell the operator the port and the two Secrets of its mutual TLS.
const (
	Namespace = "cnpg-system"
	// Name is the Deployment's and the Service's: the operator dials barman-cloud.cnpg-system.svc:9090 and
	// checks the server name barman-cloud.
	Name         = "barman-cloud"
	PluginName   = "barman-cloud.cloudnative-pg.io"
	ServerSecret = "barman-cloud-server-tls" // the plugin's serving key pair; the operator trusts its tls.crt
	ClientSecret = "barman-cloud-client-tls" // the operator's client key pair; the plugin trusts its tls.crt
	// LeaderLease is the plugin's leader election Lease (upstream's LeaderElectionID): only its holder serves.
	LeaderLease = "822e3f5c.cnpg.io"
)

//go:embed kustomization.yaml
var kustomization string

// Objects renders the plugin from its module (moduleDir, gobuild.ModuleDir of Component) with the given
// plugin and sidecar images and the TLS Secrets (TLSSecrets), which come first: the Deployment mounts them.
func Objects(moduleDir, pluginImage, sidecarImage string, tls []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	if manifests.Find(tls, "Secret", ServerSecret) == nil || manifests.Find(tls, "Secret", ClientSecret) == nil {
		return nil, fmt.Errorf("barman: the TLS Secrets %s and %s are needed (TLSSecrets)", ServerSecret, ClientSecret)
	}
	name, tag := manifests.SplitRef(pluginImage)
	k := strings.NewReplacer("PLUGIN_IMAGE_NAME", name, "PLUGIN_IMAGE_TAG", tag, "SIDECAR_IMAGE_REF", sidecarImage).Replace(kustomization)
	objs, err := manifests.RenderModule([]byte(k), moduleDir, nil)
	if err != nil {
		return nil, err
	}
	return append(append([]*unstructured.Unstructured{}, tls...), objs...), nil
}

// TLSSecrets makes what cert-manager would upstream: a CA in dir (the harness's, never in the cluster), the
// plugin's server certificate for the name the operator dials and the operator's client certificate, as
// kubernetes.io/tls Secrets in Namespace (tls.crt, tls.key, ca.crt). Each side loads the other's tls.crt as
// its trusted roots (the operator the server Secret's, the plugin its --client-cert file), so tls.crt is the
// leaf followed by the CA: a Go client sends its certificate only when its issuer is among the roots the
// server names, and a leaf alone names only itself (cert-manager's self-signed certificates are their own
// issuers). The CA signs these two certificates only, and their key usages keep them apart.
func TLSSecrets(dir string) ([]*unstructured.Unstructured, error) {
	ca, err := certs.NewCA(dir, "txmesh e2e barman-cloud plugin CA")
	if err != nil {
		return nil, err
	}
	svc := Name + "." + Namespace
	specs := []struct {
		secret string
		spec   certs.Spec
	}{
		{ServerSecret, certs.Spec{Name: "barman-cloud-server", CN: Name, Server: true, DNS: []string{Name, svc, svc + ".svc"}}},
		{ClientSecret, certs.Spec{Name: "barman-cloud-client", CN: "barman-cloud-client", Client: true}},
	}
	var out []*unstructured.Unstructured
	for _, s := range specs {
		crt, key, err := ca.Issue(s.spec)
		if err != nil {
			return nil, err
		}
		c, err := os.ReadFile(crt)
		if err != nil {
			return nil, err
		}
		k, err := os.ReadFile(key)
		if err != nil {
			return nil, err
		}
		if len(c) == 0 || len(k) == 0 {
			return nil, errors.New("barman: empty certificate or key from " + dir)
		}
		out = append(out, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
			"metadata": map[string]any{"name": s.secret, "namespace": Namespace,
				"labels": map[string]any{"app.kubernetes.io/part-of": "txmesh-e2e"}},
			"stringData": map[string]any{"tls.crt": string(c) + string(ca.PEM()), "tls.key": string(k), "ca.crt": string(ca.PEM())},
		}})
	}
	return out, nil
}
