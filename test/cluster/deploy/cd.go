package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Where the continuous-delivery components run.
const (
	FluxNamespace    = "flux-system"
	FlaggerNamespace = "flagger-system"
)

// FluxController is one Flux controller to render: its name (source-controller, kustomize-controller,
// image-reflector-controller, image-automation-controller, helm-controller), its module in the module cache
// (build.ModuleDir) and its local image reference.
type FluxController struct {
	Name      string
	ModuleDir string
	Image     string
}

// Flux renders the controllers from their modules' own kustomize bases (config/crd, config/rbac,
// config/manager) into flux-system: the Namespace first, then per controller its CRDs, its ServiceAccount
// (named after it), its roles bound to that account, the Deployment with the local image and IfNotPresent
// (and source-controller's Service, which serves the artifacts the others fetch).
func Flux(controllers ...FluxController) ([]*unstructured.Unstructured, error) {
	out, err := Decode([]byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + FluxNamespace + "\n"))
	if err != nil {
		return nil, err
	}
	for _, c := range controllers {
		name, tag := splitRef(c.Image)
		k, err := addon("flux-controller-kustomization.yaml", "FLUX_NAMESPACE", FluxNamespace,
			"FLUX_CONTROLLER", c.Name, "FLUX_IMAGE_NAME", name, "FLUX_IMAGE_TAG", tag)
		if err != nil {
			return nil, err
		}
		sa := "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: " + c.Name + "\n"
		objs, err := renderKustomizationFiles(k, c.ModuleDir, map[string][]byte{"serviceaccount.yaml": []byte(sa)})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// Flagger renders Flagger for Kubernetes without a mesh from its module (moduleDir: kustomize/base/flagger):
// CRDs, RBAC and Flagger (-mesh-provider=kubernetes, metrics from PrometheusURL) in flagger-system, which
// enforces Pod Security "restricted", with the local image.
func Flagger(moduleDir, image string) ([]*unstructured.Unstructured, error) {
	k, err := addon("flagger-kustomization.yaml", "FLAGGER_IMAGE", image, "PROMETHEUS_URL", PrometheusURL)
	if err != nil {
		return nil, err
	}
	ns := []byte(`apiVersion: v1
kind: Namespace
metadata:
  name: ` + FlaggerNamespace + `
  labels:
    pod-security.kubernetes.io/enforce: restricted
`)
	return renderKustomizationFiles(k, moduleDir, map[string][]byte{"namespace.yaml": ns})
}

// renderKustomizationFiles is renderKustomization with more files beside kustomization.yaml (resources,
// generator inputs).
func renderKustomizationFiles(k []byte, moduleDir string, files map[string][]byte) ([]*unstructured.Unstructured, error) {
	dir, err := os.MkdirTemp("", "txmesh-kustomize-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rel, err := filepath.Rel(dir, moduleDir)
	if err != nil {
		return nil, err
	}
	k = []byte(strings.ReplaceAll(string(k), "MODULE_DIR", rel))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), k, 0o644); err != nil {
		return nil, err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	return Render(dir)
}
