package manifests

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// RenderModule renders the kustomization k, in which MODULE_DIR stands for moduleDir (an upstream module's
// directory in the module cache: its own kustomize bases), with more files beside kustomization.yaml
// (resources, generator inputs). It writes them into a temporary directory: kustomize takes only relative
// paths to other roots.
func RenderModule(k []byte, moduleDir string, files map[string][]byte) ([]*unstructured.Unstructured, error) {
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
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	return Render(dir)
}

// SplitRef splits an image reference "name:tag" (a registry port is not a tag; no tag is "latest").
func SplitRef(ref string) (name, tag string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "latest"
	}
	return ref[:i], ref[i+1:]
}

// Find returns the object of kind and name among objs, or nil.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// FirstContainer is the first container of a workload's pod template (Deployment, DaemonSet, Job), or nil.
func FirstContainer(o *unstructured.Unstructured) map[string]any {
	cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if len(cs) == 0 {
		return nil
	}
	c, _ := cs[0].(map[string]any)
	return c
}

// CRDServes reports whether a CustomResourceDefinition among objs serves apiVersion (group/version) kind.
func CRDServes(objs []*unstructured.Unstructured, apiVersion, kind string) bool {
	group, version, _ := strings.Cut(apiVersion, "/")
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		g, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		k, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		if g != group || k != kind {
			continue
		}
		vs, _, _ := unstructured.NestedSlice(o.Object, "spec", "versions")
		for _, v := range vs {
			m, _ := v.(map[string]any)
			if m["name"] == version && m["served"] == true {
				return true
			}
		}
	}
	return false
}

// KindsIn returns apiVersion+" "+kind of every object in the YAML files under dirs of the repository at root
// (files or directories; kinds of the given API groups only), and of the GitRepository their sourceRefs
// name, sorted: what a component's CRDs must serve for the repository's manifests.
func KindsIn(root string, groups []string, dirs ...string) ([]string, error) {
	seen := map[string]bool{}
	add := func(apiVersion, kind string) {
		g, _, _ := strings.Cut(apiVersion, "/")
		if slices.Contains(groups, g) {
			seen[apiVersion+" "+kind] = true
		}
	}
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".yaml") || e.Name() == "kustomization.yaml" {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			objs, err := Decode(b)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			for _, o := range objs {
				add(o.GetAPIVersion(), o.GetKind())
				if k, ok, _ := unstructured.NestedString(o.Object, "spec", "sourceRef", "kind"); ok {
					switch k { // a sourceRef names a kind, not its version: the one flux/ writes
					case "GitRepository":
						add("source.toolkit.fluxcd.io/v1", k)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}
