package flux

import (
	_ "embed"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Namespace is where the controllers run.
const Namespace = "flux-system"

//go:embed controller-kustomization.yaml
var kustomization string

// namespace is flux-system under the restricted Pod Security Standard (the controllers run as non-root without
// privileges). `flux bootstrap` commits it within gotk-components.yaml, so Flux owns it: no other file of
// flux/clusters/e2e may declare it (kustomize refuses the same Namespace twice).
var namespace = `apiVersion: v1
kind: Namespace
metadata:
  name: ` + Namespace + `
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: v1.32
    pod-security.kubernetes.io/audit: restricted
    pod-security.kubernetes.io/audit-version: v1.32
    pod-security.kubernetes.io/warn: restricted
    pod-security.kubernetes.io/warn-version: v1.32
`

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
	out, err := manifests.Decode([]byte(namespace))
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
