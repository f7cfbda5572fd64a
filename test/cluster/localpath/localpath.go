// Package localpath is the cluster's storage: rancher's local-path-provisioner built from its module, imaged,
// and deployed from the module's own manifests (deploy/) as the default StorageClass, one volume directory
// per node (the nodes share this machine's disk), its helper pods on the busybox image.
package localpath

import (
	"context"
	_ "embed"
	"encoding/json"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Version is the pinned github.com/rancher/local-path-provisioner.
const Version = "v0.0.30"

// Component builds the provisioner.
func Component() gobuild.Component {
	return gobuild.Component{Name: "local-path-provisioner", Module: "github.com/rancher/local-path-provisioner",
		Version: Version, Packages: []string{"github.com/rancher/local-path-provisioner"}, Expect: 3 * time.Minute}
}

// Image is the provisioner's image: the binary at /usr/bin/local-path-provisioner, run as root (its
// Deployment says so).
func Image(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
	return b.Binary(ctx, "txmesh.local/local-path-provisioner:"+Version,
		map[string]string{"/usr/bin/local-path-provisioner": bins["local-path-provisioner"]},
		[]string{"local-path-provisioner"}, "")
}

//go:embed kustomization.yaml
var kustomization string

// NodePath is where one node keeps its local volumes.
type NodePath struct {
	Node string `json:"node"`
	Path string `json:"-"`
}

// Objects renders the provisioner from its module (moduleDir) as the default StorageClass, with the given
// image, helper image (busybox) and one volume directory per node.
func Objects(moduleDir, image, busybox string, nodes []NodePath) ([]*unstructured.Unstructured, error) {
	type entry struct {
		Node  string   `json:"node"`
		Paths []string `json:"paths"`
	}
	var m []entry
	for _, n := range nodes {
		m = append(m, entry{Node: n.Node, Paths: []string{n.Path}})
	}
	cfg, err := json.MarshalIndent(map[string]any{"nodePathMap": m}, "", "  ")
	if err != nil {
		return nil, err
	}
	name, tag := manifests.SplitRef(image)
	// The config is a block scalar inside a YAML patch: indent it to the scalar's level.
	indented := strings.ReplaceAll(string(cfg), "\n", "\n          ")
	k := strings.NewReplacer("LOCALPATH_IMAGE_NAME", name, "LOCALPATH_IMAGE_TAG", tag, "BUSYBOX_IMAGE", busybox,
		"NODE_PATH_MAP", indented).Replace(kustomization)
	return manifests.RenderModule([]byte(k), moduleDir, nil)
}

// Wait waits until the provisioner is available.
func Wait(ctx context.Context, a *manifests.Applier) error {
	return a.Wait(ctx, manifests.Deployments, "local-path-storage", "local-path-provisioner", 3*time.Minute,
		manifests.DeploymentAvailable)
}
