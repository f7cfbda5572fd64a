package flux

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

func moduleDir(t *testing.T, c gobuild.Component) string {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := gobuild.ModuleDir(context.Background(), cache, c)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func localImage(c gobuild.Component) string { return "txmesh.local/" + c.Name + ":" + c.Version }

// repoKinds is manifests.KindsIn of this checkout.
func repoKinds(t *testing.T, groups []string, dirs ...string) []string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := manifests.KindsIn(root, groups, dirs...)
	if err != nil {
		t.Fatal(err)
	}
	return kinds
}

func TestFluxRendersControllersFromTheirModules(t *testing.T) {
	var cs []Controller
	var names []string
	for _, c := range Components() { // helm-controller too
		cs = append(cs, Controller{Name: c.Name, ModuleDir: moduleDir(t, c), Image: localImage(c)})
		names = append(names, c.Name)
	}
	objs, err := Objects(cs...)
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetKind() != "Namespace" || objs[0].GetName() != Namespace {
		t.Fatalf("first object %s %s, want the Namespace %s", objs[0].GetKind(), objs[0].GetName(), Namespace)
	}
	ids := map[string]bool{}
	for _, o := range objs {
		id := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		if ids[id] {
			t.Errorf("%s rendered twice", id)
		}
		ids[id] = true
		if o.GetKind() != "CustomResourceDefinition" && o.GetKind() != "Namespace" &&
			!strings.HasPrefix(o.GetKind(), "Cluster") && o.GetNamespace() != Namespace {
			t.Errorf("%s outside %s", id, Namespace)
		}
		if o.GetKind() == "RoleBinding" || o.GetKind() == "ClusterRoleBinding" {
			subj, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subj {
				m := s.(map[string]any)
				if m["kind"] != "ServiceAccount" || m["namespace"] != Namespace ||
					!slices.Contains(names, m["name"].(string)) {
					t.Errorf("%s binds %v, not a controller's ServiceAccount", id, m)
				}
			}
		}
	}
	for _, n := range names {
		d := manifests.Find(objs, "Deployment", n)
		if d == nil {
			t.Errorf("no Deployment %s", n)
			continue
		}
		c := manifests.FirstContainer(d)
		if c["image"] != localImage(Find(n)) || c["imagePullPolicy"] != "IfNotPresent" {
			t.Errorf("%s: image %v policy %v", n, c["image"], c["imagePullPolicy"])
		}
		if sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName"); sa != n {
			t.Errorf("%s runs as ServiceAccount %q", n, sa)
		}
		if manifests.Find(objs, "ServiceAccount", n) == nil {
			t.Errorf("no ServiceAccount %s", n)
		}
		if args, _ := c["args"].([]any); !slices.Contains(args, any("--watch-all-namespaces")) {
			t.Errorf("%s does not watch all namespaces: %v", n, args)
		}
	}
	// kustomize-controller fetches artifacts at the address source-controller advertises (its Service).
	if manifests.Find(objs, "Service", "source-controller") == nil {
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
		if !manifests.CRDServes(objs, av, kind) {
			t.Errorf("no CRD serves %s", k)
		}
	}
}

// Bootstrap is the flux-system GitRepository and Kustomization of the path, as flux bootstrap writes them.
func TestBootstrap(t *testing.T) {
	objs, err := Bootstrap("http://10.250.0.1:5001/txmesh.git", "main", "./flux/clusters/e2e")
	if err != nil {
		t.Fatal(err)
	}
	repo, ks := manifests.Find(objs, "GitRepository", "flux-system"), manifests.Find(objs, "Kustomization", "flux-system")
	if len(objs) != 2 || repo == nil || ks == nil {
		t.Fatalf("objects %v", objs)
	}
	url, _, _ := unstructured.NestedString(repo.Object, "spec", "url")
	path, _, _ := unstructured.NestedString(ks.Object, "spec", "path")
	if url != "http://10.250.0.1:5001/txmesh.git" || path != "./flux/clusters/e2e" || repo.GetNamespace() != Namespace {
		t.Fatalf("url %q path %q namespace %q", url, path, repo.GetNamespace())
	}
}
