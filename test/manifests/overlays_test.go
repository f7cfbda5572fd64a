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

// TestAddOns renders each add-on beside each overlay it is meant for, decodes and schema-validates the union
// and applies the app house rules with the overlay's environment (the Job rules, the NetworkPolicy rules).
func TestAddOns(t *testing.T) {
	for addOn, overlays := range AddOns {
		for _, o := range overlays {
			t.Run(o+"+"+addOn, func(t *testing.T) {
				objs, err := RenderWithAddOn(o, addOn)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range Check(objs) {
					t.Error(p)
				}
				env, err := EnvironmentOf(o)
				if err != nil {
					t.Fatal(err)
				}
				s := &Set{Name: o + "+" + addOn, Objects: objs, Environment: env}
				for _, p := range RunRules(s, AppRules) {
					t.Error(p)
				}
				own, _ := Render(addOn)
				if len(own) == 0 {
					t.Errorf("%s renders nothing", addOn)
				}
			})
		}
	}
}

// TestComponentsAreUsed: every component is rendered by at least one overlay, or beside overlays as an add-on
// (so it is validated), and has a README.
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
		if _, addOn := AddOns[c]; !addOn && !strings.Contains(text, "../../components/"+c[len("kustomize/components/"):]) {
			t.Errorf("%s is used by no overlay, so it is never rendered and validated", c)
		}
	}
}
