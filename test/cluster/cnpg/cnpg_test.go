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

// The operand image's mirror is the machine's Debian archive for its own release: not its security
// archive, not a disabled entry, options and comments skipped, one-line and deb822 formats alike.
func TestMirrorIn(t *testing.T) {
	for _, c := range []struct {
		name, text string
		deb822     bool
		want       string
	}{
		{"one-line", "# deb http://old.example/debian bookworm main\ndeb http://sec.example/debian-security bookworm-security main\n" +
			"deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n", false, "http://mirror.example/debian"},
		{"one-line, other release", "deb http://mirror.example/debian trixie main\n", false, ""},
		{"deb822", "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n" +
			"Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n", true, "http://mirror.example/debian"},
		{"deb822, disabled", "Types: deb\nEnabled: no\nURIs: http://mirror.example/debian\nSuites: bookworm\n", true, ""},
		{"deb822, sources only", "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\n", true, ""},
	} {
		if got := mirrorIn(c.text, c.deb822, "bookworm"); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// The mirror is found by the machine's Debian release; another distribution is refused by name, before
// mmdebstrap would ask its mirror for a Debian suite.
func TestDebianCodename(t *testing.T) {
	if c, err := debianCodename("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n"); err != nil || c != "bookworm" {
		t.Errorf("debian: %q, %v", c, err)
	}
	if _, err := debianCodename("ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n"); err == nil ||
		!strings.Contains(err.Error(), `this machine is "ubuntu"`) {
		t.Errorf("ubuntu: %v, want it refused by name", err)
	}
	if _, err := debianCodename("ID=debian\n"); err == nil || !strings.Contains(err.Error(), "VERSION_CODENAME") {
		t.Errorf("no codename: %v", err)
	}
}
