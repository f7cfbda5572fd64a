package manifests

import (
	"strings"
	"testing"
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
