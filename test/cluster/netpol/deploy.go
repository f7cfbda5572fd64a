package netpol

import (
	"context"
	_ "embed"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Namespace and Name locate the enforcer's DaemonSet (upstream's names).
const (
	Namespace = "kube-system"
	Name      = "kube-network-policies"
)

//go:embed kustomization.yaml
var kustomization string

// Objects renders kube-network-policies from its module (moduleDir: install.yaml) with the given image.
func Objects(moduleDir, image string) ([]*unstructured.Unstructured, error) {
	name, tag := manifests.SplitRef(image)
	k := strings.NewReplacer("NETPOL_IMAGE_NAME", name, "NETPOL_IMAGE_TAG", tag).Replace(kustomization)
	return manifests.RenderModule([]byte(k), moduleDir, nil)
}

// Deploy applies the enforcer (its image must be on the nodes) and waits until an agent is ready on every
// node.
func Deploy(ctx context.Context, a *manifests.Applier, moduleDir, image string) error {
	objs, err := Objects(moduleDir, image)
	if err != nil {
		return err
	}
	if err := a.Apply(ctx, objs); err != nil {
		return err
	}
	return a.Wait(ctx, manifests.DaemonSets, Namespace, Name, 3*time.Minute, manifests.DaemonSetReady)
}
