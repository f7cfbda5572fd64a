package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/build"
	"github.com/txmesh/txmesh/test/cluster/deploy"
	"github.com/txmesh/txmesh/test/cluster/images"
)

// Namespace is where the e2e overlay deploys txmesh.
const Namespace = "txmesh"

func (s *Stack) logf(format string, a ...any) { fmt.Fprintf(s.log, "deploy: "+format+"\n", a...) }

// addons installs cluster DNS, node-local storage and the CloudNativePG operator, and waits for them.
func (s *Stack) addons(ctx context.Context) error {
	dns, err := deploy.CoreDNS(s.Images["coredns"].Ref, s.Cluster.DNSIP())
	if err != nil {
		return err
	}
	lpDir, err := build.ModuleDir(ctx, s.cache, build.Find("local-path-provisioner"))
	if err != nil {
		return err
	}
	var paths []deploy.NodePath
	for _, n := range s.Cluster.Nodes() {
		paths = append(paths, deploy.NodePath{Node: n.Name, Path: s.Cluster.Layout().VolumesDir(n)})
	}
	lp, err := deploy.LocalPath(lpDir, s.Images["local-path"].Ref, s.Images["busybox"].Ref, paths)
	if err != nil {
		return err
	}
	cnpgDir, err := build.ModuleDir(ctx, s.cache, build.Find("cloudnative-pg"))
	if err != nil {
		return err
	}
	cnpg, err := deploy.CNPG(cnpgDir, s.Images["cnpg"].Ref)
	if err != nil {
		return err
	}
	all := append(append(dns, lp...), cnpg...)
	if err := s.Apply.Apply(ctx, all); err != nil {
		return err
	}
	for _, d := range [][2]string{{"kube-system", "coredns"}, {"local-path-storage", "local-path-provisioner"},
		{"cnpg-system", "cnpg-controller-manager"}} {
		if err := s.Apply.Wait(ctx, deploy.Deployments, d[0], d[1], 3*time.Minute, deploy.DeploymentAvailable); err != nil {
			return err
		}
	}
	s.logf("add-ons ready: CoreDNS, local-path-provisioner %s (default StorageClass), CloudNativePG %s",
		build.LocalPathVersion, build.CNPGVersion)
	return nil
}

// deployTxmesh renders kustomize/overlays/e2e with the image tag, creates the apps' TLS Secrets, applies it
// and waits for the databases, the seed Job and both services.
func (s *Stack) deployTxmesh(ctx context.Context, tag string) error {
	objs, err := s.render(tag, nil)
	if err != nil {
		return err
	}
	tlsDir := filepath.Join(s.dir(), "apps-tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		return err
	}
	var secrets []*unstructured.Unstructured
	if s.TLS, secrets, err = deploy.AppTLS(tlsDir, Namespace); err != nil {
		return err
	}
	// The namespace first (the overlay's, with its Pod Security labels), then the Secrets the pods mount.
	var ns, rest []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			ns = append(ns, o)
		} else {
			rest = append(rest, o)
		}
	}
	if err := s.Apply.Apply(ctx, append(ns, secrets...)); err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, rest); err != nil {
		return err
	}
	return s.WaitHealthy(ctx, 10*time.Minute)
}

// EmptyTxmesh deletes namespace txmesh — the apps, their databases and volumes, everything deployed — waits
// until it is gone, and creates it again holding only what a cluster gets before GitOps runs: the
// namespace (its Pod Security labels) and the apps' TLS Secrets (production's come from its secret store).
func (s *Stack) EmptyTxmesh(ctx context.Context) error {
	cs, err := s.Clientset()
	if err != nil {
		return err
	}
	if err := cs.CoreV1().Namespaces().Delete(ctx, Namespace, metav1.DeleteOptions{}); err != nil {
		return err
	}
	for deadline := time.Now().Add(8 * time.Minute); ; { // 33–225 s measured
		_, err := cs.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s still there 8 min after its deletion", Namespace)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	objs, err := s.render("e2e", nil)
	if err != nil {
		return err
	}
	_, secrets, err := deploy.AppTLS(filepath.Join(s.dir(), "apps-tls"), Namespace)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			secrets = append([]*unstructured.Unstructured{o}, secrets...)
		}
	}
	return s.Apply.Apply(ctx, secrets)
}

// WaitHealthy waits for both CloudNativePG clusters, the seed Job and both services.
func (s *Stack) WaitHealthy(ctx context.Context, d time.Duration) error {
	t := time.Now()
	for _, db := range []string{"bank-db", "store-db"} {
		if err := s.Apply.Wait(ctx, deploy.Clusters, Namespace, db, d, deploy.ClusterHealthy); err != nil {
			return err
		}
	}
	if err := s.Apply.Wait(ctx, deploy.Jobs, Namespace, "bank-seed", d, deploy.JobSucceeded); err != nil {
		return err
	}
	for _, app := range []string{"bank", "store"} {
		if s.handedToFlux {
			app += "-primary" // Flagger's, serving; the canary's Deployment is scaled to zero between releases
		}
		if err := s.Apply.Wait(ctx, deploy.Deployments, Namespace, app, d,
			deploy.MinReplicas(2, deploy.DeploymentAvailable)); err != nil {
			return err
		}
	}
	s.logf("txmesh healthy in %s: bank-db and store-db (3 instances each), bank-seed done, bank and store available",
		time.Since(t).Round(time.Second))
	return nil
}

// Deploy applies the overlay again with the image at tag and, optionally, JSON patches by target
// ("Kind/name" → RFC 6902 patch in YAML): a release as a GitOps controller would apply it. It does not wait.
// Once Flux runs (HandedToFlux), it renders the overlay Flux applies, so that a hand change keeps the
// canaries and leaves Flagger's Services alone.
func (s *Stack) Deploy(ctx context.Context, tag string, patches map[string]string) error {
	objs, err := s.render(tag, patches)
	if err != nil {
		return err
	}
	return s.Apply.Apply(ctx, objs)
}

// Rebuild builds the txmesh image from the checkout with another tag and pushes it to the cluster's registry.
func (s *Stack) Rebuild(ctx context.Context, tag string) (images.Image, error) {
	img, err := s.builder.Txmesh(ctx, s.Repo, tag)
	if err != nil {
		return img, err
	}
	if err := s.push(ctx, img); err != nil {
		return img, err
	}
	return s.pulled(img), nil
}

// FluxOverlay is the overlay flux/clusters/e2e's apps Kustomization applies: overlays/e2e with the canaries.
const FluxOverlay = "e2e-cd"

// HandedToFlux records that Flux and Flagger own the deployment now (cd-bootstrap ran): Deploy renders
// FluxOverlay and WaitHealthy waits for the Flagger primaries.
func (s *Stack) HandedToFlux() { s.handedToFlux = true }

// RenderOverlay renders kustomize/overlays/e2e with the txmesh image at tag, plus optional patches.
func RenderOverlay(repo, tag string, patches map[string]string) ([]*unstructured.Unstructured, error) {
	return renderOverlay(repo, "e2e", "txmesh.local/txmesh", tag, patches)
}

// renderOverlay renders kustomize/overlays/<overlay> with the image named image at tag, plus optional patches.
func renderOverlay(repo, overlay, image, tag string, patches map[string]string) ([]*unstructured.Unstructured, error) {
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
	return deploy.Render(dir)
}
