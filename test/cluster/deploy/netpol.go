package deploy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// NetpolNamespace and NetpolName locate the NetworkPolicy enforcer's DaemonSet (upstream's names).
const (
	NetpolNamespace = "kube-system"
	NetpolName      = "kube-network-policies"
)

// DaemonSets is the resource the harness waits on for node agents.
var DaemonSets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}

// Netpol renders kube-network-policies from its module (moduleDir: install.yaml) with the given image.
func Netpol(moduleDir, image string) ([]*unstructured.Unstructured, error) {
	name, tag := splitRef(image)
	k, err := addon("netpol-kustomization.yaml", "NETPOL_IMAGE_NAME", name, "NETPOL_IMAGE_TAG", tag)
	if err != nil {
		return nil, err
	}
	return renderKustomization(k, moduleDir)
}

// DaemonSetReady: the current generation rolled out on every node it is scheduled to, every pod ready.
func DaemonSetReady(o *unstructured.Unstructured) (bool, string) {
	want := i64(o, "status", "desiredNumberScheduled")
	upd, ready := i64(o, "status", "updatedNumberScheduled"), i64(o, "status", "numberReady")
	ok := i64(o, "status", "observedGeneration") >= o.GetGeneration() && want > 0 && upd == want && ready == want
	return ok, fmt.Sprintf("%d/%d updated, %d ready", upd, want, ready)
}
