package netpol

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// The enforcer is upstream's install.yaml with the local image, NRI off and no host mounts.
func TestNetpolRendersUpstreamInstall(t *testing.T) {
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := gobuild.ModuleDir(context.Background(), cache, Component())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(dir, "txmesh.local/kube-network-policies:v0.8.0")
	if err != nil {
		t.Fatal(err)
	}
	ds := manifests.Find(objs, "DaemonSet", Name)
	if ds == nil || ds.GetNamespace() != Namespace {
		t.Fatalf("no DaemonSet %s/%s in %d objects", Namespace, Name, len(objs))
	}
	spec, _, _ := unstructured.NestedMap(ds.Object, "spec", "template", "spec")
	if spec["hostNetwork"] != true {
		t.Fatal("the agent must run in the node's network namespace (hostNetwork)")
	}
	if _, ok := spec["volumes"]; ok {
		t.Fatalf("host mounts left: %v", spec["volumes"])
	}
	c := spec["containers"].([]any)[0].(map[string]any)
	if c["image"] != "txmesh.local/kube-network-policies:v0.8.0" || c["imagePullPolicy"] != "IfNotPresent" {
		t.Fatalf("image %v policy %v", c["image"], c["imagePullPolicy"])
	}
	var args []string
	for _, a := range c["args"].([]any) {
		args = append(args, a.(string))
	}
	if len(args) == 0 || args[0] != "/bin/"+Binary || !strings.Contains(strings.Join(args, " "), "--disable-nri") {
		t.Fatalf("args %v: want upstream's /bin/%s first and --disable-nri", args, Binary)
	}
}
