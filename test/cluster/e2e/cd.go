package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/flagger"
	"github.com/txmesh/txmesh/test/cluster/flux"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// The continuous-delivery block (issue 11): Flux takes over the deployment from a Git server holding the
// checkout and hands the Bank and the Store to Flagger (kubernetes provider, blue/green), reverts a hand
// edit, ships a new image tag through image automation and Flagger's analysis, and rolls a bad release back
// automatically. It runs after the other scenarios, which change the deployment by hand (kubectl, direct
// applies) and would be reverted by Flux.

// fluxKustomizations are flux/clusters/e2e's Kustomizations, in dependency order, and the bootstrap's own.
var fluxKustomizations = []string{"flux-system", "infra-controllers", "apps"}

// canaryPhase: a Canary's status.phase is want.
func canaryPhase(want string) manifests.Ready {
	return func(o *unstructured.Unstructured) (bool, string) {
		phase, _, _ := unstructured.NestedString(o.Object, "status", "phase")
		return phase == want, "phase " + phase
	}
}

// servedByPrimary checks Flagger's blue/green at rest: the Service app selects app-primary's pods, which are
// available, and the Deployment app (the canary) runs no pod.
func (e *env) servedByPrimary(ctx context.Context, app string) error {
	svc, err := e.cs.CoreV1().Services(namespace).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if sel := svc.Spec.Selector["app"]; sel != app+"-primary" {
		return fmt.Errorf("service %s selects app=%q, want %s-primary", app, sel, app)
	}
	primary, err := e.cs.AppsV1().Deployments(namespace).Get(ctx, app+"-primary", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if primary.Status.AvailableReplicas < 1 {
		return fmt.Errorf("deployment %s-primary has no available replica", app)
	}
	// Flagger scales the canary down after it switched the Service; give it its next loop.
	for deadline := time.Now().Add(time.Minute); ; {
		canary, err := e.cs.AppsV1().Deployments(namespace).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if canary.Spec.Replicas != nil && *canary.Spec.Replicas == 0 && canary.Status.Replicas == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("deployment %s (the canary) still runs %d pods", app, canary.Status.Replicas)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
}

// attemptedRevision: a Flux Kustomization has taken up the given commit (status.lastAttemptedRevision: it
// applies the objects, then waits for their health — which, with Flagger scaling a canary up and down, can
// take minutes).
func attemptedRevision(sha string) manifests.Ready {
	return func(o *unstructured.Unstructured) (bool, string) {
		rev, _, _ := unstructured.NestedString(o.Object, "status", "lastAttemptedRevision")
		return strings.HasSuffix(rev, sha), fmt.Sprintf("attempted %q, waiting for %s", rev, sha)
	}
}

// appliedRevision: a Flux Kustomization is Ready and has applied the given commit.
func appliedRevision(sha string) manifests.Ready {
	return func(o *unstructured.Unstructured) (bool, string) {
		ok, why := flux.Ready(o)
		rev, _, _ := unstructured.NestedString(o.Object, "status", "lastAppliedRevision")
		if !strings.HasSuffix(rev, sha) {
			return false, fmt.Sprintf("applied %q, waiting for %s (%s)", rev, sha, why)
		}
		return ok, why
	}
}

// canaryRevision is the revision Flagger last took up for the Canary app: the hash of the target's pod
// template (status.lastAppliedSpec) and the checksums of the ConfigMaps and Secrets it tracks
// (status.trackedConfigs: a configuration change alone is a new revision too).
func (e *env) canaryRevision(ctx context.Context, app string) (string, error) {
	o, err := e.s.Apply.Dynamic().Resource(flagger.Canaries).Namespace(namespace).Get(ctx, app, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return revisionOf(o), nil
}

func revisionOf(o *unstructured.Unstructured) string {
	spec, _, _ := unstructured.NestedString(o.Object, "status", "lastAppliedSpec")
	cfg, _, _ := unstructured.NestedStringMap(o.Object, "status", "trackedConfigs")
	keys := slices.Sorted(maps.Keys(cfg))
	rev := spec
	for _, k := range keys {
		rev += " " + k + "=" + cfg[k]
	}
	return rev
}

// canaryEnd is how a Canary's analysis ended: Seen says it for a row's checks, At is the phase's transition
// time, FailedChecks the most status.failedChecks read during it (Flagger clears it on a rollback).
type canaryEnd struct {
	Seen         string
	At           time.Time
	FailedChecks int64
}

// cleanAnalysis is an error unless every check of a good release's analysis passed: a check without data
// counts as failed, and a release with one to spare is a coin toss away from a false rollback.
func (c canaryEnd) cleanAnalysis() error {
	if c.FailedChecks > 0 {
		return fmt.Errorf("%s: want no failed check in a good release's analysis", c.Seen)
	}
	return nil
}

// awaitCanary waits until Flagger has taken up a revision of the Canary app other than before and ended its
// analysis in want (Succeeded or Failed); ending in the other terminal phase is an error. Flux's apps
// Kustomization waits for the canary's pods, so the analysis may be over before the caller gets here: the
// revision, not the phases seen, tells. It returns what it saw.
func (e *env) awaitCanary(ctx context.Context, app, before, want string, since time.Time, d time.Duration) (canaryEnd, error) {
	t := time.Now()
	var phases []string
	var most int64
	for {
		o, err := e.s.Apply.Dynamic().Resource(flagger.Canaries).Namespace(namespace).Get(ctx, app, metav1.GetOptions{})
		if err == nil {
			phase, _, _ := unstructured.NestedString(o.Object, "status", "phase")
			rev := revisionOf(o)
			failed, _, _ := unstructured.NestedInt64(o.Object, "status", "failedChecks")
			if rev != before {
				most = max(most, failed)
			}
			if len(phases) == 0 || phases[len(phases)-1] != phase {
				phases = append(phases, phase)
			}
			if rev != before && (phase == "Succeeded" || phase == "Failed") {
				at := time.Now()
				if ts, _, _ := unstructured.NestedString(o.Object, "status", "lastTransitionTime"); ts != "" {
					if tt, err := time.Parse(time.RFC3339, ts); err == nil {
						at = tt
					}
				}
				seen := fmt.Sprintf("canary %s %s %.0f s after the change (phases seen %s; failed checks %d)", app,
					phase, at.Sub(since).Seconds(), strings.Join(phases, " → "), most)
				if phase != want {
					return canaryEnd{}, fmt.Errorf("%s, want %s; events: %s", seen, want,
						e.canaryEvents(ctx, app, since, "Halt", "failed", "Rolling back"))
				}
				return canaryEnd{Seen: seen, At: at, FailedChecks: most}, nil
			}
		}
		if time.Since(t) > d {
			return canaryEnd{}, fmt.Errorf("canary %s not %s after %s (phases %s); events: %s", app, want, d,
				strings.Join(phases, " → "), e.canaryEvents(ctx, app, since, "Halt", "failed", "Rolling back", "Advance"))
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return canaryEnd{}, err
		}
	}
}

// canaryEvents are the Canary's events since t whose message contains one of the words, deduplicated, last 5.
func (e *env) canaryEvents(ctx context.Context, app string, t time.Time, words ...string) string {
	evs, err := e.cs.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Canary,involvedObject.name=" + app})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, ev := range evs.Items {
		last := ev.LastTimestamp.Time
		if last.IsZero() {
			last = ev.EventTime.Time
		}
		// A repeated message is one event whose series moves on (events.k8s.io): its last time counts.
		if ev.Series != nil && ev.Series.LastObservedTime.After(last) {
			last = ev.Series.LastObservedTime.Time
		}
		if last.Before(t.Add(-time.Second)) || slices.Contains(out, ev.Message) {
			continue
		}
		for _, w := range words {
			if strings.Contains(ev.Message, w) {
				out = append(out, ev.Message)
				break
			}
		}
	}
	if len(out) > 5 {
		out = out[len(out)-5:]
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, " | ")
}

// suspendFlux suspends Flux (spec.suspend, as `flux suspend kustomization`) when it runs, for a scenario after
// the CD block that changes the deployment by hand, and waits until no reconciliation is in flight (one could
// still apply Git's state over the hand change). The root flux-system first: it applies the apps
// Kustomization from Git and, owning that object, drops a suspend set by kubectl (the first run's negative
// control saw Flux put bank-db's synchronous replication back 4 s after the patch). They stay suspended.
func (e *env) suspendFlux(ctx context.Context, r *Row) error {
	if e.gitops == nil {
		return nil
	}
	for _, k := range []string{"flux-system", "apps"} {
		if _, err := e.kubectl(ctx, "kubectl", "-n", flux.Namespace, "patch",
			"kustomizations.kustomize.toolkit.fluxcd.io", k, "--type=merge", "-p", `{"spec":{"suspend":true}}`); err != nil {
			return err
		}
		if err := e.s.Apply.Wait(ctx, flux.Kustomizations, flux.Namespace, k, 5*time.Minute,
			func(o *unstructured.Unstructured) (bool, string) {
				if suspended, _, _ := unstructured.NestedBool(o.Object, "spec", "suspend"); !suspended {
					return false, "not suspended"
				}
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
	}
	r.Checks = append(r.Checks, "Flux's flux-system and apps Kustomizations suspended first (this scenario changes the deployment by hand)")
	return nil
}
