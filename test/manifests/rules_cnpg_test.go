package manifests

import (
	"fmt"
	"strings"
	"testing"

	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestFailoverSettingsInCRD: every field cnpg-explicit-failover-settings requires is a field of the Cluster CRD
// of the pinned CloudNativePG (go.mod: github.com/cloudnative-pg/api), of the type its values have, and the
// default the rule quotes is that CRD's, so a rename or a new default in an upgrade fails here.
func TestFailoverSettingsInCRD(t *testing.T) {
	set, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	c, ok := set[schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}]
	if !ok {
		t.Fatal("no Cluster CRD of postgresql.cnpg.io/v1")
	}
	t.Logf("Cluster CRD: %s", c.Source)
	for _, f := range failoverSettings {
		t.Run(f.Path, func(t *testing.T) {
			st, err := crdField(c.Structural, f.Path)
			if err != nil {
				t.Fatal(err)
			}
			var def any
			if st.Default.Object != nil {
				def = st.Default.Object
			}
			if fmt.Sprint(def) != fmt.Sprint(f.CRDDefault) {
				t.Errorf("the CRD's default is %v, the rule quotes %v", def, f.CRDDefault)
			}
			for _, v := range []any{f.CRDDefault, f.Want} {
				if v != nil && !typeFits(st.Type, v) {
					t.Errorf("%v (%T) is not of the CRD's type %s", v, v, st.Type)
				}
			}
		})
	}
}

// crdField walks a dotted path of object properties down a structural schema.
func crdField(st *structuralschema.Structural, path string) (*structuralschema.Structural, error) {
	for _, p := range strings.Split(path, ".") {
		next, ok := st.Properties[p]
		if !ok {
			return nil, fmt.Errorf("%s: the CRD has no field %q", path, p)
		}
		st = &next
	}
	return st, nil
}

func typeFits(crdType string, v any) bool {
	switch v.(type) {
	case int, int64:
		return crdType == "integer"
	case bool:
		return crdType == "boolean"
	case string:
		return crdType == "string"
	}
	return false
}
