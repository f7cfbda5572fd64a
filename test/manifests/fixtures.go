package manifests

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Fixture is a broken variant of a real render: the render (a Flux cluster directory, rendered with every
// Kustomization's path, or an overlay), and either one of its objects mutated (the first of that kind and name)
// or a document added to it.
type Fixture struct {
	Render string
	Kind   string
	Name   string
	Mutate func(m map[string]any)
	Add    string
}

// The renders the fixtures break.
const (
	production = "flux/clusters/production"
	minikube   = "flux/clusters/minikube"
	e2e        = "flux/clusters/e2e" // make e2e's CD tree: overlays/e2e-cd through Flux
	e2eOverlay = "kustomize/overlays/e2e"
	// The audit add-on applied beside an overlay (AddOns).
	auditComponent  = "kustomize/components/audit"
	productionAudit = "kustomize/overlays/production+" + auditComponent
	minikubeAudit   = "kustomize/overlays/minikube+" + auditComponent
)

func mutate(render, kind, name string, f ...func(map[string]any)) Fixture {
	return Fixture{Render: render, Kind: kind, Name: name, Mutate: func(m map[string]any) {
		for _, g := range f {
			g(m)
		}
	}}
}

func add(render, doc string) Fixture { return Fixture{Render: render, Add: doc} }

// Apply breaks objs (a deep copy of the render) as the fixture says.
func (f Fixture) Apply(objs []Object) ([]Object, error) {
	if f.Add != "" {
		extra, err := ParseYAML("fixture", []byte(f.Add))
		if err != nil {
			return nil, err
		}
		return append(objs, extra...), nil
	}
	for _, o := range objs {
		if o.U.GetKind() == f.Kind && o.U.GetName() == f.Name {
			f.Mutate(o.U.Object)
			return objs, nil
		}
	}
	return nil, fmt.Errorf("fixture target %s %s not found in the %s render", f.Kind, f.Name, f.Render)
}

// set sets a field by its dotted path.
func set(path string, v any) func(map[string]any) {
	return func(m map[string]any) {
		if err := unstructured.SetNestedField(m, v, strings.Split(path, ".")...); err != nil {
			panic(err)
		}
	}
}

// del removes a field by its dotted path.
func del(path string) func(map[string]any) {
	return func(m map[string]any) { unstructured.RemoveNestedField(m, strings.Split(path, ".")...) }
}

// container0 edits the first container of a pod template spec.
func container0(f func(c map[string]any)) func(map[string]any) {
	return func(m map[string]any) {
		cs, _, _ := unstructured.NestedSlice(m, "spec", "template", "spec", "containers")
		f(cs[0].(map[string]any))
		_ = unstructured.SetNestedSlice(m, cs, "spec", "template", "spec", "containers")
	}
}

// inContainer sets (v non-nil) or removes (v nil) a field of the first container, by its path in the container.
func inContainer(v any, path ...string) func(map[string]any) {
	return container0(func(c map[string]any) {
		if v == nil {
			unstructured.RemoveNestedField(c, path...)
			return
		}
		if err := unstructured.SetNestedField(c, v, path...); err != nil {
			panic(err)
		}
	})
}

// annotate sets a pod template annotation (keys hold dots, which set would split on).
func annotate(key, value string) func(map[string]any) {
	return func(m map[string]any) {
		_ = unstructured.SetNestedField(m, value, "spec", "template", "metadata", "annotations", key)
	}
}

// label sets a metadata label.
func label(key, value string) func(map[string]any) {
	return func(m map[string]any) { _ = unstructured.SetNestedField(m, value, "metadata", "labels", key) }
}

// unlabel removes a metadata label.
func unlabel(key string) func(map[string]any) {
	return func(m map[string]any) { unstructured.RemoveNestedField(m, "metadata", "labels", key) }
}

func route0(f func(r map[string]any)) func(map[string]any) {
	return func(m map[string]any) {
		rs, _, _ := unstructured.NestedSlice(m, "spec", "http")
		f(rs[0].(map[string]any))
		_ = unstructured.SetNestedSlice(m, rs, "spec", "http")
	}
}

func firstDep(f func(d map[string]any)) func(map[string]any) {
	return func(m map[string]any) {
		ds, _, _ := unstructured.NestedSlice(m, "spec", "dependsOn")
		f(ds[0].(map[string]any))
		_ = unstructured.SetNestedSlice(m, ds, "spec", "dependsOn")
	}
}
