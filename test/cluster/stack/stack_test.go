package stack

import (
	"slices"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/netpol"
	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

// The binaries' cache keys are the directories under ~/.cache/txmesh/cluster/bin that existing caches hold:
// a key that changes rebuilds its component (minutes to a quarter of an hour cold), so it changes only on
// purpose (a new version or patch), never by a refactoring.
func TestCacheKeysUnchanged(t *testing.T) {
	var got []string
	for _, c := range append(append(clusterComponents(), netpol.Component(), prometheus.Component()), CDComponents()...) {
		got = append(got, c.Key())
	}
	want := []string{"kubernetes-v1.32.13", "coredns-v1.12.4", "cloudnative-pg-v1.30.0",
		"local-path-provisioner-v0.0.30", "distribution-v3.0.0", "kube-network-policies-v0.8.0-xtqueue",
		"prometheus-v0.316.0", "source-controller-v1.9.6", "kustomize-controller-v1.9.6",
		"image-reflector-controller-v1.2.4", "image-automation-controller-v1.2.4", "helm-controller-v1.6.4",
		"flagger-v1.44.0", "flux-cli-v2.9.5-offline-manifests"}
	if !slices.Equal(got, want) {
		t.Fatalf("cache keys\n%v\nwant\n%v", got, want)
	}
}
