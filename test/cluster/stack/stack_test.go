package stack

import (
	"context"
	"maps"
	"slices"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/barman"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/netpol"
	"github.com/txmesh/txmesh/test/cluster/objectstore"
	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

// builtComponents is every component `make cluster-build` builds: the cluster's, netpol and prometheus
// (built with their images), the CD components, the object store and the Barman Cloud plugin.
func builtComponents() []gobuild.Component {
	cs := append(clusterComponents(), netpol.Component(), prometheus.Component())
	cs = append(cs, CDComponents()...)
	return append(cs, objectstore.Component(), barman.Component())
}

// The binaries' cache keys are the directories under ~/.cache/txmesh/cluster/bin that existing caches hold:
// a key that changes rebuilds its component (minutes to a quarter of an hour cold), so it changes only on
// purpose (a new version or patch), never by a refactoring.
func TestCacheKeysUnchanged(t *testing.T) {
	var got []string
	for _, c := range builtComponents() {
		got = append(got, c.Key())
	}
	want := []string{"kubernetes-v1.32.13", "coredns-v1.12.4", "cloudnative-pg-v1.30.0",
		"local-path-provisioner-v0.0.30", "distribution-v3.0.0", "kube-network-policies-v0.8.0-xtqueue",
		"prometheus-v0.316.0", "source-controller-v1.9.6", "kustomize-controller-v1.9.6",
		"image-reflector-controller-v1.2.4", "image-automation-controller-v1.2.4", "helm-controller-v1.6.4",
		"flagger-v1.44.0", "flux-cli-v2.9.5-offline-manifests", "versitygw-v1.8.0", "plugin-barman-cloud-v0.15.0"}
	if !slices.Equal(got, want) {
		t.Fatalf("cache keys\n%v\nwant\n%v", got, want)
	}
}

// Each wrapper repeats its module's go line and replace block, but those of notHere (each says why; the
// subtests name what they check).
func TestComponentsRepeatUpstreamGoMod(t *testing.T) {
	notHere := map[string]string{
		"kubernetes":                 "staging modules at their published v0.32.x (endpointslice v0.32.12), not v1.32.13",
		"coredns":                    "no GoLine: the wrapper's default go line, not upstream's",
		"cloudnative-pg":             "no GoLine: the wrapper's default go line, not upstream's",
		"local-path-provisioner":     "no GoLine: the wrapper's default go line, not upstream's",
		"source-controller":          "adds flux's proxySubstitutes: flux's own test checks it",
		"image-reflector-controller": "adds flux's proxySubstitutes: flux's own test checks it",
	}
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range builtComponents() {
		if _, ok := notHere[c.Name]; ok {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			goLine, want, err := gobuild.Upstream(context.Background(), cache, c)
			if err != nil {
				t.Fatal(err)
			}
			if c.GoLine != goLine || !maps.Equal(want, c.Replace) {
				t.Errorf("go %q replaces %v; upstream's go.mod: go %q, %v", c.GoLine, c.Replace, goLine, want)
			}
		})
	}
}
