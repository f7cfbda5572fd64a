package barman

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/objectstore"
)

// The ObjectStore fits the plugin's own CRD (every field known to its schema, required ones present, enums
// respected) and points at the object store with the keys of the credentials Secret.
func TestObjectStoreFitsTheCRD(t *testing.T) {
	o := ObjectStore("txmesh", "bank-db-backups", "s3://backups/bank-db/", "objectstore-credentials")
	schema := objectStoreSchema(t)
	if errs := conform(o.Object["spec"], specOf(schema), "spec"); len(errs) > 0 {
		t.Errorf("ObjectStore does not fit the CRD:\n%s", strings.Join(errs, "\n"))
	}
	cfg, _, _ := unstructured.NestedMap(o.Object, "spec", "configuration")
	if cfg["endpointURL"] != objectstore.URL || cfg["destinationPath"] != "s3://backups/bank-db/" {
		t.Errorf("configuration %v", cfg)
	}
	key, _, _ := unstructured.NestedString(cfg, "s3Credentials", "secretAccessKey", "key")
	if key != objectstore.SecretKey {
		t.Errorf("secret key from %q", key)
	}

	// The check can fail: an unknown field and a value outside an enum.
	bad := o.DeepCopy()
	_ = unstructured.SetNestedField(bad.Object, "brotli", "spec", "configuration", "wal", "compression")
	_ = unstructured.SetNestedField(bad.Object, "x", "spec", "configuration", "bogus")
	if errs := conform(bad.Object["spec"], specOf(schema), "spec"); len(errs) != 2 {
		t.Errorf("a bad ObjectStore: %v, want 2 errors", errs)
	}
}

func objectStoreSchema(t *testing.T) map[string]any {
	t.Helper()
	objs := render(t)
	crd := manifests.Find(objs, "CustomResourceDefinition", "objectstores.barmancloud.cnpg.io")
	if crd == nil {
		t.Fatal("no ObjectStore CRD")
	}
	vs, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range vs {
		if m := v.(map[string]any); m["name"] == "v1" {
			s, _, _ := unstructured.NestedMap(m, "schema", "openAPIV3Schema")
			return s
		}
	}
	t.Fatal("the CRD has no v1")
	return nil
}

func specOf(s map[string]any) map[string]any {
	p, _, _ := unstructured.NestedMap(s, "properties", "spec")
	return p
}

// conform checks v against an OpenAPI v3 schema's properties, required fields, enums and types (what a
// structural CRD prunes or refuses), returning one line per problem.
func conform(v any, s map[string]any, path string) []string {
	var errs []string
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v not in %v", path, v, enum))
	}
	switch typ, _ := s["type"].(string); typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: %T, want an object", path, v))
		}
		props, _ := s["properties"].(map[string]any)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if s["x-kubernetes-preserve-unknown-fields"] != true && s["additionalProperties"] == nil {
					errs = append(errs, fmt.Sprintf("%s.%s: unknown field", path, k))
				}
				continue
			}
			errs = append(errs, conform(m[k], ps, path+"."+k)...)
		}
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s.%s: required", path, r))
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			errs = append(errs, fmt.Sprintf("%s: %T, want a string", path, v))
		}
	}
	return errs
}
