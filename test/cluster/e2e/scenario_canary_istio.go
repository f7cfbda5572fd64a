package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/flagger"
)

// canary-promote (mesh only): a new Bank revision handed to Flagger's Istio provider, as
// kustomize/components/canary configures it for production. Checks: Flagger moves the Store's traffic to the
// canary through its VirtualService bank in steps up to the Canary's maxWeight, its analysis (Istio's request
// success rate and duration, the Bank's own 5xx and unknown-account ratios, the acceptance and load tests in
// flagger-loadtester) passes, the revision is promoted (bank-primary runs it, weights back to 100/0, the
// canary scaled to zero), and the clients see no error.
var canaryPromote = scenario{
	name: "canary-promote",
	fault: "a new Bank revision: Flagger (Istio provider) shifts the Store's calls in steps to maxWeight through " +
		"its VirtualService, analyses them, promotes",
	noClientErrors: true,
	run:            canaryPromoteRun,
}

// canary-rollback (mesh only): a Bank revision whose allow-list drops flagger-loadtester's identity — it starts,
// its probes pass, the Store may still call it, but Flagger's acceptance test is refused (403
// caller_not_allowed). Checks: the analysis fails threshold times, Flagger rolls back by itself (Canary
// Failed, weights 100/0, the canary scaled to zero, bank-primary still on the previous configuration), and
// the clients see no error.
var canaryRollback = scenario{
	name: "canary-rollback",
	fault: "a Bank revision that refuses flagger-loadtester: the acceptance test fails, Flagger (Istio provider) " +
		"rolls back by itself",
	noClientErrors: true,
	run:            canaryRollbackRun,
}

// releaseAnnotation marks a pod template with the release the row made: a change Flagger takes as a revision.
const releaseAnnotation = "e2e.txmesh.io/release"

func releasePatch(release string) string {
	return `- op: add
  path: /spec/template/metadata/annotations/` + strings.ReplaceAll(releaseAnnotation, "/", "~1") + `
  value: "` + release + `"`
}

// allowedCallersPatch sets the Bank's allow-list (kustomize/components/canary lists the Store and the load
// tester) to the given SPIFFE IDs.
func allowedCallersPatch(ids ...string) string {
	return `- op: replace
  path: /data/ALLOWED_CALLERS
  value: "` + strings.Join(ids, ";") + `"`
}

const storeID, loadtesterID = "spiffe://cluster.local/ns/txmesh/sa/store", "spiffe://cluster.local/ns/loadtester/sa/default"

func canaryPromoteRun(ctx context.Context, e *env, r *Row) error {
	release := time.Now().UTC().Format("20060102T150405Z")
	c, err := e.s.Apply.Dynamic().Resource(flagger.Canaries).Namespace(namespace).Get(ctx, "bank", metav1.GetOptions{})
	if err != nil {
		return err
	}
	maxWeight, _, _ := unstructured.NestedInt64(c.Object, "spec", "analysis", "maxWeight")
	rev := revisionOf(c)
	t := time.Now()
	w := e.watchWeights(ctx)
	if err := e.s.Deploy(ctx, tagOf(e.image), map[string]string{"Deployment/bank": releasePatch(release)}); err != nil {
		w.close()
		return err
	}
	end, err := e.awaitCanary(ctx, "bank", rev, "Succeeded", t, 15*time.Minute)
	w.close()
	if err != nil {
		return err
	}
	r.Times["release_to_promoted"] = end.At.Sub(t).Seconds()
	if w.maxCanary < maxWeight || maxWeight == 0 {
		return fmt.Errorf("%s, but the canary's weight in Flagger's VirtualService bank reached %d %%, want the "+
			"Canary's maxWeight %d %% (weights seen %v)", end.Seen, w.maxCanary, maxWeight, w.seen)
	}
	if err := e.servedByPrimary(ctx, "bank"); err != nil {
		return err
	}
	if err := e.weighsPrimaryOnly(ctx, "after promotion"); err != nil {
		return err
	}
	primary, err := e.cs.AppsV1().Deployments(namespace).Get(ctx, "bank-primary", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := primary.Spec.Template.Annotations[releaseAnnotation]; got != release {
		return fmt.Errorf("bank-primary's template has %s=%q, want the promoted %q", releaseAnnotation, got, release)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("%s; canary weights seen %v (maxWeight %d %%); bank-primary runs release %s, "+
		"weights 100/0, canary at zero; events: %s", end.Seen, w.seen, maxWeight, release,
		e.canaryEvents(ctx, "bank", t, "Advance", "Promotion", "Routing all traffic")))
	return nil
}

func canaryRollbackRun(ctx context.Context, e *env, r *Row) error {
	rev, err := e.canaryRevision(ctx, "bank")
	if err != nil {
		return err
	}
	t := time.Now()
	w := e.watchWeights(ctx)
	if err := e.s.Deploy(ctx, tagOf(e.image), map[string]string{"ConfigMap/bank-config": allowedCallersPatch(storeID)}); err != nil {
		w.close()
		return err
	}
	end, err := e.awaitCanary(ctx, "bank", rev, "Failed", t, 15*time.Minute)
	w.close()
	if err != nil {
		return err
	}
	r.Times["release_to_rolled_back"] = end.At.Sub(t).Seconds()
	if err := e.servedByPrimary(ctx, "bank"); err != nil {
		return err
	}
	if err := e.weighsPrimaryOnly(ctx, "after the rollback"); err != nil {
		return err
	}
	cm, err := e.cs.CoreV1().ConfigMaps(namespace).Get(ctx, "bank-config-primary", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := cm.Data["ALLOWED_CALLERS"]; !strings.Contains(got, loadtesterID) {
		return fmt.Errorf("bank-primary's configuration (bank-config-primary) has ALLOWED_CALLERS %q: the failed "+
			"revision reached the primary", got)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("%s; canary weights seen %v; bank-primary keeps ALLOWED_CALLERS with "+
		"the load tester, weights 100/0, canary at zero; events: %s", end.Seen, w.seen,
		e.canaryEvents(ctx, "bank", t, "Halt", "failed", "Rolling back", "acceptance")))
	return nil
}

// weighsPrimaryOnly checks that Flagger's VirtualService bank sends everything to the primary.
func (e *env) weighsPrimaryOnly(ctx context.Context, when string) error {
	p, c, err := e.bankWeights(ctx)
	if err != nil {
		return err
	}
	if p != 100 || c != 0 {
		return fmt.Errorf("%s Flagger's VirtualService bank weighs primary %d, canary %d, want 100/0", when, p, c)
	}
	return nil
}

// bankWeights are the weights of Flagger's VirtualService bank (the delegate of bank-root) for the primary
// and the canary.
func (e *env) bankWeights(ctx context.Context) (primary, canary int64, err error) {
	vs, err := e.s.Apply.Dynamic().Resource(virtualServices).Namespace(namespace).Get(ctx, "bank", metav1.GetOptions{})
	if err != nil {
		return 0, 0, err
	}
	return routeWeights(vs)
}

// routeWeights reads the first HTTP route's weights by destination host (bank-primary…, bank-canary…).
func routeWeights(vs *unstructured.Unstructured) (primary, canary int64, err error) {
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	if len(routes) == 0 {
		return 0, 0, fmt.Errorf("virtualservice %s has no HTTP route", vs.GetName())
	}
	dests, _, _ := unstructured.NestedSlice(routes[0].(map[string]any), "route")
	found := 0
	for _, d := range dests {
		m, _ := d.(map[string]any)
		host, _, _ := unstructured.NestedString(m, "destination", "host")
		weight, _, _ := unstructured.NestedInt64(m, "weight")
		switch name, _, _ := strings.Cut(host, "."); {
		case strings.HasSuffix(name, "-primary"):
			primary, found = weight, found+1
		case strings.HasSuffix(name, "-canary"):
			canary, found = weight, found+1
		}
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("virtualservice %s: route %v, want a -primary and a -canary destination", vs.GetName(), dests)
	}
	return primary, canary, nil
}

// weightWatch samples the canary's weight in Flagger's VirtualService every 2 s: what the Istio provider
// really routed, not what the Canary's status says.
type weightWatch struct {
	mu        sync.Mutex
	maxCanary int64
	seen      []int64 // distinct canary weights, in order
	stop      context.CancelFunc
	done      chan struct{}
}

func (e *env) watchWeights(ctx context.Context) *weightWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &weightWatch{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			if _, c, err := e.bankWeights(ctx); err == nil {
				w.note(c)
			}
			_ = sleepCtx(ctx, 2*time.Second)
		}
	}()
	return w
}

func (w *weightWatch) note(c int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxCanary = max(w.maxCanary, c)
	if len(w.seen) == 0 || w.seen[len(w.seen)-1] != c {
		w.seen = append(w.seen, c)
	}
}

func (w *weightWatch) close() { w.stop(); <-w.done }
