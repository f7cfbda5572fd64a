// Package cnpg is CloudNativePG: the operator (and kubectl-cnpg, the e2e's `kubectl cnpg`) built from its
// module, imaged, and deployed from the module's own release kustomization (config/default) in cnpg-system;
// and the PostgreSQL operand image its clusters run (postgres.go), built from Debian's postgresql-18 (forky).
package cnpg

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Version is the pinned github.com/cloudnative-pg/cloudnative-pg (kustomize/ and flux/ pin the same).
const Version = "v1.30.0"

// Namespace is the operator's (its release manifest's).
const Namespace = "cnpg-system"

// Component builds the operator (cmd/manager, which is also the instance manager it injects into its pods)
// and the kubectl plugin.
func Component() gobuild.Component {
	return gobuild.Component{Name: "cloudnative-pg", Module: "github.com/cloudnative-pg/cloudnative-pg", Version: Version,
		Packages: []string{"github.com/cloudnative-pg/cloudnative-pg/cmd/manager",
			"github.com/cloudnative-pg/cloudnative-pg/cmd/kubectl-cnpg"},
		Ldflags: "-X github.com/cloudnative-pg/cloudnative-pg/pkg/versions.buildVersion=" +
			strings.TrimPrefix(Version, "v") + " -X github.com/cloudnative-pg/cloudnative-pg/pkg/versions.buildCommit=" +
			Version, Expect: 6 * time.Minute}
}

// Image is the operator's image in its release image's layout: /manager, run as 10001 by its Deployment; the
// instance pods get the same binary copied in by its bootstrap init container, and the operator finds the
// architectures it can hand them as operator/manager_<arch> (relative to its working directory, /).
func Image(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
	return b.Binary(ctx, "txmesh.local/cloudnative-pg:"+Version[1:],
		map[string]string{"/manager": bins["manager"], "/operator/manager_amd64": bins["manager"]},
		[]string{"/manager"}, "10001:10001")
}

//go:embed kustomization.yaml
var kustomization string

// Objects renders the operator from its module (moduleDir) with the given operator image.
func Objects(moduleDir, image string) ([]*unstructured.Unstructured, error) {
	name, tag := manifests.SplitRef(image)
	k := strings.NewReplacer("CNPG_IMAGE_NAME", name, "CNPG_IMAGE_TAG", tag).Replace(kustomization)
	return manifests.RenderModule([]byte(k), moduleDir, nil)
}

// Wait waits until the operator is available.
func Wait(ctx context.Context, a *manifests.Applier) error {
	return a.Wait(ctx, manifests.Deployments, Namespace, "cnpg-controller-manager", 3*time.Minute,
		manifests.DeploymentAvailable)
}

// Clusters is CloudNativePG's Cluster resource.
var Clusters = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}

// ClusterHealthy: a CloudNativePG cluster with every instance ready and the operator calling it healthy.
func ClusterHealthy(o *unstructured.Unstructured) (bool, string) {
	phase, _, _ := unstructured.NestedString(o.Object, "status", "phase")
	ready, want := nestedInt(o, "status", "readyInstances"), nestedInt(o, "spec", "instances")
	return phase == "Cluster in healthy state" && ready == want, fmt.Sprintf("%q, %d/%d instances ready", phase, ready, want)
}

func nestedInt(o *unstructured.Unstructured, path ...string) int64 {
	v, _, _ := unstructured.NestedInt64(o.Object, path...)
	return v
}
