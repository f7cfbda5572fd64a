package main

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// repoWith makes a checkout with the named overlays and a kubeconfig file beside it.
func repoWith(t *testing.T, overlays ...string) (repo, kubeconfig string) {
	t.Helper()
	repo = t.TempDir()
	for _, o := range overlays {
		d := filepath.Join(repo, "kustomize", "overlays", o)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "kustomization.yaml"), []byte("resources: []\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kubeconfig = filepath.Join(repo, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return repo, kubeconfig
}

// Flags that do not fit are refused before anything is built or started, naming the flag.
func TestRunRefusesAttachFlags(t *testing.T) {
	repo, kc := repoWith(t, "kind")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"registry without attach", []string{"-registry", "localhost:5001"}, "-registry is only for -attach"},
		{"overlay without attach", []string{"-overlay", "kind"}, "-overlay is only for -attach"},
		{"network without attach", []string{"-network", "kind"}, "-network is only for -attach"},
		{"no registry", []string{"-attach", kc}, "-attach needs -registry"},
		{"registry without port", []string{"-attach", kc, "-registry", "localhost"}, `-registry "localhost": want host:port`},
		{"kubeconfig missing", []string{"-attach", filepath.Join(repo, "nope"), "-registry", "localhost:5001"}, "-attach: stat"},
		{"overlay missing", []string{"-attach", kc, "-registry", "localhost:5001", "-overlay", "staging"}, "-overlay staging:"},
		{"overlay as a path", []string{"-attach", kc, "-registry", "localhost:5001", "-overlay", "../e2e"}, "want the name of a directory"},
		{"no network", []string{"-attach", kc, "-registry", "localhost:5001", "-network", ""}, "-network: the docker network"},
		{"mesh without attach", []string{"-mesh", "istio"}, "-mesh is only for -attach"},
		{"another mesh", []string{"-attach", kc, "-registry", "localhost:5001", "-mesh", "linkerd"}, `-mesh "linkerd": the mesh is istio`},
		{"mesh overlay missing", []string{"-attach", kc, "-registry", "localhost:5001", "-mesh", "istio"}, "-overlay kind-mesh:"},
		{"unknown flag", []string{"-provider", "istio"}, "flag provided but not defined: -provider"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"-repo", repo}, c.args...), func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("run %v: error %v, want one containing %q", c.args, err, c.want)
			}
		})
	}
}

func TestValidateAttach(t *testing.T) {
	repo, kc := repoWith(t, "kind", "other")
	parse := func(args ...string) (attachFlags, *flag.FlagSet) {
		fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
		var a attachFlags
		fs.StringVar(&a.kubeconfig, "attach", "", "")
		fs.StringVar(&a.registry, "registry", "", "")
		fs.StringVar(&a.overlay, "overlay", "kind", "")
		fs.StringVar(&a.network, "network", "kind", "")
		fs.StringVar(&a.mesh, "mesh", "", "")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return a, fs
	}
	f, fs := parse()
	if got, err := f.validate(fs, repo); err != nil || got != nil {
		t.Fatalf("no -attach: got %+v, %v; want the throwaway cluster (nil)", got, err)
	}
	rel, err := filepath.Rel(mustWd(t), kc)
	if err != nil {
		t.Fatal(err)
	}
	f, fs = parse("-attach", rel, "-registry", "localhost:5001", "-overlay", "other", "-network", "ci")
	got, err := f.validate(fs, repo)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kubeconfig != kc || got.Registry != "localhost:5001" || got.Overlay != "other" || got.Network != "ci" {
		t.Fatalf("got %+v; want the absolute kubeconfig %s, localhost:5001, other, ci", got, kc)
	}
	f, fs = parse("-attach", kc, "-registry", "localhost:5001")
	if got, err = f.validate(fs, repo); err != nil || got.Overlay != "kind" || got.Network != "kind" || got.Mesh {
		t.Fatalf("defaults: got %+v, %v; want overlay and network kind, no mesh", got, err)
	}
}

// -mesh istio deploys the mesh's overlay unless -overlay names one, and says so to the run.
func TestValidateAttachMesh(t *testing.T) {
	repo, kc := repoWith(t, "kind", "kind-mesh", "other")
	for _, c := range []struct {
		args    []string
		overlay string
		mesh    bool
	}{
		{[]string{"-mesh", "istio"}, "kind-mesh", true},
		{[]string{"-mesh", "istio", "-overlay", "other"}, "other", true},
		{[]string{"-overlay", "kind-mesh"}, "kind-mesh", false},
		{nil, "kind", false},
	} {
		fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
		a := attachFlags{kubeconfig: kc, registry: "localhost:5001", overlay: "kind", network: "kind"}
		fs.StringVar(&a.overlay, "overlay", "kind", "")
		fs.StringVar(&a.mesh, "mesh", "", "")
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		got, err := a.validate(fs, repo)
		if err != nil || got.Overlay != c.overlay || got.Mesh != c.mesh {
			t.Errorf("%v: got %+v, %v; want overlay %s, mesh %v", c.args, got, err, c.overlay, c.mesh)
		}
	}
}

func mustWd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}
