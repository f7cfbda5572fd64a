package flagger

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

var localImage = "txmesh.local/flagger:" + Version

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

func TestFlaggerRendersItsKubernetesInstaller(t *testing.T) {
	objs, err := Objects(moduleDir(t), localImage)
	if err != nil {
		t.Fatal(err)
	}
	d := manifests.Find(objs, "Deployment", "flagger")
	if d == nil || d.GetNamespace() != Namespace {
		t.Fatalf("no Deployment flagger in %s", Namespace)
	}
	c := manifests.FirstContainer(d)
	if c["image"] != localImage || c["imagePullPolicy"] != "IfNotPresent" {
		t.Errorf("flagger: image %v policy %v", c["image"], c["imagePullPolicy"])
	}
	args, _ := c["args"].([]any)
	for _, want := range []string{"-mesh-provider=kubernetes", "-metrics-server=" + prometheus.URL} {
		if !slices.Contains(args, any(want)) {
			t.Errorf("flagger args %v lack %s", args, want)
		}
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		if p, _ := c[probe].(map[string]any); p["httpGet"] == nil || p["exec"] != nil {
			t.Errorf("flagger %s %v: want httpGet only", probe, p)
		}
	}
	// Pod Security "restricted", which the namespace enforces, admits the container.
	sc, _ := c["securityContext"].(map[string]any)
	caps, _ := sc["capabilities"].(map[string]any)
	seccomp, _ := sc["seccompProfile"].(map[string]any)
	if sc["runAsNonRoot"] != true || sc["allowPrivilegeEscalation"] != false ||
		!slices.Equal(caps["drop"].([]any), []any{"ALL"}) || seccomp["type"] != "RuntimeDefault" {
		t.Errorf("flagger securityContext %v is not restricted", sc)
	}
	ns := manifests.Find(objs, "Namespace", Namespace)
	if ns == nil || ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s: %v", Namespace, ns)
	}
	// One Prometheus in the cluster: not the one Flagger's kubernetes installer ships.
	for _, o := range objs {
		if strings.Contains(o.GetName(), "prometheus") {
			t.Errorf("%s %s rendered", o.GetKind(), o.GetName())
		}
	}

	kinds := []string{"flagger.app/v1beta1 Canary", "flagger.app/v1beta1 MetricTemplate"}
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := manifests.KindsIn(root, []string{"flagger.app"}, "mesh/metric-templates", "kustomize/components/canary",
		"kustomize/overlays/e2e-cd")
	if err != nil {
		t.Fatal(err)
	}
	kinds = append(kinds, repo...)
	for _, k := range kinds {
		av, kind, _ := strings.Cut(k, " ")
		if !manifests.CRDServes(objs, av, kind) {
			t.Errorf("no CRD serves %s", k)
		}
	}
}
