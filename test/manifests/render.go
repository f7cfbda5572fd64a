package manifests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered manifest with where it came from.
type Object struct {
	Source string // the kustomization (repo-relative) that rendered it
	U      *unstructured.Unstructured
}

// GVK of the object.
func (o Object) GVK() schema.GroupVersionKind { return o.U.GroupVersionKind() }

// ID is "Kind namespace/name".
func (o Object) ID() string {
	ns := o.U.GetNamespace()
	if ns == "" {
		return o.U.GetKind() + " " + o.U.GetName()
	}
	return o.U.GetKind() + " " + ns + "/" + o.U.GetName()
}

// RepoRoot is the repository root (two levels above this module).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Render builds the kustomization in dir (absolute, or relative to the repository root) the way Flux's
// kustomize-controller does (load restrictions: root only).
func Render(dir string) ([]Object, error) {
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(RepoRoot(), dir)
	}
	return RenderFS(filesys.MakeFsOnDisk(), dir)
}

// RenderFS builds the kustomization at dir on fsys.
func RenderFS(fsys filesys.FileSystem, dir string) ([]Object, error) {
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	rm, err := krusty.MakeKustomizer(opts).Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", rel(dir), err)
	}
	var out []Object
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel(dir), err)
		}
		if m, err = normalize(m); err != nil {
			return nil, fmt.Errorf("%s: %w", rel(dir), err)
		}
		out = append(out, Object{Source: rel(dir), U: &unstructured.Unstructured{Object: m}})
	}
	return out, nil
}

// ParseYAML splits a multi-document YAML stream into objects (used for fixtures).
func ParseYAML(source string, data []byte) ([]Object, error) {
	var out []Object
	for i, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", source, i, err)
		}
		if len(m) == 0 {
			continue
		}
		m, err := normalize(m)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", source, i, err)
		}
		out = append(out, Object{Source: source, U: &unstructured.Unstructured{Object: m}})
	}
	return out, nil
}

// normalize gives the map the JSON types the API server sees (int64/float64, no int).
func normalize(m map[string]any) (map[string]any, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if err := utiljson.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func rel(dir string) string {
	if r, err := filepath.Rel(RepoRoot(), dir); err == nil && !strings.HasPrefix(r, "..") {
		return filepath.ToSlash(r)
	}
	return dir
}

// AddOns are components a user applies by hand into a running deployment (kubectl -n txmesh apply -k), listed
// by no overlay: each is validated together with every overlay named here, as it would be applied beside it.
var AddOns = map[string][]string{
	"kustomize/components/audit": {"kustomize/overlays/minikube", "kustomize/overlays/production", "kustomize/overlays/e2e"},
}

// AddOnNamespace is where the add-ons are applied (kubectl -n).
const AddOnNamespace = "txmesh"

// RenderWithAddOn renders an overlay and, beside it, an add-on component with its objects in AddOnNamespace.
func RenderWithAddOn(overlay, addOn string) ([]Object, error) {
	objs, err := Render(overlay)
	if err != nil {
		return nil, err
	}
	extra, err := Render(addOn)
	if err != nil {
		return nil, err
	}
	for _, o := range extra {
		if o.U.GetNamespace() == "" {
			o.U.SetNamespace(AddOnNamespace)
		}
	}
	return append(objs, extra...), nil
}

// Overlays lists kustomize/overlays/*.
func Overlays() ([]string, error) {
	return subdirs("kustomize/overlays")
}

// Components lists kustomize/components/*.
func Components() ([]string, error) {
	return subdirs("kustomize/components")
}

// Clusters lists flux/clusters/*.
func Clusters() ([]string, error) {
	return subdirs("flux/clusters")
}

func subdirs(parent string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(RepoRoot(), parent))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, parent+"/"+e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}
