package manifests

import (
	"testing"
)

func TestUpstreamCRDsLoad(t *testing.T) {
	set, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Canary", "MetricTemplate", "VirtualService", "AuthorizationPolicy", "Cluster", "Pooler", "PodMonitor", "Kustomization", "HelmRelease", "HelmRepository", "ImagePolicy", "ImageUpdateAutomation", "ObjectStore"} {
		found := false
		for gvk := range set {
			if gvk.Kind == k {
				found = true
			}
		}
		if !found {
			t.Errorf("no upstream CRD for kind %s", k)
		}
	}
	t.Logf("%d CRD versions loaded", len(set))
}
