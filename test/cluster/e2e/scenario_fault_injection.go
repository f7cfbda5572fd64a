package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// fault-injection (mesh only): mesh/fault-injection's fault — the one kustomize/components/fault-injection
// ships, 10 % of the Store's calls to the Bank delayed 1 s, 5 % aborted with 503 — added to the root
// VirtualService bank-root for 90 s, then removed. Checks: the fault is on the route while Flagger's delegate
// keeps its own; the Store sees the aborts as answers that are not the Bank's own
// (store_relay_foreign_answers_total{code="503"} rises on its pods); the Bank's own 503s rise by fewer (the
// abort is the Store's sidecar's, the request never reaches a Bank pod); the route is clean again after. The
// audit then proves the relay retried every aborted delivery: nothing lost, nothing applied twice.
var faultInjection = scenario{
	name: "fault-injection",
	fault: "mesh/fault-injection on bank-root for 90 s (10 % of Store→Bank calls +1 s, 5 % 503 at the Store's " +
		"sidecar): seen at the Store as foreign 503s, retried; removed",
	noClientErrors: true, // the fault is on the Store → Bank path; the clients → Store path is untouched
	run:            faultInjectionRun,
}

var virtualServices = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}

// faultPatch is the component's patch itself, read from the checkout: the row injects what users enable.
func faultPatch(repo string) (string, error) {
	b, err := os.ReadFile(filepath.Join(repo, "mesh", "fault-injection", "fault.yaml"))
	return string(b), err
}

func faultInjectionRun(ctx context.Context, e *env, r *Row) error {
	patch, err := faultPatch(e.opts.Repo)
	if err != nil {
		return err
	}
	before, err := e.sumOver(ctx, "store", "store_relay_foreign_answers_total", `code="503"`)
	if err != nil {
		return err
	}
	bankBefore, err := e.sumOver(ctx, "bank", "bank_http_requests_total", `code="503"`)
	if err != nil {
		return err
	}
	tag := tagOf(e.image)
	if err := e.s.DeployOnly(ctx, tag, map[string]string{"VirtualService/bank-root": patch}, "VirtualService/bank-root"); err != nil {
		return err
	}
	on := time.Now()
	if err := e.routeFault(ctx, true); err != nil {
		return err
	}
	werr := sleepCtx(ctx, 90*time.Second)
	after, aerr := e.sumOver(ctx, "store", "store_relay_foreign_answers_total", `code="503"`)
	bankAfter, berr := e.sumOver(ctx, "bank", "bank_http_requests_total", `code="503"`)
	// Off whatever happened: the next row must not run with the fault.
	if err := e.s.DeployOnly(ctx, tag, nil, "VirtualService/bank-root"); err != nil {
		return err
	}
	if err := e.routeFault(ctx, false); err != nil {
		return err
	}
	r.Times["fault_on"] = time.Since(on).Seconds()
	for _, err := range []error{werr, aerr, berr} {
		if err != nil {
			return err
		}
	}
	foreign, bank5xx := after-before, bankAfter-bankBefore
	r.Checks = append(r.Checks, fmt.Sprintf("fault on bank-root's route for %.0f s: the Store counted %.0f foreign "+
		"503 answers (store_relay_foreign_answers_total), the Bank answered %.0f 503s itself; fault off again",
		r.Times["fault_on"], foreign, bank5xx))
	if foreign < 1 {
		return fmt.Errorf("no foreign 503 at the Store in %.0f s of a 5 %% abort: the fault did not reach the "+
			"Store → Bank route", r.Times["fault_on"])
	}
	if bank5xx >= foreign {
		return fmt.Errorf("the Bank answered %.0f 503s itself, the Store saw %.0f: the aborts came from the Bank, "+
			"not the Store's sidecar", bank5xx, foreign)
	}
	return nil
}

// routeFault checks that bank-root's route has (or has not) the fault, and still delegates to Flagger's
// VirtualService bank, which keeps its own retries.
func (e *env) routeFault(ctx context.Context, want bool) error {
	vs, err := e.s.Apply.Dynamic().Resource(virtualServices).Namespace(namespace).Get(ctx, "bank-root", metav1.GetOptions{})
	if err != nil {
		return err
	}
	routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	if len(routes) == 0 {
		return fmt.Errorf("virtualservice bank-root has no route")
	}
	route, _ := routes[0].(map[string]any)
	_, has := route["fault"]
	if delegate, _ := route["delegate"].(map[string]any); delegate["name"] != "bank" {
		return fmt.Errorf("bank-root's route delegates to %v, want Flagger's bank", route["delegate"])
	}
	if has != want {
		return fmt.Errorf("bank-root's route: fault %v, want %v", route["fault"], want)
	}
	flagger, err := e.s.Apply.Dynamic().Resource(virtualServices).Namespace(namespace).Get(ctx, "bank", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the delegate VirtualService bank (Flagger's): %w", err)
	}
	if fr, _, _ := unstructured.NestedSlice(flagger.Object, "spec", "http"); len(fr) == 0 || fr[0].(map[string]any)["retries"] == nil {
		return fmt.Errorf("the VirtualService bank (Flagger's) has no retries on its route: %v", fr)
	}
	return nil
}

// sumOver sums a metric (the label sets containing label) over the running pods of an app, read from each
// pod's metrics endpoint.
func (e *env) sumOver(ctx context.Context, app, name, label string) (float64, error) {
	pods, err := e.podsOf(ctx, e.appSelector(app))
	if err != nil {
		return 0, err
	}
	if len(pods) == 0 {
		return 0, fmt.Errorf("no running %s pod", app)
	}
	var sum float64
	for _, p := range pods {
		v, err := metricWhere(ctx, e.metricsURL(p.Status.PodIP), name, label)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.Name, err)
		}
		sum += v
	}
	return sum, nil
}
