// Package stack is `make cluster-up` as one call: it puts the components together in order. Build (or find
// cached) every binary and image (kube, coredns, cnpg, localpath, registry, then busybox, txmesh, netpol,
// prometheus, objectstore, barman), start the throwaway cluster (kube) or reuse the running one, deploy the
// NetworkPolicy enforcer, the add-ons (CoreDNS, local-path storage, CloudNativePG), Prometheus and the backups'
// object store and Barman Cloud plugin, and txmesh from kustomize/overlays/e2e, then wait until all of it is
// healthy. The CD components (flux, flagger, gitserver)
// are installed later by the e2e's cd-bootstrap (cd.go); Attach does the txmesh part on a kind cluster.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/txmesh/txmesh/test/cluster/busybox"
	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/coredns"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/kube"
	"github.com/txmesh/txmesh/test/cluster/localpath"
	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/objectstore"
	"github.com/txmesh/txmesh/test/cluster/registry"
	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

// Options configure Up.
type Options struct {
	RepoRoot string
	Layout   kube.Layout
	Nodes    int    // 3 unless set
	Tag      string // the txmesh image tag deployed; "e2e" unless set
	Log      io.Writer
	// BankDBUpgrade deploys bank-db on cnpg.UpgradeFrom (PostgreSQL 17), archiving under serverName
	// PreUpgradeServerName, for the e2e's major-upgrade row to upgrade it (BankDBPatch); store-db and every
	// later deployment run the shipped image.
	BankDBUpgrade bool
}

// Stack is a running cluster with txmesh deployed.
type Stack struct {
	Cluster *kube.Cluster
	Apply   *manifests.Applier
	Bin     gobuild.Binaries
	Images  map[string]images.Image // by role: pause, busybox, postgres, postgres-upgrade-from, postgres-upgrade-to, txmesh, coredns, cnpg, local-path, netpol, prometheus, objectstore, barman-plugin, barman-sidecar
	TLS     txmesh.TLS              // the CA and a client certificate for talking to the apps
	Repo    string
	Timing  map[string]time.Duration
	log     io.Writer
	builder *images.Builder
	cache   string
	attach  *AttachOptions // set by Attach: a cluster this package did not start (Cluster is nil)

	handedToFlux  bool // cd-bootstrap ran: Flux and Flagger own the deployment (HandedToFlux)
	bankDBUpgrade bool // Options.BankDBUpgrade
	// backupCreds are the object store's keys (deployBackups), which the databases' Secret repeats.
	backupCreds objectstore.Credentials
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
	cache, err := gobuild.CacheDir()
	if err != nil {
		return nil, err
	}
	s := &Stack{Repo: o.RepoRoot, Timing: map[string]time.Duration{}, log: o.Log, cache: cache,
		builder: &images.Builder{Dir: filepath.Join(cache, "images"), Log: o.Log}, bankDBUpgrade: o.BankDBUpgrade}
	t := time.Now()
	s.Bin = gobuild.Binaries{}
	for _, c := range clusterComponents() {
		bins, err := gobuild.Ensure(ctx, cache, c, o.Log)
		if err != nil {
			return nil, err
		}
		maps.Copy(s.Bin, bins)
	}
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
	if err := s.buildBackups(ctx); err != nil {
		return nil, err
	}
	s.Timing["images"] = time.Since(t)
	return s, nil
}

// clusterComponents are built first, in this order (netpol and prometheus come with their images).
func clusterComponents() []gobuild.Component {
	return []gobuild.Component{kube.Component(), coredns.Component(), cnpg.Component(), localpath.Component(),
		registry.Component()}
}

// Up builds what is missing, then starts the cluster — or attaches to the one running — and makes sure txmesh
// is deployed and healthy.
func Up(ctx context.Context, o Options) (*Stack, error) {
	s, err := prepare(ctx, &o)
	if err != nil {
		return nil, err
	}
	t := time.Now()
	c, err := kube.Open(o.Layout, s.Bin, s.Images["pause"].Ref, o.Log)
	if err == nil && c.Healthy() != nil && c.Abandoned() {
		// A killed run (a CI timeout, a session's end) leaves its cluster behind with every daemon dead.
		fmt.Fprintf(o.Log, "cluster: none of the left-over cluster's daemons runs (a killed run or a reboot): removing it\n")
		if err := kube.Down(o.Layout, o.Log); err != nil {
			return nil, fmt.Errorf("remove the remains of a dead cluster: %w (see `make cluster-down`)", err)
		}
		c, err = nil, os.ErrNotExist
	}
	if err == nil {
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
	if o.BankDBUpgrade {
		// Pulled by bank-db's pods (and the upgrade Job) only: not worth importing into every node.
		for _, role := range []string{"postgres-upgrade-from", "postgres-upgrade-to"} {
			if err := s.push(ctx, s.Images[role]); err != nil {
				return nil, err
			}
		}
	}
	s.Timing["cluster"] = time.Since(t)

	cfg, err := s.Cluster.RESTConfig()
	if err != nil {
		return nil, err
	}
	if s.Apply, err = manifests.NewApplier(cfg, o.Log); err != nil {
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
	if err := s.deployBackups(ctx); err != nil {
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
	if s.Images["pause"], err = kube.Pause(ctx, b); err != nil {
		return err
	}
	if s.Images["busybox"], err = busybox.Image(ctx, b); err != nil {
		return err
	}
	if s.Images["postgres"], err = cnpg.Postgres(ctx, b); err != nil {
		return err
	}
	if s.Images["postgres-upgrade-from"], err = cnpg.PostgresImage(ctx, b, cnpg.UpgradeFrom); err != nil {
		return err
	}
	if s.Images["postgres-upgrade-to"], err = cnpg.PostgresImage(ctx, b, cnpg.UpgradeTo); err != nil {
		return err
	}
	if s.Images["txmesh"], err = txmesh.Image(ctx, b, s.Repo, tag); err != nil {
		return err
	}
	if s.Images["coredns"], err = coredns.Image(ctx, b, s.Bin); err != nil {
		return err
	}
	if s.Images["cnpg"], err = cnpg.Image(ctx, b, s.Bin); err != nil {
		return err
	}
	if s.Images["local-path"], err = localpath.Image(ctx, b, s.Bin); err != nil {
		return err
	}
	return nil
}

// push uploads an image to the cluster's registry, which the nodes pull it from.
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
