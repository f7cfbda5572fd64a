package kube

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The cluster's OCI registry (distribution's `registry`, Options.Bin["registry"]) runs on the host, in the
// cluster's cgroup with its storage under Layout.Dir, so Down removes it like any other daemon. It serves
// plain HTTP on the bridge address only. The nodes' containerd resolves the images' registry name
// (LocalRegistryName: every locally built image is named txmesh.local/…) to it through hosts.toml, so
// manifests keep their references and a tag that is not on a node is pulled from it.

// LocalRegistryName is the registry name of the locally built images.
const LocalRegistryName = "txmesh.local"

// registryPort is fixed because Git content names the registry (Flux's ImageRepository in flux/clusters/e2e).
const registryPort = 5000

func (l Layout) registryDir() string  { return filepath.Join(l.Dir, "registry") }
func (l Layout) registryAddr() string { return fmt.Sprintf("%s:%d", l.net().HostIP, registryPort) }
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

func registryConfig(l Layout) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(l.registryDir(), "data"), l.registryAddr())
}

// hostsTOML points a node's containerd at the registry for LocalRegistryName (plain HTTP: the bridge is
// private to the machine).
func hostsTOML(l Layout) string {
	return fmt.Sprintf(`server = "http://%[1]s"

[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`, l.registryAddr())
}

func (c *Cluster) startRegistry(ctx context.Context) error {
	l := c.layout
	if err := os.MkdirAll(filepath.Join(l.registryDir(), "data"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(l.registryDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte(registryConfig(l)), 0o644); err != nil {
		return err
	}
	// OTEL_TRACES_EXPORTER=none: distribution v3 otherwise sends traces to an OTLP collector on localhost.
	if err := c.spawn("registry", "", l.Name+"/registry", []string{"OTEL_TRACES_EXPORTER=none"},
		c.bin["registry"], "serve", cfg); err != nil {
		return err
	}
	if err := waitTCP(ctx, l.registryAddr(), 30*time.Second, c.tail("registry")); err != nil {
		return fmt.Errorf("registry did not start: %w", err)
	}
	resp, err := http.Get("http://" + l.registryAddr() + "/v2/")
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("registry: GET /v2/ answered %s%s", resp.Status, c.tail("registry")())
	}
	c.logf("registry (distribution) serving %s at http://%s", LocalRegistryName, l.registryAddr())
	return nil
}

// Push uploads the image of a docker-archive tarball to the cluster's registry as ref (a
// LocalRegistryName/<repository>:<tag> reference, or a bare <repository>:<tag>) and returns its digest.
func (c *Cluster) Push(ctx context.Context, tarballPath, ref string) (string, error) {
	reg := c.Registry()
	if reg == "" {
		return "", fmt.Errorf("push %s: the cluster runs without a registry (started by an older harness? "+
			"`make cluster-down` and up again)", ref)
	}
	img, err := tarball.ImageFromPath(tarballPath, nil)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return PushImage(ctx, reg, img, ref)
}

// PushImage uploads img to the registry at addr (host:port, plain HTTP) as ref.
func PushImage(ctx context.Context, addr string, img v1.Image, ref string) (string, error) {
	repoTag := strings.TrimPrefix(ref, LocalRegistryName+"/")
	tag, err := name.NewTag(addr+"/"+repoTag, name.Insecure, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s to %s: %w", ref, addr, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}
