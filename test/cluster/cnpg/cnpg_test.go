package cnpg

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

func moduleDir(t *testing.T) string {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := gobuild.ModuleDir(context.Background(), cache, Component())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// The operator is CloudNativePG's own release kustomization with only the image and its pull policy changed.
func TestCNPGRendersUpstreamRelease(t *testing.T) {
	objs, err := Objects(moduleDir(t), "txmesh.local/cloudnative-pg:1.30.0")
	if err != nil {
		t.Fatal(err)
	}
	d := manifests.Find(objs, "Deployment", "cnpg-controller-manager")
	if d == nil {
		t.Fatal("no operator Deployment")
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := cs[0].(map[string]any)
	if c["image"] != "txmesh.local/cloudnative-pg:1.30.0" || c["imagePullPolicy"] != "IfNotPresent" {
		t.Fatalf("operator container image %v policy %v", c["image"], c["imagePullPolicy"])
	}
	env, _ := json.Marshal(c["env"])
	if !strings.Contains(string(env), `"value":"txmesh.local/cloudnative-pg:1.30.0"`) {
		t.Fatalf("OPERATOR_IMAGE_NAME not the local image: %s", env)
	}
	for _, want := range [][2]string{{"CustomResourceDefinition", "clusters.postgresql.cnpg.io"},
		{"MutatingWebhookConfiguration", "cnpg-mutating-webhook-configuration"},
		{"ValidatingWebhookConfiguration", "cnpg-validating-webhook-configuration"},
		{"Namespace", "cnpg-system"}} {
		if manifests.Find(objs, want[0], want[1]) == nil {
			t.Errorf("no %s %s in the release", want[0], want[1])
		}
	}
}

// Without mmdebstrap the operand image names the package to install.
func TestPostgresNamesMissingTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Postgres(context.Background(), &images.Builder{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "mmdebstrap not found: apt-get install mmdebstrap") {
		t.Fatalf("error %v, want mmdebstrap and its package named", err)
	}
}
