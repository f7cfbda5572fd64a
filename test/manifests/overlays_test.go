package manifests

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// TestOverlays renders every overlay (and the base and mesh/ on their own), decodes and schema-validates
// every object, and applies the app house rules.
func TestOverlays(t *testing.T) {
	dirs, err := Overlays()
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 3 {
		t.Fatalf("expected overlays e2e, minikube and production, found %v", dirs)
	}
	for _, d := range append(dirs, "kustomize/base", "mesh") {
		t.Run(d, func(t *testing.T) {
			objs, err := Render(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range Check(objs) {
				t.Error(p)
			}
			if strings.HasPrefix(d, "kustomize/overlays/") {
				env, err := EnvironmentOf(d)
				if err != nil {
					t.Fatal(err)
				}
				s := &Set{Name: d, Objects: objs, Environment: env}
				for _, p := range RunRules(s, AppRules) {
					t.Error(p)
				}
			}
		})
	}
}

// TestComponentsAreUsed: every component is rendered by at least one overlay (so it is validated), and has a
// README.
func TestComponentsAreUsed(t *testing.T) {
	comps, err := Components()
	if err != nil {
		t.Fatal(err)
	}
	overlays, _ := Overlays()
	var text string
	for _, o := range overlays {
		b, err := readFile(o + "/kustomization.yaml")
		if err != nil {
			t.Fatal(err)
		}
		text += string(b)
	}
	for _, c := range comps {
		if _, err := readFile(c + "/README.md"); err != nil {
			t.Errorf("%s has no README.md", c)
		}
		if !strings.Contains(text, "../../components/"+c[len("kustomize/components/"):]) {
			t.Errorf("%s is used by no overlay, so it is never rendered and validated", c)
		}
	}
}

// TestE2EComposesWithNetworkPolicies: the e2e overlay leaves the network-policies component out until a later
// change enforces it; with it added to the overlay's components (on an in-memory copy of kustomize/), the
// render passes every layer and the e2e rules. The policies let Prometheus reach only Istio's ports, so
// scraping the apps' :9090 will need an ingress rule of its own when Prometheus arrives.
func TestE2EComposesWithNetworkPolicies(t *testing.T) {
	fsys := filesys.MakeFsInMemory()
	root := RepoRoot()
	err := filepath.WalkDir(filepath.Join(root, "kustomize"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(root, p)
		return fsys.WriteFile("/repo/"+filepath.ToSlash(r), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	k := "/repo/kustomize/overlays/e2e/kustomization.yaml"
	b, err := fsys.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	comps, _ := m["components"].([]any)
	m["components"] = append(comps, "../../components/network-policies")
	if b, err = yaml.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := fsys.WriteFile(k, b); err != nil {
		t.Fatal(err)
	}
	objs, err := RenderFS(fsys, "/repo/kustomize/overlays/e2e")
	if err != nil {
		t.Fatal(err)
	}
	policies := 0
	for _, o := range objs {
		if o.U.GetKind() == "NetworkPolicy" {
			policies++
			if o.U.GetNamespace() != "txmesh" {
				t.Errorf("%s is not in namespace txmesh", o.ID())
			}
		}
	}
	if policies == 0 {
		t.Fatal("no NetworkPolicy rendered")
	}
	s := &Set{Name: "e2e + network-policies", Objects: objs, Environment: Environments["e2e"]}
	for _, p := range append(Check(objs), RunRules(s, AppRules)...) {
		t.Error(p)
	}
	t.Logf("%d objects, %d NetworkPolicies", len(objs), policies)
}
