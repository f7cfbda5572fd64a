package manifests

import (
	"testing"
)

// TestClusters renders each Flux cluster tree the way Flux would (cluster dir -> every Kustomization's
// path, recursively), validates every object, and applies app and cluster house rules to the union.
func TestClusters(t *testing.T) {
	dirs, err := Clusters()
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 2 {
		t.Fatalf("expected clusters minikube and production, found %v", dirs)
	}
	for _, d := range dirs {
		t.Run(d, func(t *testing.T) {
			cr, err := RenderCluster(d)
			if err != nil {
				t.Fatal(err)
			}
			env, err := EnvironmentOf(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"infra-controllers", "infra-configs", "apps"} {
				if want == "infra-configs" && env.NoConfigs {
					continue
				}
				if len(cr.ByKs[want]) == 0 {
					t.Errorf("Flux Kustomization %s renders nothing", want)
				}
			}
			for _, p := range Check(cr.All) {
				t.Error(p)
			}
			s := &Set{Name: d, Objects: cr.All, Environment: env}
			for _, p := range RunRules(s, append(append([]Rule{}, AppRules...), ClusterRules...)) {
				t.Error(p)
			}
			t.Logf("%d objects", len(cr.All))
		})
	}
}

// TestMarkedImages: the images entries image automation writes, read from each overlay it updates.
func TestMarkedImages(t *testing.T) {
	for dir, want := range map[string]markedImage{
		"kustomize/overlays/minikube":   {name: "ghcr.io/txmesh/txmesh", image: "ghcr.io/txmesh/txmesh", tag: "0.1.0", namespace: "flux-system", policy: "txmesh"},
		"kustomize/overlays/production": {name: "ghcr.io/txmesh/txmesh", image: "ghcr.io/txmesh/txmesh", tag: "0.1.0", namespace: "flux-system", policy: "txmesh"},
		"kustomize/overlays/e2e":        {name: "ghcr.io/txmesh/txmesh", image: "txmesh.local/txmesh", tag: "e2e", namespace: "flux-system", policy: "txmesh"},
	} {
		text, err := readRepoFile(dir + "/kustomization.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if got := markedImages(text); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %+v, want [%+v]", dir, got, want)
		}
	}
}
