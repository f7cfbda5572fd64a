package e2e

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bank-db-failover: the bank-db primary's PostgreSQL killed -9 from its node, then the primary pod deleted.
// Checks: a working primary again after each (promoted, or restarted in place), the cluster healthy, and the
// times to it and to the first Bank commit after it. store-db-failover is the same on the other database.
var bankDBFailover = scenario{
	name:  "bank-db-failover",
	fault: "bank-db primary: kill -9 of PostgreSQL from its node, then deletion of the primary pod",
	// The killed PostgreSQL recovers from a crash: DatabaseInstanceCrashed.
	alerts: []string{"DatabaseInstanceCrashed"},
	run:    dbFailover("bank-db"),
}

// dbFailover kills the primary's PostgreSQL from its node, waits for the cluster to be whole, then deletes the
// primary pod.
func dbFailover(cluster string) func(ctx context.Context, e *env, r *Row) error {
	return func(ctx context.Context, e *env, r *Row) error {
		w := e.watchCommits(ctx)
		defer w.close()
		if err := sleepCtx(ctx, 10*time.Second); err != nil {
			return err
		}
		for _, how := range []string{"kill", "delete"} {
			p, err := e.primary(ctx, cluster)
			if err != nil {
				return err
			}
			t := time.Now()
			if how == "kill" {
				err = e.killPostmaster(p)
			} else {
				err = e.cs.CoreV1().Pods(namespace).Delete(ctx, p.Pod, metav1.DeleteOptions{})
			}
			if err != nil {
				return err
			}
			e.logf("%s: %s of %s on %s", cluster, how, p.Pod, p.Node)
			newP, outcome, at, err := e.waitPrimaryBack(ctx, cluster, p, 5*time.Minute)
			if err != nil {
				return err
			}
			r.Times[how+"_to_primary"] = at.Sub(t).Seconds()
			if err := e.s.WaitHealthy(ctx, 5*time.Minute); err != nil {
				return err
			}
			if err := sleepCtx(ctx, 5*time.Second); err != nil {
				return err
			}
			if d, ok := w.firstAfter(t); ok {
				r.Times[how+"_to_first_bank_commit"] = d.Seconds()
			}
			r.Times[how+"_longest_bank_gap"] = w.longestGap(t.Add(-2*time.Second), time.Now()).Seconds()
			r.Checks = append(r.Checks, fmt.Sprintf("%s %s (on %s) → %s: %s after %.1f s", how, p.Pod, p.Node, newP,
				outcome, at.Sub(t).Seconds()))
		}
		e.cnpgStatus(ctx, cluster)
		return nil
	}
}

// waitPrimaryBack waits until the cluster has a working primary again after a fault of p: another instance
// promoted, or — PostgreSQL killed but its pod alive — the same instance restarted in place (the instance
// manager exits with PostgreSQL, the kubelet restarts it, crash recovery replays the WAL it had fsynced)
// before the operator decided on a failover.
func (e *env) waitPrimaryBack(ctx context.Context, cluster string, p cnpgPrimary, d time.Duration) (string, string, time.Time, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		cur, err := e.primary(ctx, cluster)
		if err == nil && cur.Pod != p.Pod {
			return cur.Pod, "failover, promoted", time.Now(), nil
		}
		if err == nil && cur.ContainerID != "" && cur.ContainerID != p.ContainerID {
			if pod, err := e.cs.CoreV1().Pods(namespace).Get(ctx, p.Pod, metav1.GetOptions{}); err == nil && podReady(pod) {
				return cur.Pod, "restarted in place as primary", time.Now(), nil
			}
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return "", "", time.Time{}, err
		}
	}
	return "", "", time.Time{}, fmt.Errorf("%s: no working primary within %s of the fault of %s", cluster, d, p.Pod)
}
