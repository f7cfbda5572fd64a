package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/txmesh/txmesh/test/cluster/deploy"
	"github.com/txmesh/txmesh/test/cluster/stack"
)

// The continuous-delivery block (issue 11): Flux takes over the deployment from a Git server holding the
// checkout and hands the Bank and the Store to Flagger (kubernetes provider, blue/green), reverts a hand
// edit, ships a new image tag through image automation and Flagger's analysis, and rolls a bad release back
// automatically. It runs after the other scenarios, which change the deployment by hand (kubectl, direct
// applies) and would be reverted by Flux.

// Canaries is Flagger's Canary resource.
var Canaries = schema.GroupVersionResource{Group: "flagger.app", Version: "v1beta1", Resource: "canaries"}

// fluxKustomizations are flux/clusters/e2e's Kustomizations, in dependency order, and the bootstrap's own.
var fluxKustomizations = []string{"flux-system", "infra-controllers", "apps"}

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

// cdBootstrap starts the Git server with a clone of the checkout and the harness's Flagger webhooks, installs
// Flagger and Flux's controllers, applies the flux-system GitRepository and Kustomization (as `flux
// bootstrap` does) and waits until every Kustomization is Ready — Flux has deployed kustomize/overlays/e2e-cd
// into the namespace cdEmpty left, databases included, and found it healthy — and Flagger has initialised
// both Canaries: the primaries serve, the Services bank and store select them, the Deployments Git names
// are scaled to zero until the next release. The load's purchases fail until the Store is back.
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
	if e.hooks, err = startHooks(ctx, net.JoinHostPort(e.s.Cluster.Layout().HostIP(), fmt.Sprint(hooksPort)),
		e.client.Transport.(*http.Transport).TLSClientConfig, e.serviceURL); err != nil {
		return err
	}
	if err := e.s.InstallFlagger(ctx); err != nil {
		return err
	}
	if err := e.s.InstallFlux(ctx, g); err != nil {
		return err
	}
	r.Times["flagger_and_flux_installed"] = time.Since(t).Seconds()
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
	for _, app := range []string{"bank", "store"} {
		if err := e.s.Apply.Wait(ctx, Canaries, namespace, app, 5*time.Minute, canaryPhase("Initialized")); err != nil {
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
		fmt.Sprintf("Flagger initialised the Canaries bank and store in %.0f s: bank-primary and store-primary "+
			"serve (Services bank and store select them), Deployments bank and store at 0 replicas; the Store "+
			"answered %.0f s after the namespace was emptied", r.Times["canaries_initialized"],
			r.Times["empty_to_store_reachable"]))
	return nil
}

// canaryPhase: a Canary's status.phase is want.
func canaryPhase(want string) deploy.Ready {
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
func attemptedRevision(sha string) deploy.Ready {
	return func(o *unstructured.Unstructured) (bool, string) {
		rev, _, _ := unstructured.NestedString(o.Object, "status", "lastAttemptedRevision")
		return strings.HasSuffix(rev, sha), fmt.Sprintf("attempted %q, waiting for %s", rev, sha)
	}
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
// applies that commit → Flagger analyses both canaries under load (the Bank's: acceptance and load tests
// from the harness's webhooks; the Store's: its own relay) → both promoted, the primaries run the new image.
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
	revs := map[string]string{}
	for _, app := range []string{"bank", "store"} {
		if revs[app], err = e.canaryRevision(ctx, app); err != nil {
			return err
		}
	}
	hooks := e.hooks.stats()
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
		attemptedRevision(commit)); err != nil {
		return err
	}
	r.Times["push_to_applied"] = time.Since(t).Seconds()
	var runs []string
	for _, app := range []string{"bank", "store"} {
		run, at, err := e.awaitCanary(ctx, app, revs[app], "Succeeded", t, 6*time.Minute)
		if err != nil {
			return err
		}
		runs = append(runs, run)
		r.Times["push_to_promoted"] = max(r.Times["push_to_promoted"], at.Sub(t).Seconds())
		if err := e.waitRollout(ctx, app+"-primary", img.Ref, 2*time.Minute); err != nil {
			return err
		}
		if err := e.servedByPrimary(ctx, app); err != nil {
			return err
		}
	}
	e.image = img.Ref
	r.Checks = append(r.Checks, fmt.Sprintf("pushed %s; ImagePolicy selected it in %.0f s; image automation "+
		"committed %q in %.0f s; apps applied it in %.0f s", img.Ref, r.Times["push_to_selected"], line,
		r.Times["push_to_commit"], r.Times["push_to_applied"]),
		fmt.Sprintf("Flagger (kubernetes provider, blue/green) promoted both %.0f s after the push: %s; "+
			"bank-primary and store-primary run it", r.Times["push_to_promoted"], strings.Join(runs, "; ")),
		"the harness's webhooks (flagger-loadtester's stand-in): "+e.hooks.stats().since(hooks).String())
	return nil
}

// cdBadRelease ships a misconfiguration the way it would reach production: an engineer's commit in Git. The
// Bank's client CA is set to its own certificate file (it exists, so the Bank starts and its probes pass, but
// no client certificate verifies against it): the acceptance test and every Store would be refused. Flagger
// must roll it back by itself: the canary fails its checks, is scaled to zero, the Canary is Failed, bank-
// primary keeps serving the old configuration (so the clients see nothing). The commit is then reverted in
// Git and Flagger promotes the fix.
func cdBadRelease(ctx context.Context, e *env, r *Row) error {
	if e.gitops == nil {
		return fmt.Errorf("cd-bad-release needs cd-bootstrap before it")
	}
	const file, good, bad = "kustomize/overlays/e2e/apps-mtls.yaml", "TLS_CLIENT_CA_FILE: /etc/txmesh/tls/ca.crt",
		"TLS_CLIENT_CA_FILE: /etc/txmesh/tls/tls.crt"
	rev, err := e.canaryRevision(ctx, "bank")
	if err != nil {
		return err
	}
	hooks := e.hooks.stats()
	t := time.Now()
	commit, err := e.gitops.Commit(ctx, "bank: client CA from the mounted certificate", func(dir string) error {
		return replaceIn(filepath.Join(dir, file), "name: bank-config", good, bad)
	})
	if err != nil {
		return err
	}
	if err := e.s.Apply.Wait(ctx, stack.FluxKustomizations, deploy.FluxNamespace, "apps", 5*time.Minute,
		attemptedRevision(commit)); err != nil {
		return err
	}
	r.Times["commit_to_applied"] = time.Since(t).Seconds()
	run, at, err := e.awaitCanary(ctx, "bank", rev, "Failed", t, 6*time.Minute)
	if err != nil {
		return err
	}
	r.Times["commit_to_rolled_back"] = at.Sub(t).Seconds()
	if err := e.servedByPrimary(ctx, "bank"); err != nil {
		return err
	}
	cm, err := e.cs.CoreV1().ConfigMaps(namespace).Get(ctx, "bank-config-primary", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := "TLS_CLIENT_CA_FILE: " + cm.Data["TLS_CLIENT_CA_FILE"]; got != good {
		return fmt.Errorf("bank-primary's configuration (bank-config-primary) has %s", got)
	}
	why := e.canaryEvents(ctx, "bank", t, "Halt", "Rolling back", "Canary failed")
	r.Checks = append(r.Checks, fmt.Sprintf("commit %s (%s: %s) applied by Flux in %.0f s; Flagger rolled the "+
		"canary back %.0f s after the commit: %s; bank-primary still has %s; events: %s", commit[:12], file, bad,
		r.Times["commit_to_applied"], r.Times["commit_to_rolled_back"], run, good, why),
		"the harness's webhooks: "+e.hooks.stats().since(hooks).String())

	if rev, err = e.canaryRevision(ctx, "bank"); err != nil {
		return err
	}
	t = time.Now()
	revert, err := e.gitops.Revert(ctx, commit)
	if err != nil {
		return err
	}
	if err := e.s.Apply.Wait(ctx, stack.FluxKustomizations, deploy.FluxNamespace, "apps", 5*time.Minute,
		attemptedRevision(revert)); err != nil {
		return err
	}
	run, at, err = e.awaitCanary(ctx, "bank", rev, "Succeeded", t, 6*time.Minute)
	if err != nil {
		return err
	}
	r.Times["revert_to_promoted"] = at.Sub(t).Seconds()
	r.Checks = append(r.Checks, fmt.Sprintf("revert %s applied and promoted in %.0f s: %s", revert[:12],
		r.Times["revert_to_promoted"], run))
	return nil
}

// replaceIn replaces the first old after the line after in file (a YAML document's name), once.
func replaceIn(file, after, old, new string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, after)
	if i < 0 {
		return fmt.Errorf("%s: no %q", file, after)
	}
	j := strings.Index(s[i:], old)
	if j < 0 {
		return fmt.Errorf("%s: no %q after %q", file, old, after)
	}
	s = s[:i+j] + new + s[i+j+len(old):]
	return os.WriteFile(file, []byte(s), 0o644)
}

// canaryRevision is the revision Flagger last took up for the Canary app: the hash of the target's pod
// template (status.lastAppliedSpec) and the checksums of the ConfigMaps and Secrets it tracks
// (status.trackedConfigs: a configuration change alone is a new revision too).
func (e *env) canaryRevision(ctx context.Context, app string) (string, error) {
	o, err := e.s.Apply.Dynamic().Resource(Canaries).Namespace(namespace).Get(ctx, app, metav1.GetOptions{})
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

// awaitCanary waits until Flagger has taken up a revision of the Canary app other than before and ended its
// analysis in want (Succeeded or Failed); ending in the other terminal phase is an error. Flux's apps
// Kustomization waits for the canary's pods, so the analysis may be over before the caller gets here: the
// revision, not the phases seen, tells. It returns what it saw: the phases, failed checks and iterations.
func (e *env) awaitCanary(ctx context.Context, app, before, want string, since time.Time, d time.Duration) (string, time.Time, error) {
	t := time.Now()
	var phases []string
	for {
		o, err := e.s.Apply.Dynamic().Resource(Canaries).Namespace(namespace).Get(ctx, app, metav1.GetOptions{})
		if err == nil {
			phase, _, _ := unstructured.NestedString(o.Object, "status", "phase")
			rev := revisionOf(o)
			failed, _, _ := unstructured.NestedInt64(o.Object, "status", "failedChecks")
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
					phase, at.Sub(since).Seconds(), strings.Join(phases, " → "), failed)
				if phase != want {
					return "", at, fmt.Errorf("%s, want %s; events: %s", seen, want,
						e.canaryEvents(ctx, app, since, "Halt", "failed", "Rolling back"))
				}
				return seen, at, nil
			}
		}
		if time.Since(t) > d {
			return "", time.Time{}, fmt.Errorf("canary %s not %s after %s (phases %s); events: %s", app, want, d,
				strings.Join(phases, " → "), e.canaryEvents(ctx, app, since, "Halt", "failed", "Rolling back", "Advance"))
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return "", time.Time{}, err
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
		if _, err := e.kubectl(ctx, "kubectl", "-n", deploy.FluxNamespace, "patch",
			"kustomizations.kustomize.toolkit.fluxcd.io", k, "--type=merge", "-p", `{"spec":{"suspend":true}}`); err != nil {
			return err
		}
		if err := e.s.Apply.Wait(ctx, stack.FluxKustomizations, deploy.FluxNamespace, k, 5*time.Minute,
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
