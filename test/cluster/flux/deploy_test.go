package flux

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// The flux CLI built here is CLIVersion; given ComponentsDir as --manifests it renders exactly the controllers
// (their modules' manifests, the local images) — what `flux bootstrap git` commits as gotk-components.yaml
// and applies; without --manifests it refuses instead of installing anything (no embedded manifests offline).
func TestCLIInstallsTheComponentsDir(t *testing.T) {
	ctx := context.Background()
	flux := cli(t)
	if v, err := Version(ctx, flux); err != nil || "v"+v != CLIVersion {
		t.Fatalf("flux --version: %q, %v; want %s", v, err, CLIVersion)
	}
	dir := componentsDir(t)
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, flux, args...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("install", "--export", "--manifests="+dir)
	if err != nil {
		t.Fatalf("flux install --export --manifests: %v\n%s", err, out)
	}
	objs, err := manifests.Decode([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	var deps []string
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		deps = append(deps, o.GetName())
		img, _ := manifests.FirstContainer(o)["image"].(string)
		if img != localImage(Find(o.GetName())) {
			t.Errorf("Deployment %s runs %q, want %q", o.GetName(), img, localImage(Find(o.GetName())))
		}
	}
	slices.Sort(deps)
	want := slices.Clone(Controllers)
	slices.Sort(want)
	if !slices.Equal(deps, want) {
		t.Errorf("flux renders Deployments %v, want %v", deps, want)
	}
	if out, err := run("install", "--export"); err == nil {
		t.Errorf("flux install without --manifests succeeded offline:\n%.500s", out)
	}
}

// BootstrapArgs is `flux bootstrap git` over the Git server's plain HTTP with basic auth, every controller
// flux/clusters/e2e needs, the components from the given directory, non-interactive; the CLI parses it.
func TestBootstrapArgs(t *testing.T) {
	args := BootstrapArgs("/k/config", "http://10.250.0.1:5001/txmesh.git", "main", "flux/clusters/e2e", "/m", 15*time.Second)
	for _, want := range []string{"--url=http://10.250.0.1:5001/txmesh.git", "--branch=main", "--path=flux/clusters/e2e",
		"--allow-insecure-http=true", "--token-auth=true", "--manifests=/m", "--interval=15s", "--silent",
		"--components-extra=image-reflector-controller,image-automation-controller", "--kubeconfig=/k/config"} {
		if !slices.Contains(args, want) {
			t.Errorf("flux %v lacks %s", args, want)
		}
	}
	if args[0] != "bootstrap" || args[1] != "git" {
		t.Errorf("flux %v: want bootstrap git", args[:2])
	}
}

// What `flux bootstrap git` leaves in Git builds as kustomize-controller builds it: flux/clusters/e2e of this
// checkout plus flux-system/ (gotk-components.yaml from ComponentsDir, gotk-sync.yaml as `flux create
// --export` writes the flux-system source and Kustomization), through `flux build kustomization --dry-run`.
// A file of the tree declaring what bootstrap commits (the flux-system Namespace) breaks the build.
func TestBootstrappedTreeBuilds(t *testing.T) {
	ctx := context.Background()
	flux, home := cli(t), t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, flux, args...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				stderr = ee.Stderr
			}
			t.Fatalf("flux %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return string(out)
	}
	mdir := componentsDir(t)
	tree := filepath.Join(t.TempDir(), "flux", "clusters", "e2e")
	sys := filepath.Join(tree, "flux-system")
	if err := os.MkdirAll(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join("..", "..", "..", "flux", "clusters", "e2e")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sync := run("create", "source", "git", "flux-system", "--url=http://10.250.0.1:5001/txmesh.git",
		"--branch=main", "--interval=15s", "--export") + "---\n" +
		run("create", "kustomization", "flux-system", "--source=GitRepository/flux-system",
			"--path=./flux/clusters/e2e", "--prune=true", "--interval=10m", "--export")
	files := map[string]string{
		"gotk-components.yaml": run("install", "--export", "--manifests="+mdir),
		"gotk-sync.yaml":       sync,
		"kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n" +
			"- gotk-components.yaml\n- gotk-sync.yaml\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(sys, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := run("build", "kustomization", "flux-system", "--path="+tree,
		"--kustomization-file="+filepath.Join(sys, "gotk-sync.yaml"), "--dry-run")
	objs, err := manifests.Decode([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range [][2]string{{"Namespace", Namespace}, {"Deployment", "source-controller"},
		{"Deployment", "image-automation-controller"}, {"GitRepository", "flux-system"},
		{"Kustomization", "flux-system"}, {"Kustomization", "infra-controllers"}, {"Kustomization", "apps"},
		{"ImageUpdateAutomation", "txmesh"}} {
		if manifests.Find(objs, want[0], want[1]) == nil {
			t.Errorf("the bootstrapped tree builds without %s %s", want[0], want[1])
		}
	}
	ns := manifests.Find(objs, "Namespace", Namespace)
	if ns != nil && ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("Namespace %s labels %v, want the restricted Pod Security Standard", Namespace, ns.GetLabels())
	}
}

// cli is the flux CLI, built into the cache when it is not there.
func cli(t *testing.T) string {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := gobuild.Ensure(context.Background(), cache, CLI(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return bins["flux"]
}

// componentsDir is ComponentsDir of the controllers flux/clusters/e2e needs, with their local images.
func componentsDir(t *testing.T) string {
	t.Helper()
	var cs []Controller
	for _, name := range Controllers {
		c := Find(name)
		cs = append(cs, Controller{Name: c.Name, ModuleDir: moduleDir(t, c), Image: localImage(c)})
	}
	dir := t.TempDir()
	if err := ComponentsDir(dir, cs...); err != nil {
		t.Fatal(err)
	}
	return dir
}
