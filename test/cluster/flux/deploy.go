package flux

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Namespace is where the controllers run.
const Namespace = "flux-system"

//go:embed controller-kustomization.yaml
var kustomization string

// Controller is one Flux controller to render: its name (source-controller, kustomize-controller,
// image-reflector-controller, image-automation-controller, helm-controller), its module in the module cache
// (gobuild.ModuleDir) and its local image reference.
type Controller struct {
	Name      string
	ModuleDir string
	Image     string
}

// Objects renders the controllers from their modules' own kustomize bases (config/crd, config/rbac,
// config/manager) into flux-system: the Namespace first, then per controller its CRDs, its ServiceAccount
// (named after it), its roles bound to that account, the Deployment with the local image and IfNotPresent
// (and source-controller's Service, which serves the artifacts the others fetch).
func Objects(controllers ...Controller) ([]*unstructured.Unstructured, error) {
	out, err := manifests.Decode([]byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + Namespace + "\n"))
	if err != nil {
		return nil, err
	}
	for _, c := range controllers {
		name, tag := manifests.SplitRef(c.Image)
		k := strings.NewReplacer("FLUX_NAMESPACE", Namespace, "FLUX_CONTROLLER", c.Name, "FLUX_IMAGE_NAME", name,
			"FLUX_IMAGE_TAG", tag).Replace(kustomization)
		sa := "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: " + c.Name + "\n"
		objs, err := manifests.RenderModule([]byte(k), c.ModuleDir, map[string][]byte{"serviceaccount.yaml": []byte(sa)})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// Deploy applies the controllers (their images must be pullable by the nodes) and waits for each.
func Deploy(ctx context.Context, a *manifests.Applier, controllers ...Controller) error {
	objs, err := Objects(controllers...)
	if err != nil {
		return err
	}
	if err := a.Apply(ctx, objs); err != nil {
		return err
	}
	for _, c := range controllers {
		if err := a.Wait(ctx, manifests.Deployments, Namespace, c.Name, 3*time.Minute,
			manifests.DeploymentAvailable); err != nil {
			return err
		}
	}
	return nil
}

// Bootstrap is what `flux bootstrap` applies: the flux-system GitRepository of url (branch) and the
// flux-system Kustomization of path (./flux/clusters/e2e). It does not wait for the reconciliation.
func Bootstrap(url, branch, path string) ([]*unstructured.Unstructured, error) {
	return manifests.Decode([]byte(fmt.Sprintf(`apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 15s
  url: %s
  ref:
    branch: %s
  # Only what the Kustomizations read: the manifests, not the sources.
  ignore: |
    /*
    !/flux/
    !/kustomize/
    !/mesh/
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m
  retryInterval: 30s
  timeout: 5m
  sourceRef:
    kind: GitRepository
    name: flux-system
  path: %s
  prune: true
  # As flux bootstrap's: no wait, so that an ImagePolicy without a matching tag yet (not Ready) does not hold
  # it; the Kustomizations of the tree wait for their own objects.
  wait: false
`, url, branch, path)))
}

// Flux resources the e2e reads.
var (
	Kustomizations = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	GitRepos       = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
	ImagePolicies  = schema.GroupVersionResource{Group: "image.toolkit.fluxcd.io", Version: "v1", Resource: "imagepolicies"}
	Automations    = schema.GroupVersionResource{Group: "image.toolkit.fluxcd.io", Version: "v1", Resource: "imageupdateautomations"}
)

// Ready: a Flux object's Ready condition is True for its current generation; the reason otherwise.
func Ready(o *unstructured.Unstructured) (bool, string) {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	obs, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Ready" {
			continue
		}
		msg := fmt.Sprintf("%v: %v", m["reason"], m["message"])
		return m["status"] == "True" && obs >= o.GetGeneration(), msg
	}
	return false, "no Ready condition yet"
}
