package deploy

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/build"
)

func moduleDir(t *testing.T, name string) string {
	t.Helper()
	cache, err := build.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := build.ModuleDir(context.Background(), cache, build.Find(name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// The operator is CloudNativePG's own release kustomization with only the image and its pull policy changed.
func TestCNPGRendersUpstreamRelease(t *testing.T) {
	objs, err := CNPG(moduleDir(t, "cloudnative-pg"), "txmesh.local/cloudnative-pg:1.30.0")
	if err != nil {
		t.Fatal(err)
	}
	d := find(objs, "Deployment", "cnpg-controller-manager")
	if d == nil {
		t.Fatal("no operator Deployment")
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := cs[0].(map[string]any)
	if c["image"] != "txmesh.local/cloudnative-pg:1.30.0" || c["imagePullPolicy"] != "IfNotPresent" {
		t.Fatalf("operator container image %v policy %v", c["image"], c["imagePullPolicy"])
	}
	env, _ := json.Marshal(c["env"])
	if !strings.Contains(string(env), `"value":"txmesh.local/cloudnative-pg:1.30.0"`) {
		t.Fatalf("OPERATOR_IMAGE_NAME not the local image: %s", env)
	}
	for _, want := range [][2]string{{"CustomResourceDefinition", "clusters.postgresql.cnpg.io"},
		{"MutatingWebhookConfiguration", "cnpg-mutating-webhook-configuration"},
		{"ValidatingWebhookConfiguration", "cnpg-validating-webhook-configuration"},
		{"Namespace", "cnpg-system"}} {
		if find(objs, want[0], want[1]) == nil {
			t.Errorf("no %s %s in the release", want[0], want[1])
		}
	}
}

func TestLocalPathIsDefaultWithOneDirectoryPerNode(t *testing.T) {
	objs, err := LocalPath(moduleDir(t, "local-path-provisioner"), "txmesh.local/local-path-provisioner:v0.0.30",
		"txmesh.local/busybox:1", []NodePath{{Node: "node-1", Path: "/v/node-1"}, {Node: "node-2", Path: "/v/node-2"}})
	if err != nil {
		t.Fatal(err)
	}
	sc := find(objs, "StorageClass", "local-path")
	if sc == nil || sc.GetAnnotations()["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Fatalf("local-path is not the default StorageClass: %v", sc)
	}
	cm := find(objs, "ConfigMap", "local-path-config")
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	var cfg struct {
		NodePathMap []struct {
			Node  string
			Paths []string
		}
	}
	if err := json.Unmarshal([]byte(data["config.json"]), &cfg); err != nil {
		t.Fatalf("config.json: %v\n%s", err, data["config.json"])
	}
	if len(cfg.NodePathMap) != 2 || cfg.NodePathMap[1].Node != "node-2" || cfg.NodePathMap[1].Paths[0] != "/v/node-2" {
		t.Fatalf("nodePathMap %+v", cfg.NodePathMap)
	}
	if !strings.Contains(data["helperPod.yaml"], "image: txmesh.local/busybox:1") {
		t.Fatalf("helper pod image: %s", data["helperPod.yaml"])
	}
}

func TestCoreDNSHasNoUpstream(t *testing.T) {
	objs, err := CoreDNS("txmesh.local/coredns:v1.12.4", "10.252.0.10")
	if err != nil {
		t.Fatal(err)
	}
	cm := find(objs, "ConfigMap", "coredns")
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	if strings.Contains(data["Corefile"], "forward") {
		t.Fatal("CoreDNS forwards outside the cluster")
	}
	svc := find(objs, "Service", "kube-dns")
	ip, _, _ := unstructured.NestedString(svc.Object, "spec", "clusterIP")
	if ip != "10.252.0.10" {
		t.Fatalf("kube-dns at %q", ip)
	}
}
