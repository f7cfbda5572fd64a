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
