package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/flux"
)

// cd-release: tag 1.0.1 of the txmesh image pushed to the registry. Checks: ImagePolicy selects it, image
// automation commits it, Flux applies the commit, Flagger analyses both canaries under load and promotes
// them, the primaries run it; no client error.
var cdRelease = scenario{
	name:           "cd-release",
	fault:          "tag 1.0.1 pushed to the registry: image automation commits it, Flux applies it, Flagger analyses and promotes",
	needs:          []string{"cd-bootstrap"},
	noClientErrors: true,
	run:            cdReleaseRun,
}

// cdReleaseRun pushes a new X.Y.Z tag of the txmesh image (a build of the same checkout) to the cluster's
// registry and follows it through: ImageRepository scan → ImagePolicy selects it → ImageUpdateAutomation
// commits it on the marker in kustomize/overlays/e2e and pushes to the Git server → the apps Kustomization
// applies that commit → Flagger analyses both canaries under load (the Bank's: acceptance and load tests
// from the harness's webhooks; the Store's: its own relay) → both promoted, the primaries run the new image.
func cdReleaseRun(ctx context.Context, e *env, r *Row) error {
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
	if err := e.s.Apply.Wait(ctx, flux.ImagePolicies, flux.Namespace, "txmesh", 3*time.Minute,
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
	if err := e.s.Apply.Wait(ctx, flux.Kustomizations, flux.Namespace, "apps", 5*time.Minute,
		attemptedRevision(commit)); err != nil {
		return err
	}
	r.Times["push_to_applied"] = time.Since(t).Seconds()
	var runs []string
	for _, app := range []string{"bank", "store"} {
		end, err := e.awaitCanary(ctx, app, revs[app], "Succeeded", t, 6*time.Minute)
		if err == nil {
			err = end.cleanAnalysis()
		}
		if err != nil {
			return fmt.Errorf("%w; the harness's webhooks: %s", err, e.hooks.stats().since(hooks))
		}
		runs = append(runs, end.Seen)
		r.Times["push_to_promoted"] = max(r.Times["push_to_promoted"], end.At.Sub(t).Seconds())
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
