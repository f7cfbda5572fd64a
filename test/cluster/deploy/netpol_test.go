package deploy

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/build"
)

// The enforcer is upstream's install.yaml with the local image, NRI off and no host mounts.
func TestNetpolRendersUpstreamInstall(t *testing.T) {
	cache, err := build.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := build.ModuleDir(context.Background(), cache, build.Netpol())
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Netpol(dir, "txmesh.local/kube-network-policies:v0.8.0")
	if err != nil {
		t.Fatal(err)
	}
	ds := find(objs, "DaemonSet", NetpolName)
	if ds == nil || ds.GetNamespace() != NetpolNamespace {
		t.Fatalf("no DaemonSet %s/%s in %d objects", NetpolNamespace, NetpolName, len(objs))
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
	if len(args) == 0 || args[0] != "/bin/"+build.NetpolBinary || !strings.Contains(strings.Join(args, " "), "--disable-nri") {
		t.Fatalf("args %v: want upstream's /bin/%s first and --disable-nri", args, build.NetpolBinary)
	}
}
