// Package registry is the throwaway cluster's OCI registry: distribution's `registry` built from its
// module, run on the host beside the control plane (package kube starts it as one of the cluster's daemons,
// so that teardown removes it with them), serving plain HTTP on the bridge address only. Every locally built
// image is named LocalName/…; the nodes' containerd resolves that name to the registry (HostsTOML), so
// manifests keep their references and a tag that is not on a node is pulled from it. The e2e pushes the
// txmesh images and the CD components' images to it (Push).
package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// Version is the pinned github.com/distribution/distribution/v3.
const Version = "v3.0.0"

// Component builds distribution's registry command.
func Component() gobuild.Component {
	const dist = "github.com/distribution/distribution/v3"
	return gobuild.Component{Name: "distribution", Module: dist, Version: Version, GoLine: "1.23.7",
		Packages: []string{dist + "/cmd/registry"},
		Ldflags: "-X " + dist + "/version.version=" + Version + " -X " + dist +
			"/version.revision=" + Version + " -X " + dist + "/version.mainpkg=" + dist,
		Expect: 3 * time.Minute}
}

// LocalName is the registry name of the locally built images.
const LocalName = "txmesh.local"

// Port is fixed because Git content names the registry (Flux's ImageRepository in flux/clusters/e2e).
const Port = 5000

// Env is the daemon's environment: distribution v3 otherwise sends traces to an OTLP collector on localhost.
var Env = []string{"OTEL_TRACES_EXPORTER=none"}

// Config is the registry's config.yml: storage in dataDir, listening on addr (host:port).
func Config(dataDir, addr string) string {
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
`, dataDir, addr)
}

// HostsTOML points a node's containerd at the registry at addr for LocalName (plain HTTP: the bridge is
// private to the machine); it goes to <config_path>/txmesh.local/hosts.toml.
func HostsTOML(addr string) string {
	return fmt.Sprintf(`server = "http://%[1]s"

[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`, addr)
}

// Check asks the registry at addr for its API root.
func Check(addr string) error {
	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("registry: GET /v2/ answered %s", resp.Status)
	}
	return nil
}

// PushTarball uploads the image of a docker-archive tarball to the registry at addr as ref.
func PushTarball(ctx context.Context, addr, tarballPath, ref string) (string, error) {
	img, err := tarball.ImageFromPath(tarballPath, nil)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return Push(ctx, addr, img, ref)
}

// Push uploads img to the registry at addr (host:port, plain HTTP) as ref (LocalName/<repository>:<tag> or
// <repository>:<tag>) and returns its digest.
func Push(ctx context.Context, addr string, img v1.Image, ref string) (string, error) {
	repoTag := strings.TrimPrefix(ref, LocalName+"/")
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
