package e2e

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// cd-drift: a hand edit of a Flux-owned field (hpa/store minReplicas). Checks: Flux sets it back within its
// interval, no client error.
var cdDrift = scenario{
	name:           "cd-drift",
	fault:          "a hand edit of a Flux-owned object (hpa/store minReplicas) is reverted by Flux",
	needs:          []string{"cd-bootstrap"},
	noClientErrors: true,
	run:            cdDriftRun,
}

// cdDriftRun edits a Flux-owned field by hand — the Store HPA's minReplicas, as someone scaling by hand would —
// and waits for Flux to set it back; the time is bounded by the apps Kustomization's interval (1m).
func cdDriftRun(ctx context.Context, e *env, r *Row) error {
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
