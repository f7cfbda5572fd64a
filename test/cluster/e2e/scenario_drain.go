package e2e

import (
	"context"
	"fmt"
	"time"
)

// drain: kubectl drain of the node holding both primaries and the backup plugin (the primaries switched over
// to it first), the apps first, then the database instances. Checks: PDBs respected, both primaries switched over off the node,
// the longest gaps without a Bank commit and a Store purchase, and clients told at most to retry (503/504
// of the contract), none giving up. Not "no client error": each switchover stops writes for longer than
// the Store's 15 s ride-through here (CloudNativePG's promotion times in three runs of 2026-12-06: 14 to 36 s
// after the switchover began; 9 s when the promise was first measured), so purchases in that window get
// the truthful 503 and the client's retry succeeds.
var drain = scenario{
	name:        "drain",
	fault:       "kubectl drain of the node holding both databases' primaries and the backup plugin under load; PDBs, CNPG switchovers",
	retriesOnly: true,
	// Planned maintenance: the switchovers and the instances waiting for the uncordon page no one.
	quiet: true,
	run:   drainRun,
}

func drainRun(ctx context.Context, e *env, r *Row) error {
	// The node the backup plugin serves from, when it runs: evicted with the apps, it leaves the operator
	// unable to reconcile either Cluster until its replacement is Ready, so its node is the worst to drain.
	plugin, err := e.pluginLeaderNode(ctx)
	if err != nil {
		return err
	}
	if plugin != "" {
		if err := e.colocatePrimary(ctx, "bank-db", plugin); err != nil {
			return err
		}
		r.Checks = append(r.Checks, "bank-db's primary switched over to "+plugin+", where the backup plugin serves")
	}
	p, err := e.primary(ctx, "bank-db")
	if err != nil {
		return err
	}
	bank, store := e.watchCommits(ctx), e.watchCounter(ctx, "app=store", "store_purchases_created_total")
	defer bank.close()
	defer store.close()
	// Both primaries on the drained node: two switchovers under load, the Store's included (the promotion
	// of the store-db instance there is a switchover too).
	t0 := time.Now()
	if err := e.colocatePrimary(ctx, "store-db", p.Node); err != nil {
		return err
	}
	if time.Since(t0) > time.Second {
		r.Times["promote_longest_store_create_gap"] = store.longestGap(t0, time.Now()).Seconds()
	}
	sp, err := e.primary(ctx, "store-db")
	if err != nil {
		return err
	}
	t := time.Now()
	// Whatever fails from here on, the node is uncordoned: a node left cordoned keeps a third instance of
	// each database unschedulable (local volumes), and every later row fails on it.
	uncordoned := false
	defer func() {
		if !uncordoned {
			_, _ = e.kubectl(context.WithoutCancel(ctx), "kubectl", "uncordon", p.Node)
		}
	}()
	if _, err := e.kubectl(ctx, "kubectl", "drain", p.Node, "--ignore-daemonsets", "--delete-emptydir-data",
		"--timeout=6m", "--pod-selector=cnpg.io/podRole!=instance,"+notObserver); err != nil {
		return err
	}
	r.Times["drain_apps"] = time.Since(t).Seconds()
	// The database instances go last, as a node maintenance does: the operator switches the primary over.
	if _, err := e.kubectl(ctx, "kubectl", "drain", p.Node, "--ignore-daemonsets", "--delete-emptydir-data",
		"--timeout=6m", "--pod-selector="+notObserver); err != nil {
		return err
	}
	r.Times["drain_total"] = time.Since(t).Seconds()
	// The evictions are over when kubectl returns; the switchovers may not be (status.currentPrimary can
	// still name the deleted pod).
	if _, _, err := e.waitPrimaryChange(ctx, "bank-db", p.Pod, 3*time.Minute); err != nil {
		return err
	}
	newP, err := e.primary(ctx, "bank-db")
	if err != nil {
		return err
	}
	if newP.Node == p.Node {
		return fmt.Errorf("bank-db primary still on the drained node %s", p.Node)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("%s drained in %.0f s (PDBs respected); bank-db primary %s → %s on %s",
		p.Node, time.Since(t).Seconds(), p.Pod, newP.Pod, newP.Node))
	if _, _, err := e.waitPrimaryChange(ctx, "store-db", sp.Pod, 3*time.Minute); err != nil {
		return err
	}
	newS, err := e.primary(ctx, "store-db")
	if err != nil {
		return err
	}
	if newS.Node == p.Node {
		return fmt.Errorf("store-db primary still on the drained node %s", p.Node)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("store-db primary %s → %s on %s", sp.Pod, newS.Pod, newS.Node))
	r.Times["longest_bank_gap"] = bank.longestGap(t, time.Now()).Seconds()
	r.Times["longest_store_create_gap"] = store.longestGap(t, time.Now()).Seconds()
	if err := sleepCtx(ctx, 20*time.Second); err != nil {
		return err
	}
	uncordoned = true
	if _, err := e.kubectl(ctx, "kubectl", "uncordon", p.Node); err != nil {
		return err
	}
	return e.s.WaitHealthy(ctx, 6*time.Minute)
}

// notObserver keeps the harness's Prometheus out of the drain, as DaemonSets are: it observes the row (its
// alerts_fired), is not part of txmesh, and its TSDB (an emptyDir) would go with an eviction.
const notObserver = "app.kubernetes.io/name!=prometheus"
