// Package stack is `make cluster-up` as one call: build (or find cached) every binary and image, start the
// throwaway cluster, install its add-ons (CoreDNS, local-path storage, CloudNativePG) and deploy txmesh from
// kustomize/overlays/e2e, then wait until all of it is healthy.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/txmesh/txmesh/test/cluster/build"
	"github.com/txmesh/txmesh/test/cluster/deploy"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/kube"
)

// Options configure Up.
type Options struct {
	RepoRoot string
	Layout   kube.Layout
	Nodes    int    // 3 unless set
	Tag      string // the txmesh image tag deployed; "e2e" unless set
	Log      io.Writer
}

// Stack is a running cluster with txmesh deployed.
type Stack struct {
	Cluster *kube.Cluster
	Apply   *deploy.Applier
	Bin     build.Binaries
	Images  map[string]images.Image // by role: pause, busybox, postgres, txmesh, coredns, cnpg, local-path
	TLS     deploy.TLS              // the CA and a client certificate for talking to the apps
	Repo    string
	Timing  map[string]time.Duration
	log     io.Writer
	builder *images.Builder
	cache   string
	attach  *AttachOptions // set by Attach: a cluster this package did not start (Cluster is nil)

	handedToFlux bool // cd-bootstrap ran: Flux and Flagger own the deployment (HandedToFlux)
}

// Build builds (or finds cached) every binary and image and returns the cache directory.
func Build(ctx context.Context, o Options) (string, error) {
	s, err := prepare(ctx, &o)
	if err != nil {
		return "", err
	}
	return s.cache, nil
}

func prepare(ctx context.Context, o *Options) (*Stack, error) {
	if o.Tag == "" {
		o.Tag = "e2e"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Layout == (kube.Layout{}) {
		o.Layout = kube.DefaultLayout()
	}
	cache, err := build.CacheDir()
	if err != nil {
		return nil, err
	}
	s := &Stack{Repo: o.RepoRoot, Timing: map[string]time.Duration{}, log: o.Log, cache: cache,
		builder: &images.Builder{Dir: filepath.Join(cache, "images"), Log: o.Log}}
	t := time.Now()
	if s.Bin, err = build.All(ctx, cache, o.Log); err != nil {
		return nil, err
	}
	reg, err := build.Ensure(ctx, cache, build.FindCD("distribution"), o.Log)
	if err != nil {
		return nil, err
	}
	s.Bin["registry"] = reg["registry"]
	s.Timing["build"] = time.Since(t)
	t = time.Now()
	if err := s.buildImages(ctx, o.Tag); err != nil {
		return nil, err
	}
	if err := s.buildNetpol(ctx); err != nil {
		return nil, err
	}
	if err := s.buildPrometheus(ctx); err != nil {
		return nil, err
	}
	s.Timing["images"] = time.Since(t)
	return s, nil
}

// Up builds what is missing, then starts the cluster — or attaches to the one running — and makes sure txmesh
// is deployed and healthy.
func Up(ctx context.Context, o Options) (*Stack, error) {
	s, err := prepare(ctx, &o)
	if err != nil {
		return nil, err
	}
	t := time.Now()
	if c, err := kube.Open(o.Layout, s.Bin, s.Images["pause"].Ref, o.Log); err == nil {
		if herr := c.Healthy(); herr != nil {
			return nil, fmt.Errorf("a cluster is left over and broken (%w): run `make cluster-down`", herr)
		}
		fmt.Fprintf(o.Log, "cluster: reusing the running cluster (%s)\n", c.Kubeconfig())
		s.Cluster = c
		// A rebuilt image (new commit, same tag) must replace what the nodes of a reused cluster hold.
		if err := c.ImportImage(ctx, s.Images["txmesh"].Path); err != nil {
			return nil, err
		}
	} else if errors.Is(err, os.ErrNotExist) {
		// The infrastructure's images are imported into every node; txmesh's are pulled from the registry.
		var tarballs []string
		for _, role := range []string{"pause", "busybox", "postgres", "coredns", "cnpg", "local-path"} {
			tarballs = append(tarballs, s.Images[role].Path)
		}
		c, err := kube.Start(ctx, kube.Options{Layout: o.Layout, Nodes: o.Nodes, Bin: s.Bin,
			PauseImage: s.Images["pause"].Ref, Images: tarballs, Log: o.Log})
		if err != nil {
			return nil, fmt.Errorf("%w (logs: %s; remove the remains with `make cluster-down`)", err,
				filepath.Join(o.Layout.Dir, "logs"))
		}
		s.Cluster = c
	} else {
		return nil, err
	}
	if err := s.push(ctx, s.Images["txmesh"]); err != nil {
		return nil, err
	}
	s.Timing["cluster"] = time.Since(t)

	cfg, err := s.Cluster.RESTConfig()
	if err != nil {
		return nil, err
	}
	if s.Apply, err = deploy.NewApplier(cfg, o.Log); err != nil {
		return nil, err
	}
	t = time.Now()
	if err := s.deployNetpol(ctx); err != nil {
		return nil, err
	}
	if err := s.addons(ctx); err != nil {
		return nil, err
	}
	if err := s.deployPrometheus(ctx); err != nil {
		return nil, err
	}
	s.Timing["addons"] = time.Since(t)
	t = time.Now()
	if err := s.deployTxmesh(ctx, o.Tag); err != nil {
		return nil, err
	}
	s.Timing["txmesh"] = time.Since(t)
	return s, nil
}

func (s *Stack) buildImages(ctx context.Context, tag string) error {
	b := s.builder
	s.Images = map[string]images.Image{}
	var err error
	if s.Images["pause"], err = b.Pause(ctx); err != nil {
		return err
	}
	if s.Images["busybox"], err = b.Busybox(ctx); err != nil {
		return err
	}
	if s.Images["postgres"], err = b.Postgres(ctx); err != nil {
		return err
	}
	if s.Images["txmesh"], err = b.Txmesh(ctx, s.Repo, tag); err != nil {
		return err
	}
	bin := map[string]struct {
		ref, path, in string
		entry         []string
		user          string
	}{
		"coredns": {"txmesh.local/coredns:" + build.CoreDNSVersion, s.Bin["coredns"], "/coredns",
			[]string{"/coredns"}, "65532:65532"},
		// CloudNativePG's image layout: /manager, run as 10001 by its Deployment; the instance pods get the
		// same binary copied in by its bootstrap init container.
		"cnpg": {"txmesh.local/cloudnative-pg:" + build.CNPGVersion[1:], s.Bin["manager"], "/manager",
			[]string{"/manager"}, "10001:10001"},
		"local-path": {"txmesh.local/local-path-provisioner:" + build.LocalPathVersion, s.Bin["local-path-provisioner"],
			"/usr/bin/local-path-provisioner", []string{"local-path-provisioner"}, ""},
	}
	for role, spec := range bin {
		files := map[string]string{spec.in: spec.path}
		if role == "cnpg" {
			// The operator finds the architectures it can hand to instance pods as operator/manager_<arch>
			// (relative to its working directory, /), as its release image lays them out.
			files["/operator/manager_amd64"] = spec.path
		}
		if s.Images[role], err = b.Binary(ctx, spec.ref, files, spec.entry, spec.user); err != nil {
			return err
		}
	}
	return nil
}

// push uploads a txmesh image to the cluster's registry, which the nodes pull it from.
func (s *Stack) push(ctx context.Context, img images.Image) error {
	if s.attach != nil {
		return s.pushAttached(ctx, img)
	}
	d, err := s.Cluster.Push(ctx, img.Path, img.Ref)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.log, "deploy: pushed %s (%s) to the registry at %s\n", img.Ref, d, s.Cluster.Registry())
	return nil
}
