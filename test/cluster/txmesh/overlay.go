package txmesh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Namespace is where the overlays deploy txmesh.
const Namespace = "txmesh"

// Overlays: the e2e's (kustomize/overlays/e2e, images txmesh.local/txmesh), and the one flux/clusters/e2e's
// apps Kustomization applies (overlays/e2e with the canaries).
const (
	Overlay     = "e2e"
	FluxOverlay = "e2e-cd"
	LocalImage  = "txmesh.local/txmesh"
)

// Wait waits for both CloudNativePG clusters, the seed Job and both services (with primaries, Flagger's
// -primary Deployments, which serve once Flagger owns the apps: the canaries' are scaled to zero between
// releases).
func Wait(ctx context.Context, a *manifests.Applier, primaries bool, d time.Duration) error {
	for _, db := range []string{"bank-db", "store-db"} {
		if err := a.Wait(ctx, cnpg.Clusters, Namespace, db, d, cnpg.ClusterHealthy); err != nil {
			return err
		}
	}
	if err := a.Wait(ctx, manifests.Jobs, Namespace, "bank-seed", d, manifests.JobSucceeded); err != nil {
		return err
	}
	for _, app := range []string{"bank", "store"} {
		if primaries {
			app += "-primary"
		}
		if err := a.Wait(ctx, manifests.Deployments, Namespace, app, d,
			manifests.MinReplicas(2, manifests.DeploymentAvailable)); err != nil {
			return err
		}
	}
	return nil
}

// Render renders kustomize/overlays/<overlay> of the checkout repo with the image named image at tag, plus
// optional JSON patches by target ("Kind/name" → RFC 6902 patch in YAML).
func Render(repo, overlay, image, tag string, patches map[string]string) ([]*unstructured.Unstructured, error) {
	dir, err := os.MkdirTemp("", "txmesh-overlay-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	rel, err := filepath.Rel(dir, filepath.Join(repo, "kustomize", "overlays", overlay))
	if err != nil {
		return nil, err
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: %s
    newTag: %q
`, rel, image, tag)
	if len(patches) > 0 {
		keys := make([]string, 0, len(patches))
		for t := range patches {
			keys = append(keys, t)
		}
		sort.Strings(keys)
		k += "patches:\n"
		for _, t := range keys {
			kind, name, _ := strings.Cut(t, "/")
			k += fmt.Sprintf("  - target:\n      kind: %s\n      name: %s\n    patch: |\n", kind, name)
			for _, line := range strings.Split(strings.TrimRight(patches[t], "\n"), "\n") {
				k += "      " + line + "\n"
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		return nil, err
	}
	return manifests.Render(dir)
}
