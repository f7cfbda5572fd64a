package stack

import (
	"context"

	"github.com/txmesh/txmesh/test/cluster/flagger"
	"github.com/txmesh/txmesh/test/cluster/flux"
	"github.com/txmesh/txmesh/test/cluster/gitserver"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

// CDComponents are the continuous-delivery components the e2e builds as it deploys them (cd-bootstrap),
// helm-controller included: `make cluster-build` builds them all ahead.
func CDComponents() []gobuild.Component { return append(flux.Components(), flagger.Component()) }

// StartGit serves a clone of the checkout from the cluster's bridge (gitserver.Start) until ctx ends.
func (s *Stack) StartGit(ctx context.Context) (*gitserver.GitOps, error) {
	return gitserver.Start(ctx, s.Cluster.Layout().Dir, s.Cluster.Layout().HostIP(), s.Repo, s.log)
}

// InstallFlux builds (or finds cached) the Flux controllers flux/clusters/e2e needs, images them, pushes the
// images to the cluster's registry, deploys them (flux.Deploy) and then applies what `flux bootstrap` would:
// the flux-system GitRepository of g and the flux-system Kustomization of flux/clusters/e2e. It does not
// wait for the reconciliation.
func (s *Stack) InstallFlux(ctx context.Context, g *gitserver.GitOps) error {
	var ctrls []flux.Controller
	for _, name := range flux.Controllers {
		c := flux.Find(name)
		img, dir, err := s.cdComponent(ctx, c, func(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
			return flux.Image(ctx, b, c, bins)
		})
		if err != nil {
			return err
		}
		ctrls = append(ctrls, flux.Controller{Name: name, ModuleDir: dir, Image: img})
	}
	if err := flux.Deploy(ctx, s.Apply, ctrls...); err != nil {
		return err
	}
	boot, err := flux.Bootstrap(g.URL, g.Branch, "./flux/clusters/e2e")
	if err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, boot); err != nil {
		return err
	}
	s.logf("Flux %s, %s, %s, %s running; flux-system points at %s", flux.SourceControllerVersion,
		flux.KustomizeControllerVersion, flux.ImageReflectorControllerVersion, flux.ImageAutomationControllerVersion,
		g.URL)
	return nil
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
