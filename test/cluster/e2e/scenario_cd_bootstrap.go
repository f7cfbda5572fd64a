package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/flagger"
	"github.com/txmesh/txmesh/test/cluster/flux"
	"github.com/txmesh/txmesh/test/cluster/gitserver"
)

// cd-bootstrap: txmesh's namespace emptied, then Flux deploys everything from the Git server and Flagger
// takes the apps over; Flux is installed by the flux CLI's own `flux bootstrap git`. Checks: what bootstrap
// committed and created, every Kustomization Ready at the served commit, the Deployments Flux's, both
// Canaries Initialized with the primaries serving, the Store reachable again. It needs the harness's Flux,
// Flagger and Git server; every later CD row needs it.
var cdBootstrap = scenario{
	name:   "cd-bootstrap",
	fault:  "txmesh's namespace emptied; Flux and Flagger installed, the checkout in the Git server: Flux deploys everything, the canaries initialised",
	needs:  []string{"flux", "flagger", "gitserver"},
	before: cdEmpty,
	run:    cdBootstrapRun,
}

// cdEmpty, before the load of cd-bootstrap starts, deletes everything of txmesh — apps, databases, volumes,
// policies — and leaves the namespace with only its TLS Secrets: Flux deploys into an empty namespace.
func cdEmpty(ctx context.Context, e *env, r *Row) error {
	t := time.Now()
	if err := e.s.EmptyTxmesh(ctx); err != nil {
		return err
	}
	r.Times["namespace_emptied"] = time.Since(t).Seconds()
	r.Checks = append(r.Checks, fmt.Sprintf("namespace %s deleted with everything in it (%.0f s) and created again "+
		"holding only the apps' TLS Secrets", namespace, r.Times["namespace_emptied"]))
	e.emptied = time.Now()
	return nil
}

// cdBootstrapRun starts the Git server with a clone of the checkout and the harness's Flagger webhooks, installs
// Flagger, runs the real `flux bootstrap git` (stack.InstallFlux: it commits flux-system/ to the Git server,
// installs the controllers and the flux-system GitRepository, Secret and Kustomization) and waits until every Kustomization is Ready — Flux has deployed kustomize/overlays/e2e-cd
// into the namespace cdEmpty left, databases included, and found it healthy — and Flagger has initialised
// both flagger.Canaries: the primaries serve, the Services bank and store select them, the Deployments Git names
// are scaled to zero until the next release. The load's purchases fail until the Store is back.
func cdBootstrapRun(ctx context.Context, e *env, r *Row) error {
	t := time.Now()
	g, err := e.s.StartGit(ctx)
	if err != nil {
		return err
	}
	e.gitops = g
	head, err := g.Head(ctx)
	if err != nil {
		return err
	}
	if e.hooks, err = startHooks(ctx, net.JoinHostPort(e.s.Cluster.Layout().HostIP(), fmt.Sprint(hooksPort)),
		e.client.Transport.(*http.Transport).TLSClientConfig, e.serviceURL); err != nil {
		return err
	}
	if err := e.s.InstallFlagger(ctx); err != nil {
		return err
	}
	if r.FluxCLI, err = e.s.InstallFlux(ctx, g); err != nil {
		return err
	}
	r.Times["flagger_and_flux_installed"] = time.Since(t).Seconds()
	boot, err := e.bootstrapped(ctx, g, head)
	if err != nil {
		return err
	}
	r.Checks = append(r.Checks, "flux "+r.FluxCLI+": "+boot)
	if head, err = g.Head(ctx); err != nil {
		return err
	}
	for _, k := range fluxKustomizations {
		if err := e.s.Apply.Wait(ctx, flux.Kustomizations, flux.Namespace, k, 10*time.Minute,
			appliedRevision(head)); err != nil {
			return err
		}
	}
	r.Times["reconciled"] = time.Since(t).Seconds()
	dep, err := e.cs.AppsV1().Deployments(namespace).Get(ctx, "store", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if owner := dep.Labels["kustomize.toolkit.fluxcd.io/name"]; owner != "apps" {
		return fmt.Errorf("deployment store is not Flux's: label kustomize.toolkit.fluxcd.io/name=%q", owner)
	}
	// What Git says runs now (a rollout by hand before the block has been undone by Flux).
	e.image = dep.Spec.Template.Spec.Containers[0].Image
	for _, app := range []string{"bank", "store"} {
		if err := e.s.Apply.Wait(ctx, flagger.Canaries, namespace, app, 5*time.Minute, canaryPhase("Initialized")); err != nil {
			return err
		}
		if err := e.servedByPrimary(ctx, app); err != nil {
			return err
		}
	}
	e.s.HandedToFlux()
	r.Times["canaries_initialized"] = time.Since(t).Seconds()
	url, err := e.serviceURL(ctx, "store") // Flux's Service: a new address
	if err != nil {
		return err
	}
	e.storeMu.Lock()
	e.store = url
	e.storeMu.Unlock()
	if err := e.waitStoreReachable(ctx, 2*time.Minute); err != nil {
		return err
	}
	r.Times["empty_to_store_reachable"] = time.Since(e.emptied).Seconds()
	r.Checks = append(r.Checks, fmt.Sprintf("git server %s at %s; Flagger and Flux controllers up in %.0f s; "+
		"Kustomizations %s Ready at %s in %.0f s: Flux deployed bank, store, their databases (bootstrapped "+
		"anew), the seed Job and the policies", g.URL, head[:12], r.Times["flagger_and_flux_installed"],
		strings.Join(fluxKustomizations, " → "), head[:12], r.Times["reconciled"]),
		fmt.Sprintf("Flagger initialised the flagger.Canaries bank and store in %.0f s: bank-primary and store-primary "+
			"serve (Services bank and store select them), Deployments bank and store at 0 replicas; the Store "+
			"answered %.0f s after the namespace was emptied", r.Times["canaries_initialized"],
			r.Times["empty_to_store_reachable"]))
	return nil
}

// bootstrapped checks what `flux bootstrap git` left: a commit of its own on the served branch after before,
// holding flux/clusters/e2e/flux-system/{gotk-components,gotk-sync,kustomization}.yaml; the flux-system
// GitRepository at the Git server's URL with the flux-system Secret (basic auth) as its secretRef.
func (e *env) bootstrapped(ctx context.Context, g *gitserver.GitOps, before string) (string, error) {
	head, err := g.Head(ctx)
	if err != nil {
		return "", err
	}
	if head == before {
		return "", fmt.Errorf("flux bootstrap pushed no commit: %s is still at %s", g.Branch, before[:12])
	}
	files, err := g.Files(ctx, "flux/clusters/e2e/flux-system")
	if err != nil {
		return "", err
	}
	for _, want := range []string{"gotk-components.yaml", "gotk-sync.yaml", "kustomization.yaml"} {
		if !slices.Contains(files, "flux/clusters/e2e/flux-system/"+want) {
			return "", fmt.Errorf("flux bootstrap's commit %s lacks flux/clusters/e2e/flux-system/%s (has %v)", head[:12], want, files)
		}
	}
	repo, err := e.s.Apply.Dynamic().Resource(flux.GitRepos).Namespace(flux.Namespace).Get(ctx, "flux-system", metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("flux bootstrap created no GitRepository flux-system: %w", err)
	}
	url, _, _ := unstructured.NestedString(repo.Object, "spec", "url")
	secret, _, _ := unstructured.NestedString(repo.Object, "spec", "secretRef", "name")
	if url != g.URL || secret == "" {
		return "", fmt.Errorf("GitRepository flux-system: url %q secretRef %q, want %q and a Secret", url, secret, g.URL)
	}
	if _, err := e.cs.CoreV1().Secrets(flux.Namespace).Get(ctx, secret, metav1.GetOptions{}); err != nil {
		return "", fmt.Errorf("GitRepository flux-system's Secret: %w", err)
	}
	log, err := g.Log(ctx, 3)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("flux bootstrap git pushed %s onto %s (%s) holding flux-system/gotk-components.yaml, "+
		"gotk-sync.yaml, kustomization.yaml; GitRepository flux-system at %s with Secret %s",
		head[:12], before[:12], strings.ReplaceAll(log, "\n", "; "), url, secret), nil
}
