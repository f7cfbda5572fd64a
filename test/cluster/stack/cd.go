package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/txmesh/txmesh/test/cluster/flagger"
	"github.com/txmesh/txmesh/test/cluster/flux"
	"github.com/txmesh/txmesh/test/cluster/gitserver"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

// CDComponents are the continuous-delivery components the e2e builds as it deploys them (cd-bootstrap),
// helm-controller included: `make cluster-build` builds them all ahead.
func CDComponents() []gobuild.Component {
	return append(flux.Components(), flagger.Component(), flux.CLI())
}

// StartGit serves a clone of the checkout from the cluster's bridge (gitserver.Start) until ctx ends.
func (s *Stack) StartGit(ctx context.Context) (*gitserver.GitOps, error) {
	return gitserver.Start(ctx, s.Cluster.Layout().Dir, s.Cluster.Layout().HostIP(), s.Repo, s.log)
}

// InstallFlux builds (or finds cached) the Flux controllers flux/clusters/e2e needs and the flux CLI, images
// the controllers and pushes them to the cluster's registry, then runs `flux bootstrap git` against g: the
// CLI commits flux-system/ (gotk-components.yaml from the controllers' own manifests, gotk-sync.yaml) under
// flux/clusters/e2e and pushes it, installs the controllers, creates the flux-system Secret, GitRepository
// and Kustomization and waits until that Kustomization is Ready. It returns the CLI's version (`flux
// --version`). The Kustomizations of the tree are the caller's to wait for.
func (s *Stack) InstallFlux(ctx context.Context, g *gitserver.GitOps) (string, error) {
	var ctrls []flux.Controller
	for _, name := range flux.Controllers {
		c := flux.Find(name)
		img, dir, err := s.cdComponent(ctx, c, func(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
			return flux.Image(ctx, b, c, bins)
		})
		if err != nil {
			return "", err
		}
		ctrls = append(ctrls, flux.Controller{Name: name, ModuleDir: dir, Image: img})
	}
	bins, err := gobuild.Ensure(ctx, s.cache, flux.CLI(), s.log)
	if err != nil {
		return "", err
	}
	cli := bins["flux"]
	version, err := flux.Version(ctx, cli)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "txmesh-flux-manifests-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := flux.ComponentsDir(dir, ctrls...); err != nil {
		return "", err
	}
	args := flux.BootstrapArgs(s.Kubeconfig(), g.URL, g.Branch, "flux/clusters/e2e", dir, 15*time.Second)
	s.logf("flux %s: flux %s", version, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// The CLI's own files (config, temp clones) stay out of the runner's home.
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("flux bootstrap git (flux %s): %w (its output is in the log above)", version, err)
	}
	s.logf("Flux %s, %s, %s, %s bootstrapped by flux %s; flux-system points at %s", flux.SourceControllerVersion,
		flux.KustomizeControllerVersion, flux.ImageReflectorControllerVersion, flux.ImageAutomationControllerVersion,
		version, g.URL)
	return version, nil
}

// InstallFlagger builds (or finds cached) Flagger, pushes its image and deploys it (flagger.Deploy: the
// kubernetes provider, the cluster's Prometheus).
func (s *Stack) InstallFlagger(ctx context.Context) error {
	img, dir, err := s.cdComponent(ctx, flagger.Component(), flagger.Image)
	if err != nil {
		return err
	}
	if err := flagger.Deploy(ctx, s.Apply, dir, img); err != nil {
		return err
	}
	s.logf("Flagger %s running (kubernetes provider, metrics from %s)", flagger.Version, prometheus.URL)
	return nil
}

// cdComponent builds (or finds cached) a CD component's binaries and its image, pushes the image to the
// cluster's registry and returns its reference and the component's module directory (its kustomize bases).
func (s *Stack) cdComponent(ctx context.Context, c gobuild.Component,
	image func(context.Context, *images.Builder, gobuild.Binaries) (images.Image, error)) (string, string, error) {
	bins, err := gobuild.Ensure(ctx, s.cache, c, s.log)
	if err != nil {
		return "", "", err
	}
	img, err := image(ctx, s.builder, bins)
	if err != nil {
		return "", "", err
	}
	if err := s.push(ctx, img); err != nil {
		return "", "", err
	}
	dir, err := gobuild.ModuleDir(ctx, s.cache, c)
	if err != nil {
		return "", "", err
	}
	return img.Ref, dir, nil
}
