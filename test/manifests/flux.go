package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ClusterRender is everything Flux would apply for one cluster directory: the cluster's own manifests and,
// recursively, the render of every Flux Kustomization's spec.path.
type ClusterRender struct {
	Dir  string
	All  []Object            // union of everything
	ByKs map[string][]Object // rendered output per Flux Kustomization name ("" = the cluster dir itself)
}

// RenderCluster renders flux/clusters/<env>. Like Flux's kustomize-controller, a directory without a
// kustomization.yaml is taken as all its YAML files (the bootstrap-generated flux-system/ is not committed).
func RenderCluster(dir string) (*ClusterRender, error) {
	cr := &ClusterRender{Dir: dir, ByKs: map[string][]Object{}}
	top, err := renderFluxPath(dir)
	if err != nil {
		return nil, err
	}
	cr.ByKs[""] = top
	cr.All = append(cr.All, top...)
	queue := append([]Object(nil), top...)
	seen := map[string]bool{}
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		if o.U.GetKind() != "Kustomization" || o.GVK().Group != "kustomize.toolkit.fluxcd.io" {
			continue
		}
		if seen[o.U.GetName()] {
			return nil, fmt.Errorf("%s: Flux Kustomization %s defined twice", dir, o.U.GetName())
		}
		seen[o.U.GetName()] = true
		path, _, _ := nestedString(o.U.Object, "spec", "path")
		clean := filepath.ToSlash(filepath.Clean(strings.TrimPrefix(path, "./")))
		if path == "" || strings.HasPrefix(clean, "..") || filepath.IsAbs(clean) {
			return nil, fmt.Errorf("%s: Kustomization %s: spec.path %q must be a relative path inside the repository", dir, o.U.GetName(), path)
		}
		objs, err := renderFluxPath(clean)
		if err != nil {
			return nil, fmt.Errorf("flux Kustomization %s: %w", o.U.GetName(), err)
		}
		if ns, ok, _ := nestedString(o.U.Object, "spec", "targetNamespace"); ok && ns != "" {
			for _, x := range objs {
				x.U.SetNamespace(ns)
			}
		}
		cr.ByKs[o.U.GetName()] = objs
		cr.All = append(cr.All, objs...)
		queue = append(queue, objs...)
	}
	return cr, nil
}

func renderFluxPath(dir string) ([]Object, error) {
	abs := filepath.Join(RepoRoot(), dir)
	st, err := os.Stat(abs)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("path %s does not exist in the repository", dir)
	}
	for _, name := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
		if _, err := os.Stat(filepath.Join(abs, name)); err == nil {
			return Render(abs)
		}
	}
	var files []string
	err = filepath.WalkDir(abs, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := ParseYAML(rel(f), data)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func readFile(p string) ([]byte, error) { return os.ReadFile(filepath.Join(RepoRoot(), p)) }

func dirExists(p string) bool {
	st, err := os.Stat(filepath.Join(RepoRoot(), p))
	return err == nil && st.IsDir() && !strings.HasPrefix(filepath.Clean(p), "..")
}
