package e2e

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// bank-outage: every Bank pod gone for 75 s. Checks: the Store keeps accepting (the outbox backlog grows past
// 100), every Store pod's breaker opens (read from its metrics), and the backlog drains once the Bank is back.
// In the mesh the serving Deployment is Flagger's bank-primary, and the Store's sidecar answers for the
// missing Bank (503, no healthy upstream): the relay must treat Envoy's answer as the outage it is.
var bankOutage = scenario{
	name:  "bank-outage",
	fault: "every Bank pod gone for 75 s: the Store keeps accepting, the breakers open; Bank back: drained",
	// The breakers stay open for more than a minute: StoreBreakerOpen.
	alerts: []string{"StoreBreakerOpen"},
	run:    bankOutageRun,
}

func bankOutageRun(ctx context.Context, e *env, r *Row) error {
	bank := e.serving("bank")
	if err := e.scale(ctx, bank, 0); err != nil {
		return err
	}
	t0 := time.Now()
	for {
		pods, err := e.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: e.appSelector("bank")})
		if err == nil && len(pods.Items) == 0 {
			break
		}
		if time.Since(t0) > 2*time.Minute {
			return fmt.Errorf("bank pods still there 2 min after scaling to 0")
		}
		time.Sleep(500 * time.Millisecond)
	}
	gone := time.Now()
	var maxBacklog int64
	breakerOpen := map[string]bool{}
	unread := map[string]error{} // pods whose last read of the breaker state failed
	for time.Since(gone) < 75*time.Second {
		if o, err := e.outbox(ctx); err == nil {
			maxBacklog = max(maxBacklog, o.Backlog)
		}
		stores, _ := e.podsOf(ctx, e.appSelector("store"))
		for _, p := range stores {
			v, err := metric(ctx, e.metricsURL(p.Status.PodIP), "store_breaker_state")
			if err != nil {
				unread[p.Name] = err
				continue
			}
			delete(unread, p.Name)
			if v == 2 {
				breakerOpen[p.Name] = true
			}
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
	stores, err := e.podsOf(ctx, e.appSelector("store"))
	if err != nil {
		return err
	}
	r.Times["bank_gone"] = time.Since(gone).Seconds()
	if err := e.scale(ctx, bank, 2); err != nil {
		return err
	}
	back := time.Now()
	if err := e.s.Apply.Wait(ctx, manifests.Deployments, namespace, bank, 3*time.Minute, manifests.DeploymentAvailable); err != nil {
		return err
	}
	drain, err := e.waitDrained(ctx, 5*time.Minute)
	if err != nil {
		return err
	}
	r.Times["bank_back_to_drained"] = time.Since(back).Seconds()
	r.Times["drain_after_ready"] = drain.Seconds()
	r.Checks = append(r.Checks, fmt.Sprintf("backlog grew to %d while the Bank was gone; breaker open on %d of %d Store pods; "+
		"drained %.1f s after the Bank was back", maxBacklog, len(breakerOpen), len(stores), time.Since(back).Seconds()))
	if maxBacklog < 100 {
		return fmt.Errorf("backlog only reached %d: the Store did not keep accepting", maxBacklog)
	}
	if len(breakerOpen) < len(stores) {
		for pod, err := range unread {
			return fmt.Errorf("breaker open on %d of %d Store pods; the state of %s unreadable: %v",
				len(breakerOpen), len(stores), pod, err.Error())
		}
		return fmt.Errorf("breaker open on %d of %d Store pods", len(breakerOpen), len(stores))
	}
	return nil
}
