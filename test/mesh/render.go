package mesh

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// RepoRoot is the repository root (two levels above this module).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// treeDirs are the parts of the repository a render reads.
var treeDirs = []string{"kustomize", "mesh", "flux"}

// Tree is an in-memory copy of the repository's manifests. Tests render it as it is, or break a copy of it
// (Edit) to prove that a check fails.
type Tree struct {
	fs filesys.FileSystem
}

// Root is the path of the repository root inside every Tree.
const Root = "/repo"

// LoadTree copies kustomize/, mesh/ and flux/ of the repository into memory.
func LoadTree() (*Tree, error) {
	mem := filesys.MakeFsInMemory()
	for _, d := range treeDirs {
		src := filepath.Join(RepoRoot(), d)
		err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(RepoRoot(), p)
			return mem.WriteFile(filepath.Join(Root, rel), data)
		})
		if err != nil {
			return nil, fmt.Errorf("copy %s: %w", d, err)
		}
	}
	return &Tree{fs: mem}, nil
}

// Clone returns an independent copy of t.
func (t *Tree) Clone() (*Tree, error) {
	mem := filesys.MakeFsInMemory()
	err := t.fs.Walk(Root, func(p string, info fs.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		data, err := t.fs.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(p, data)
	})
	if err != nil {
		return nil, err
	}
	return &Tree{fs: mem}, nil
}

// Read returns the file at the repository-relative path.
func (t *Tree) Read(path string) ([]byte, error) {
	return t.fs.ReadFile(filepath.Join(Root, path))
}

// Edit replaces the only occurrence of old by new in the repository-relative file path; it fails when old
// occurs zero or several times, so a broken copy never silently stops being broken when a file changes.
func (t *Tree) Edit(path, old, new string) error {
	data, err := t.Read(path)
	if err != nil {
		return err
	}
	if n := strings.Count(string(data), old); n != 1 {
		return fmt.Errorf("edit %s: %q occurs %d times, want exactly once", path, old, n)
	}
	return t.fs.WriteFile(filepath.Join(Root, path), []byte(strings.Replace(string(data), old, new, 1)))
}

// Render builds the kustomization at the repository-relative dir the way Flux's kustomize-controller does
// (load restrictions: root only).
func (t *Tree) Render(dir string) ([]*unstructured.Unstructured, error) {
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	rm, err := krusty.MakeKustomizer(opts).Run(t.fs, filepath.Join(Root, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// Overlays lists kustomize/overlays/* (repository-relative).
func (t *Tree) Overlays() ([]string, error) {
	dir := filepath.Join(Root, "kustomize", "overlays")
	names, err := t.fs.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if t.fs.IsDir(filepath.Join(dir, n)) {
			out = append(out, "kustomize/overlays/"+n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// find returns the rendered object of kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}
