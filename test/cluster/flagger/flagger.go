// Package flagger is Flagger in the throwaway cluster: built from its module, imaged, and deployed from the
// module's kustomize/base/flagger with the kubernetes provider (blue/green, no mesh) and the cluster's one
// Prometheus; and the Canary resource the e2e reads.
package flagger

import (
	"context"
	_ "embed"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

// Version is the Flagger that flux/infrastructure/controllers/base/flagger.yaml and test/manifests pin.
const Version = "v1.44.0"

// Component builds flagger and its load tester (cmd/loadtester is built too but not deployed: make e2e
// serves the load tester's webhooks itself).
func Component() gobuild.Component {
	return gobuild.Component{Name: "flagger", Module: "github.com/fluxcd/flagger", Version: Version, GoLine: "1.26.0",
		Packages: []string{"github.com/fluxcd/flagger/cmd/flagger", "github.com/fluxcd/flagger/cmd/loadtester"},
		Ldflags:  "-X github.com/fluxcd/flagger/pkg/version.REVISION=" + Version, Expect: 5 * time.Minute}
}

// Image is Flagger's image as upstream lays it out: /flagger as nobody (its Deployment sets runAsUser 10001).
func Image(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
	return b.Binary(ctx, "txmesh.local/flagger:"+Version, map[string]string{"/flagger": bins["flagger"]},
		[]string{"/flagger"}, "65534:65534")
}

// Namespace is where Flagger runs.
const Namespace = "flagger-system"

//go:embed kustomization.yaml
var kustomization string

// Canaries is Flagger's Canary resource.
var Canaries = schema.GroupVersionResource{Group: "flagger.app", Version: "v1beta1", Resource: "canaries"}

// Objects renders Flagger for Kubernetes without a mesh from its module (moduleDir: kustomize/base/flagger):
// CRDs, RBAC and Flagger (-mesh-provider=kubernetes, metrics from prometheus.URL) in flagger-system, which
// enforces Pod Security "restricted", with the local image.
func Objects(moduleDir, image string) ([]*unstructured.Unstructured, error) {
	k := strings.NewReplacer("FLAGGER_IMAGE", image, "PROMETHEUS_URL", prometheus.URL).Replace(kustomization)
	ns := []byte(`apiVersion: v1
kind: Namespace
metadata:
  name: ` + Namespace + `
  labels:
    pod-security.kubernetes.io/enforce: restricted
`)
	return manifests.RenderModule([]byte(k), moduleDir, map[string][]byte{"namespace.yaml": ns})
}

// Deploy applies Flagger (its image must be pullable by the nodes) and waits until it is available.
func Deploy(ctx context.Context, a *manifests.Applier, moduleDir, image string) error {
	objs, err := Objects(moduleDir, image)
	if err != nil {
		return err
	}
	if err := a.Apply(ctx, objs); err != nil {
		return err
	}
	return a.Wait(ctx, manifests.Deployments, Namespace, "flagger", 3*time.Minute, manifests.DeploymentAvailable)
}
