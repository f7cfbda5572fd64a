package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/deploy"
	"github.com/txmesh/txmesh/test/cluster/stack"
)

// The continuous-delivery block (issue 11): Flux takes over the deployment from a Git server holding the
// checkout, reverts a hand edit, and ships a new image tag through image automation. It runs after the
// other scenarios, which change the deployment by hand (kubectl, direct applies) and would be reverted by
// Flux. Flagger's analysis is not in it yet: cdRelease waits for the Deployments' rollout where it would
// wait for the Canary to be promoted.

// fluxKustomizations are flux/clusters/e2e's Kustomizations, in dependency order, and the bootstrap's own.
var fluxKustomizations = []string{"flux-system", "infra-controllers", "apps"}

// cdBootstrap starts the Git server with a clone of the checkout, installs Flux's controllers, applies the
// flux-system GitRepository and Kustomization (as `flux bootstrap` does) and waits until every Kustomization
// is Ready: Flux has applied kustomize/overlays/e2e and found it healthy.
func cdBootstrap(ctx context.Context, e *env, r *Row) error {
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
	if err := e.s.InstallFlux(ctx, g); err != nil {
		return err
	}
	r.Times["flux_installed"] = time.Since(t).Seconds()
	for _, k := range fluxKustomizations {
		if err := e.s.Apply.Wait(ctx, stack.FluxKustomizations, deploy.FluxNamespace, k, 10*time.Minute,
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
	r.Checks = append(r.Checks, fmt.Sprintf("git server %s at %s; Flux controllers up in %.0f s; Kustomizations %s "+
		"Ready at %s in %.0f s; bank, store and their databases now labelled as Flux's apps",
		g.URL, head[:12], r.Times["flux_installed"], strings.Join(fluxKustomizations, " → "), head[:12],
		r.Times["reconciled"]))
	return nil
}

// appliedRevision: a Flux Kustomization is Ready and has applied the given commit.
func appliedRevision(sha string) deploy.Ready {
	return func(o *unstructured.Unstructured) (bool, string) {
		ok, why := stack.FluxReady(o)
		rev, _, _ := unstructured.NestedString(o.Object, "status", "lastAppliedRevision")
		if !strings.HasSuffix(rev, sha) {
			return false, fmt.Sprintf("applied %q, waiting for %s (%s)", rev, sha, why)
		}
		return ok, why
	}
}

// cdDrift edits a Flux-owned field by hand — the Store HPA's minReplicas, as someone scaling by hand would —
// and waits for Flux to set it back; the time is bounded by the apps Kustomization's interval (1m).
func cdDrift(ctx context.Context, e *env, r *Row) error {
	if e.gitops == nil {
		return fmt.Errorf("cd-drift needs cd-bootstrap before it")
	}
	hpa, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(namespace).Get(ctx, "store", metav1.GetOptions{})
	if err != nil {
		return err
	}
	want := *hpa.Spec.MinReplicas
	edit := want + 1
	if _, err := e.kubectl(ctx, "kubectl", "-n", namespace, "patch", "hpa", "store", "--type=merge",
		"-p", fmt.Sprintf(`{"spec":{"minReplicas":%d}}`, edit)); err != nil {
		return err
	}
	t := time.Now()
	seen := false
	for {
		h, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(namespace).Get(ctx, "store", metav1.GetOptions{})
		if err == nil {
			switch *h.Spec.MinReplicas {
			case edit:
				seen = true
			case want:
				if !seen {
					return fmt.Errorf("the hand edit (minReplicas %d) never showed", edit)
				}
				r.Times["edit_to_reverted"] = time.Since(t).Seconds()
				r.Checks = append(r.Checks, fmt.Sprintf("hpa/store minReplicas edited %d → %d by kubectl patch; "+
					"Flux set it back to %d in %.0f s", want, edit, want, r.Times["edit_to_reverted"]))
				return nil
			}
		}
		if time.Since(t) > 4*time.Minute {
			return fmt.Errorf("hpa/store minReplicas still %d 4 min after the hand edit", edit)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// cdRelease pushes a new X.Y.Z tag of the txmesh image (a build of the same checkout) to the cluster's
// registry and follows it through: ImageRepository scan → ImagePolicy selects it → ImageUpdateAutomation
// commits it on the marker in kustomize/overlays/e2e and pushes to the Git server → the apps Kustomization
// applies that commit → both Deployments rolled out under load. Flagger's analysis (issue 11's next step)
// belongs between the applied commit and the rollout: wait for the Canary's promotion instead.
func cdRelease(ctx context.Context, e *env, r *Row) error {
	if e.gitops == nil {
		return fmt.Errorf("cd-release needs cd-bootstrap before it")
	}
	const tag = "1.0.1" // the checkout's build runs as tag e2e; its next release
	before, err := e.gitops.Head(ctx)
	if err != nil {
		return err
	}
	img, err := e.s.Rebuild(ctx, tag)
	if err != nil {
		return err
	}
	t := time.Now()
	if err := e.s.Apply.Wait(ctx, stack.FluxImagePolicies, deploy.FluxNamespace, "txmesh", 3*time.Minute,
		func(o *unstructured.Unstructured) (bool, string) {
			got, _, _ := unstructured.NestedString(o.Object, "status", "latestRef", "tag")
			return got == tag, fmt.Sprintf("latest %q", got)
		}); err != nil {
		return err
	}
	r.Times["push_to_selected"] = time.Since(t).Seconds()
	var commit string
	for {
		head, err := e.gitops.Head(ctx)
		if err == nil && head != before {
			commit = head
			break
		}
		if time.Since(t) > 3*time.Minute {
			return fmt.Errorf("no commit on %s 3 min after pushing %s", e.gitops.Branch, tag)
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	r.Times["push_to_commit"] = time.Since(t).Seconds()
	line, err := e.gitops.Log(ctx, 1)
	if err != nil {
		return err
	}
	if !strings.Contains(line, tag) {
		return fmt.Errorf("the new commit is not the release: %s", line)
	}
	if err := e.s.Apply.Wait(ctx, stack.FluxKustomizations, deploy.FluxNamespace, "apps", 5*time.Minute,
		appliedRevision(commit)); err != nil {
		return err
	}
	r.Times["push_to_applied"] = time.Since(t).Seconds()
	for _, app := range []string{"bank", "store"} {
		if err := e.waitRollout(ctx, app, img.Ref, 5*time.Minute); err != nil {
			return err
		}
	}
	r.Times["push_to_rolled_out"] = time.Since(t).Seconds()
	e.image = img.Ref
	r.Checks = append(r.Checks, fmt.Sprintf("pushed %s; ImagePolicy selected it in %.0f s; image automation "+
		"committed %q in %.0f s; apps applied it in %.0f s; bank and store rolled out in %.0f s (no Flagger "+
		"analysis yet)", img.Ref, r.Times["push_to_selected"], line, r.Times["push_to_commit"],
		r.Times["push_to_applied"], r.Times["push_to_rolled_out"]))
	return nil
}

// suspendFlux suspends the apps Kustomization (spec.suspend, as `flux suspend kustomization apps`) when Flux
// runs, for a scenario after the CD block that changes the deployment by hand, and waits until no
// reconciliation is in flight (one could still apply Git's state over the hand change). It stays suspended.
func (e *env) suspendFlux(ctx context.Context, r *Row) error {
	if e.gitops == nil {
		return nil
	}
	if _, err := e.kubectl(ctx, "kubectl", "-n", deploy.FluxNamespace, "patch", "kustomizations.kustomize.toolkit.fluxcd.io",
		"apps", "--type=merge", "-p", `{"spec":{"suspend":true}}`); err != nil {
		return err
	}
	if err := e.s.Apply.Wait(ctx, stack.FluxKustomizations, deploy.FluxNamespace, "apps", 5*time.Minute,
		func(o *unstructured.Unstructured) (bool, string) {
			conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
			for _, c := range conds {
				if m, _ := c.(map[string]any); m["type"] == "Reconciling" && m["status"] == "True" {
					return false, fmt.Sprintf("reconciling: %v", m["message"])
				}
			}
			return true, ""
		}); err != nil {
		return err
	}
	r.Checks = append(r.Checks, "Flux's apps Kustomization suspended first (this scenario changes the deployment by hand)")
	return nil
}
