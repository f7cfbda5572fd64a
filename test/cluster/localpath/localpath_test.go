package localpath

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

func moduleDir(t *testing.T) string {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := gobuild.ModuleDir(context.Background(), cache, Component())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLocalPathIsDefaultWithOneDirectoryPerNode(t *testing.T) {
	objs, err := Objects(moduleDir(t), "txmesh.local/local-path-provisioner:v0.0.30",
		"txmesh.local/busybox:1", []NodePath{{Node: "node-1", Path: "/v/node-1"}, {Node: "node-2", Path: "/v/node-2"}})
	if err != nil {
		t.Fatal(err)
	}
	sc := manifests.Find(objs, "StorageClass", "local-path")
	if sc == nil || sc.GetAnnotations()["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Fatalf("local-path is not the default StorageClass: %v", sc)
	}
	cm := manifests.Find(objs, "ConfigMap", "local-path-config")
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
