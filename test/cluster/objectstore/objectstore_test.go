package objectstore

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// The object store's manifests: a restricted namespace, the root keys' Secret, and a Service at URL without a
// selector whose only endpoint is the host's address at Port: nothing of it runs in a pod.
func TestObjectsRender(t *testing.T) {
	creds := Credentials{AccessKeyID: "AKTEST", SecretAccessKey: "secret-test"}
	objs, err := Objects("10.250.0.1", creds)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		// The API server refuses what these refuse (a "/" in a label value once stopped the deploy).
		for k, v := range o.GetLabels() {
			if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
				t.Errorf("%s %s: label %s=%s: %v", o.GetKind(), o.GetName(), k, v, errs)
			}
		}
		if o.GetKind() != "Namespace" && o.GetNamespace() != Namespace {
			t.Errorf("%s %s in namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
	if got := strings.Join(kinds, ","); got != "Namespace,Secret,Service,EndpointSlice" {
		t.Errorf("objects %s", got)
	}
	if l := objs[0].GetLabels(); objs[0].GetName() != Namespace || l["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s labels %v", objs[0].GetName(), l)
	}
	s := manifests.Find(objs, "Secret", RootSecret)
	data, _, _ := unstructured.NestedStringMap(s.Object, "stringData")
	if data[AccessKey] != creds.AccessKeyID || data[SecretKey] != creds.SecretAccessKey {
		t.Errorf("root Secret %v", data)
	}
	svc := manifests.Find(objs, "Service", Name)
	port, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(port) != 1 || fmt.Sprint(port[0].(map[string]any)["port"]) != fmt.Sprint(Port) || URL != "http://"+Name+"."+Namespace+":7070" {
		t.Errorf("Service ports %v, URL %s", port, URL)
	}
	if sel, found, _ := unstructured.NestedMap(svc.Object, "spec", "selector"); found {
		t.Errorf("Service selector %v: the endpoints would be the pods it selects, not the host", sel)
	}
	var slice *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "EndpointSlice" {
			slice = o
		}
	}
	eps, _, _ := unstructured.NestedSlice(slice.Object, "endpoints")
	ports, _, _ := unstructured.NestedSlice(slice.Object, "ports")
	if slice.GetLabels()["kubernetes.io/service-name"] != Name || len(eps) != 1 || len(ports) != 1 ||
		fmt.Sprint(eps[0].(map[string]any)["addresses"]) != "[10.250.0.1]" ||
		fmt.Sprint(ports[0].(map[string]any)["port"]) != fmt.Sprint(Port) {
		t.Errorf("EndpointSlice labels %v, endpoints %v, ports %v", slice.GetLabels(), eps, ports)
	}
	if !slices.Equal(Env(creds), []string{"ROOT_ACCESS_KEY_ID=AKTEST", "ROOT_SECRET_ACCESS_KEY=secret-test"}) {
		t.Errorf("env %v", Env(creds))
	}

	if _, err := Objects("10.250.0.1", Credentials{AccessKeyID: "a"}); err == nil {
		t.Error("rendered without a secret key")
	}
	if _, err := Objects("objectstore.local", creds); err == nil {
		t.Error("rendered with a host name for an address")
	}
}

func TestNewCredentials(t *testing.T) {
	a, err := NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || len(a.AccessKeyID) < 16 || len(a.SecretAccessKey) < 32 {
		t.Errorf("credentials %+v %+v", a, b)
	}
}
