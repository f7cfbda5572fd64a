package deploy

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/build"
)

func cdModuleDir(t *testing.T, name string) string {
	t.Helper()
	cache, err := build.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := build.ModuleDir(context.Background(), cache, build.FindCD(name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func localImage(name string) string {
	c := build.FindCD(name)
	return "txmesh.local/" + c.Name + ":" + c.Version
}

// fluxControllers are the controllers flux/clusters needs, plus helm-controller.
var fluxControllers = []string{"source-controller", "kustomize-controller", "image-reflector-controller",
	"image-automation-controller", "helm-controller"}

func container0(t *testing.T, d *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		t.Fatalf("Deployment %s has no containers", d.GetName())
	}
	return cs[0].(map[string]any)
}

// crdServes reports whether a rendered CRD serves group/version kind.
func crdServes(objs []*unstructured.Unstructured, apiVersion, kind string) bool {
	group, version, _ := strings.Cut(apiVersion, "/")
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		g, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		k, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		if g != group || k != kind {
			continue
		}
		vs, _, _ := unstructured.NestedSlice(o.Object, "spec", "versions")
		for _, v := range vs {
			m := v.(map[string]any)
			if m["name"] == version && m["served"] == true {
				return true
			}
		}
	}
	return false
}

// repoKinds returns apiVersion+" "+kind of every object in the YAML files under dirs of the repository
// (files or directories; kinds of the groups given only), and of the GitRepository their sourceRefs name.
func repoKinds(t *testing.T, groups []string, dirs ...string) []string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "flux")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	seen := map[string]bool{}
	add := func(apiVersion, kind string) {
		g, _, _ := strings.Cut(apiVersion, "/")
		if slices.Contains(groups, g) {
			seen[apiVersion+" "+kind] = true
		}
	}
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".yaml") || e.Name() == "kustomization.yaml" {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			objs, err := Decode(b)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			for _, o := range objs {
				add(o.GetAPIVersion(), o.GetKind())
				if k, ok, _ := unstructured.NestedString(o.Object, "spec", "sourceRef", "kind"); ok {
					switch k { // a sourceRef names a kind, not its version: the one flux/ writes
					case "GitRepository":
						add("source.toolkit.fluxcd.io/v1", k)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestFluxRendersControllersFromTheirModules(t *testing.T) {
	var cs []FluxController
	for _, n := range fluxControllers {
		cs = append(cs, FluxController{Name: n, ModuleDir: cdModuleDir(t, n), Image: localImage(n)})
	}
	objs, err := Flux(cs...)
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetKind() != "Namespace" || objs[0].GetName() != FluxNamespace {
		t.Fatalf("first object %s %s, want the Namespace %s", objs[0].GetKind(), objs[0].GetName(), FluxNamespace)
	}
	ids := map[string]bool{}
	for _, o := range objs {
		id := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		if ids[id] {
			t.Errorf("%s rendered twice", id)
		}
		ids[id] = true
		if o.GetKind() != "CustomResourceDefinition" && o.GetKind() != "Namespace" &&
			!strings.HasPrefix(o.GetKind(), "Cluster") && o.GetNamespace() != FluxNamespace {
			t.Errorf("%s outside %s", id, FluxNamespace)
		}
		if o.GetKind() == "RoleBinding" || o.GetKind() == "ClusterRoleBinding" {
			subj, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subj {
				m := s.(map[string]any)
				if m["kind"] != "ServiceAccount" || m["namespace"] != FluxNamespace ||
					!slices.Contains(fluxControllers, m["name"].(string)) {
					t.Errorf("%s binds %v, not a controller's ServiceAccount", id, m)
				}
			}
		}
	}
	for _, n := range fluxControllers {
		d := find(objs, "Deployment", n)
		if d == nil {
			t.Errorf("no Deployment %s", n)
			continue
		}
		c := container0(t, d)
		if c["image"] != localImage(n) || c["imagePullPolicy"] != "IfNotPresent" {
			t.Errorf("%s: image %v policy %v", n, c["image"], c["imagePullPolicy"])
		}
		if sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName"); sa != n {
			t.Errorf("%s runs as ServiceAccount %q", n, sa)
		}
		if find(objs, "ServiceAccount", n) == nil {
			t.Errorf("no ServiceAccount %s", n)
		}
		if args, _ := c["args"].([]any); !slices.Contains(args, any("--watch-all-namespaces")) {
			t.Errorf("%s does not watch all namespaces: %v", n, args)
		}
	}
	// kustomize-controller fetches artifacts at the address source-controller advertises (its Service).
	if find(objs, "Service", "source-controller") == nil {
		t.Error("no Service source-controller")
	}
	kinds := []string{"source.toolkit.fluxcd.io/v1 GitRepository", "kustomize.toolkit.fluxcd.io/v1 Kustomization",
		"image.toolkit.fluxcd.io/v1 ImageRepository", "image.toolkit.fluxcd.io/v1 ImagePolicy",
		"image.toolkit.fluxcd.io/v1 ImageUpdateAutomation", "helm.toolkit.fluxcd.io/v2 HelmRelease",
		"source.toolkit.fluxcd.io/v1 HelmRepository"}
	// Every Flux kind the repository's flux/ tree writes, at the version it writes.
	kinds = append(kinds, repoKinds(t, []string{"source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io",
		"image.toolkit.fluxcd.io", "helm.toolkit.fluxcd.io"}, "flux")...)
	for _, k := range kinds {
		av, kind, _ := strings.Cut(k, " ")
		if !crdServes(objs, av, kind) {
			t.Errorf("no CRD serves %s", k)
		}
	}
}

func TestFlaggerRendersItsKubernetesInstaller(t *testing.T) {
	objs, err := Flagger(cdModuleDir(t, "flagger"), localImage("flagger"))
	if err != nil {
		t.Fatal(err)
	}
	d := find(objs, "Deployment", "flagger")
	if d == nil || d.GetNamespace() != FlaggerNamespace {
		t.Fatalf("no Deployment flagger in %s", FlaggerNamespace)
	}
	c := container0(t, d)
	if c["image"] != localImage("flagger") || c["imagePullPolicy"] != "IfNotPresent" {
		t.Errorf("flagger: image %v policy %v", c["image"], c["imagePullPolicy"])
	}
	args, _ := c["args"].([]any)
	for _, want := range []string{"-mesh-provider=kubernetes", "-metrics-server=" + PrometheusURL} {
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
	ns := find(objs, "Namespace", FlaggerNamespace)
	if ns == nil || ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s: %v", FlaggerNamespace, ns)
	}
	// One Prometheus in the cluster: not the one Flagger's kubernetes installer ships.
	for _, o := range objs {
		if strings.Contains(o.GetName(), "prometheus") {
			t.Errorf("%s %s rendered", o.GetKind(), o.GetName())
		}
	}

	kinds := []string{"flagger.app/v1beta1 Canary", "flagger.app/v1beta1 MetricTemplate"}
	kinds = append(kinds, repoKinds(t, []string{"flagger.app"}, "mesh/metric-templates", "kustomize/components/canary",
		"kustomize/overlays/e2e-cd")...)
	for _, k := range kinds {
		av, kind, _ := strings.Cut(k, " ")
		if !crdServes(objs, av, kind) {
			t.Errorf("no CRD serves %s", k)
		}
	}
}

// promtool checks the cluster Prometheus's scrape configuration: built into the cache when it is not there
// (minutes, once; the cluster's Prometheus needs the same build).
func TestPrometheusConfigIsValid(t *testing.T) {
	cache, err := build.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := build.Ensure(context.Background(), cache, build.FindCD("prometheus"), io.Discard)
	if err != nil {
		t.Fatalf("build Prometheus: %v", err)
	}
	promtool := bins["promtool"]
	if promtool == "" {
		t.Fatalf("the Prometheus build has no promtool: %v", bins)
	}
	cfg, err := PrometheusConfig()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(f, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "config", "--syntax-only", f).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
