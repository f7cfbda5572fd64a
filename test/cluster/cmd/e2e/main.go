// Command e2e is `make e2e`: the throwaway cluster with txmesh deployed, attacked scenario by scenario under
// load and audited after each (see package e2e). Exit 0 when every scenario passed.
//
//	e2e [-repo DIR] [-rate 20] [-seed 1] [-out DIR]
//	e2e -attach KUBECONFIG -registry HOST:PORT [-overlay kind] [-network kind] [...]
//	e2e -attach KUBECONFIG -registry HOST:PORT -mesh istio [-overlay kind-mesh] [...]
//
// E2E_SCENARIOS=a,b runs a subset; E2E_KEEP=1 leaves the cluster up afterwards. With -attach the scenarios
// run on a running kind cluster instead (.github/workflows/e2e.yml): nothing is started or removed. With
// -mesh istio the cluster runs Istio, txmesh is deployed inside the mesh (mesh/ applied beforehand) and the
// mesh's schedule runs: steady, bank-outage, fault-injection, canary-promote, canary-rollback.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/txmesh/txmesh/test/cluster/e2e"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		stop()
		os.Exit(1)
	}
}

var errFailed = errors.New("a scenario failed (see the table and e2e-results/e2e.json)")

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.SetOutput(stdout)
	repo := fs.String("repo", "../..", "the txmesh checkout")
	rate := fs.Float64("rate", 20, "purchases per second sent to the Store's Service")
	seed := fs.Uint64("seed", 1, "seed of the purchase generator")
	out := fs.String("out", "", "results directory (default <repo>/e2e-results)")
	var a attachFlags
	fs.StringVar(&a.kubeconfig, "attach", "", "run on the running kind cluster of this kubeconfig instead of the throwaway one")
	fs.StringVar(&a.registry, "registry", "", "with -attach: host:port of the plain-HTTP registry the images are pushed to")
	fs.StringVar(&a.overlay, "overlay", "kind", "with -attach: the overlay deployed, kustomize/overlays/<name>")
	fs.StringVar(&a.network, "network", "kind", "with -attach: the docker network of the kind nodes")
	fs.StringVar(&a.mesh, "mesh", "", "with -attach: \"istio\" when the cluster runs Istio and txmesh goes inside its mesh "+
		"(default overlay kind-mesh; the mesh's schedule)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}
	attach, err := a.validate(fs, root)
	if err != nil {
		return err
	}
	o := e2e.Options{Repo: root, Rate: *rate, Seed: *seed, Out: *out, Log: stdout, Keep: getenv("E2E_KEEP") == "1",
		Attach: attach}
	if s := getenv("E2E_SCENARIOS"); s != "" {
		o.Scenarios = strings.Split(s, ",")
	}
	res, err := e2e.Run(ctx, o)
	if err != nil {
		return err
	}
	res.Table(stdout)
	if !res.Passed {
		return errFailed
	}
	return nil
}

type attachFlags struct{ kubeconfig, registry, overlay, network, mesh string }

// meshOverlay is the overlay -mesh istio deploys unless -overlay names another.
const meshOverlay = "kind-mesh"

// validate returns the attached cluster the flags name (nil: the throwaway one), or why they do not fit.
func (a attachFlags) validate(fs *flag.FlagSet, repo string) (*e2e.Attach, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if a.kubeconfig == "" {
		for _, n := range []string{"registry", "overlay", "network", "mesh"} {
			if set[n] {
				return nil, fmt.Errorf("-%s is only for -attach", n)
			}
		}
		return nil, nil
	}
	if _, err := os.Stat(a.kubeconfig); err != nil {
		return nil, fmt.Errorf("-attach: %w", err)
	}
	if a.registry == "" {
		return nil, errors.New("-attach needs -registry host:port: the e2e pushes the images it builds there")
	}
	if _, port, err := net.SplitHostPort(a.registry); err != nil || port == "" {
		return nil, fmt.Errorf("-registry %q: want host:port", a.registry)
	}
	switch a.mesh {
	case "":
	case "istio":
		if !set["overlay"] {
			a.overlay = meshOverlay
		}
	default:
		return nil, fmt.Errorf("-mesh %q: the mesh is istio (or leave -mesh out for the apps' own mTLS)", a.mesh)
	}
	if a.overlay == "" || strings.ContainsAny(a.overlay, `/\`) {
		return nil, fmt.Errorf("-overlay %q: want the name of a directory of kustomize/overlays", a.overlay)
	}
	if _, err := os.Stat(filepath.Join(repo, "kustomize", "overlays", a.overlay, "kustomization.yaml")); err != nil {
		return nil, fmt.Errorf("-overlay %s: %w", a.overlay, err)
	}
	if a.network == "" {
		return nil, errors.New("-network: the docker network of the kind nodes is required")
	}
	kc, err := filepath.Abs(a.kubeconfig)
	if err != nil {
		return nil, err
	}
	return &e2e.Attach{Kubeconfig: kc, Registry: a.registry, Overlay: a.overlay, Network: a.network,
		Mesh: a.mesh == "istio"}, nil
}
