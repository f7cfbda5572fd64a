package coredns

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

func TestCoreDNSHasNoUpstream(t *testing.T) {
	objs, err := Objects("txmesh.local/coredns:v1.12.4", "10.252.0.10")
	if err != nil {
		t.Fatal(err)
	}
	cm := manifests.Find(objs, "ConfigMap", "coredns")
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	if strings.Contains(data["Corefile"], "forward") {
		t.Fatal("CoreDNS forwards outside the cluster")
	}
	svc := manifests.Find(objs, "Service", "kube-dns")
	ip, _, _ := unstructured.NestedString(svc.Object, "spec", "clusterIP")
	if ip != "10.252.0.10" {
		t.Fatalf("kube-dns at %q", ip)
	}
}
