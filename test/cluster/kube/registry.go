package kube

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/txmesh/txmesh/test/cluster/host"
	"github.com/txmesh/txmesh/test/cluster/registry"
)

// The cluster's OCI registry (package registry, Options.Bin["registry"]) runs on the host as one of the
// cluster's daemons, in its cgroup with its storage under Layout.Dir, so Down removes it like any other. It
// serves plain HTTP on the bridge address only; each node's containerd resolves registry.LocalName to it
// through hosts.toml (bootRuntime writes it).

func (l Layout) registryDir() string  { return filepath.Join(l.Dir, "registry") }
func (l Layout) registryAddr() string { return fmt.Sprintf("%s:%d", l.net().HostIP, registry.Port) }
func (l Layout) certsDir(n Node) string {
	return filepath.Join(l.node(n), "certs.d")
}

// HostIP is the host's address on the cluster's bridge (where the control plane and the registry listen).
func (l Layout) HostIP() string { return l.net().HostIP.String() }

// Registry is the host:port of the cluster's registry ("" when the cluster runs without one).
func (c *Cluster) Registry() string {
	if _, ok := c.proc("registry"); !ok {
		return ""
	}
	return c.layout.registryAddr()
}

func (c *Cluster) startRegistry(ctx context.Context) error {
	l := c.layout
	if err := os.MkdirAll(filepath.Join(l.registryDir(), "data"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(l.registryDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte(registry.Config(filepath.Join(l.registryDir(), "data"), l.registryAddr())), 0o644); err != nil {
		return err
	}
	if err := c.spawn("registry", "", l.Name+"/registry", registry.Env, c.bin["registry"], "serve", cfg); err != nil {
		return err
	}
	if err := host.WaitTCP(ctx, l.registryAddr(), 30*time.Second, c.tail("registry")); err != nil {
		return fmt.Errorf("registry did not start: %w", err)
	}
	if err := registry.Check(l.registryAddr()); err != nil {
		return fmt.Errorf("%w%s", err, c.tail("registry")())
	}
	c.logf("registry (distribution) serving %s at http://%s", registry.LocalName, l.registryAddr())
	return nil
}

// Push uploads the image of a docker-archive tarball to the cluster's registry as ref (a
// registry.LocalName/<repository>:<tag> reference, or a bare <repository>:<tag>) and returns its digest.
func (c *Cluster) Push(ctx context.Context, tarballPath, ref string) (string, error) {
	reg := c.Registry()
	if reg == "" {
		return "", fmt.Errorf("push %s: the cluster runs without a registry (started by an older harness? "+
			"`make cluster-down` and up again)", ref)
	}
	return registry.PushTarball(ctx, reg, tarballPath, ref)
}
