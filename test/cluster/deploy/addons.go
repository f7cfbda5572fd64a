package deploy

import (
	"embed"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

//go:embed addons/*.yaml
var addonFiles embed.FS

func addon(name string, repl ...string) ([]byte, error) {
	b, err := addonFiles.ReadFile("addons/" + name)
	if err != nil {
		return nil, err
	}
	return []byte(strings.NewReplacer(repl...).Replace(string(b))), nil
}

// CoreDNS is the cluster DNS (image: a CoreDNS image reference; dnsIP: the kube-dns Service address the
// kubelets hand to pods).
func CoreDNS(image, dnsIP string) ([]*unstructured.Unstructured, error) {
	b, err := addon("coredns.yaml", "COREDNS_IMAGE", image, "DNS_SERVICE_IP", dnsIP)
	if err != nil {
		return nil, err
	}
	return Decode(b)
}

// NodePath is where one node keeps its local volumes.
type NodePath struct {
	Node string `json:"node"`
	Path string `json:"-"`
}

// LocalPath renders rancher's local-path-provisioner from its module (moduleDir) as the default StorageClass.
func LocalPath(moduleDir, image, busybox string, nodes []NodePath) ([]*unstructured.Unstructured, error) {
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
	name, tag := splitRef(image)
	// The config is a block scalar inside a YAML patch: indent it to the scalar's level.
	indented := strings.ReplaceAll(string(cfg), "\n", "\n          ")
	k, err := addon("local-path-kustomization.yaml", "LOCALPATH_IMAGE_NAME", name,
		"LOCALPATH_IMAGE_TAG", tag, "BUSYBOX_IMAGE", busybox, "NODE_PATH_MAP", indented)
	if err != nil {
		return nil, err
	}
	return renderKustomization(k, moduleDir)
}

// CNPG renders CloudNativePG's operator from its module (moduleDir) with the given operator image.
func CNPG(moduleDir, image string) ([]*unstructured.Unstructured, error) {
	name, tag := splitRef(image)
	k, err := addon("cnpg-kustomization.yaml", "CNPG_IMAGE_NAME", name, "CNPG_IMAGE_TAG", tag)
	if err != nil {
		return nil, err
	}
	return renderKustomization(k, moduleDir)
}

// renderKustomization writes k (whose MODULE_DIR stands for moduleDir) into a temporary directory and renders
// it; kustomize takes only relative paths to other roots.
func renderKustomization(k []byte, moduleDir string) ([]*unstructured.Unstructured, error) {
	dir, err := os.MkdirTemp("", "txmesh-kustomize-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rel, err := filepath.Rel(dir, moduleDir)
	if err != nil {
		return nil, err
	}
	k = []byte(strings.ReplaceAll(string(k), "MODULE_DIR", rel))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), k, 0o644); err != nil {
		return nil, err
	}
	return Render(dir)
}

// splitRef splits "name:tag" (a registry port is not a tag).
func splitRef(ref string) (name, tag string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}
