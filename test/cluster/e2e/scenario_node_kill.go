package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/txmesh/txmesh/test/cluster/barman"
)

// node-kill: the node holding the bank-db primary and the backup plugin's serving replica loses power
// (every process of it killed at once) and boots again after 90 s. Checks: a standby promoted, the node
// NotReady, the apps rescheduled off it, and after the reboot the node back and bank-db with 3 ready
// instances. node-cut is the same with the node's link down instead (nodeFailure).
var nodeKill = scenario{
	name:  "node-kill",
	fault: "the node holding the bank-db primary and the backup plugin's leader loses power (every process killed), boots again after 90 s",
	run:   nodeFailure(false),
}

// nodeFailure kills (or cuts off) the node holding the bank-db primary, measures the failover, brings the
// node back after 90 s and waits for it to rejoin.
func nodeFailure(cut bool) func(ctx context.Context, e *env, r *Row) error {
	return func(ctx context.Context, e *env, r *Row) error {
		w := e.watchCommits(ctx)
		defer w.close()
		if err := sleepCtx(ctx, 10*time.Second); err != nil {
			return err
		}
		if !cut {
			// The worst case for the backup plugin: CloudNativePG reconciles a Cluster that names it only
			// while it reaches it, and only the elected replica serves (one replica on the killed node once
			// left bank-db without a failover for minutes).
			node, err := e.pluginLeaderNode(ctx)
			if err != nil {
				return err
			}
			if node != "" {
				if err := e.colocatePrimary(ctx, "bank-db", node); err != nil {
					return err
				}
				r.Checks = append(r.Checks, "bank-db's primary switched over to "+node+
					", the node of the backup plugin's serving replica")
			}
		}
		p, err := e.primary(ctx, "bank-db")
		if err != nil {
			return err
		}
		if cut {
			// The worst case for a partition: both primaries behind it, each still reachable by the apps on
			// its own node, neither able to reach a synchronous standby.
			if err := e.colocatePrimary(ctx, "store-db", p.Node); err != nil {
				return err
			}
			r.Checks = append(r.Checks, "store-db's primary switched over to "+p.Node+", beside bank-db's")
		}
		t := time.Now()
		if cut {
			err = e.c.CutNode(p.Node)
		} else {
			err = e.c.KillNode(p.Node)
		}
		if err != nil {
			return err
		}
		e.logf("node %s (bank-db primary %s) %s", p.Node, p.Pod, map[bool]string{true: "cut off", false: "killed"}[cut])
		newP, at, err := e.waitPrimaryChange(ctx, "bank-db", p.Pod, 4*time.Minute)
		if err != nil {
			return err
		}
		r.Times["fault_to_new_primary"] = at.Sub(t).Seconds()
		if node, err := e.pluginLeaderNode(ctx); err == nil && node != "" {
			r.Checks = append(r.Checks, "at the promotion the backup plugin's leader Lease was held on "+node)
		}
		if err := e.c.WaitNodeReady(ctx, p.Node, false, 2*time.Minute); err != nil {
			return err
		}
		r.Times["fault_to_node_not_ready"] = time.Since(t).Seconds()
		if rest := 90*time.Second - time.Since(t); rest > 0 {
			if err := sleepCtx(ctx, rest); err != nil {
				return err
			}
		}
		moved, err := e.appsOffNode(ctx, p.Node)
		if err != nil {
			return err
		}
		if d, ok := w.firstAfter(t); ok {
			r.Times["fault_to_first_bank_commit"] = d.Seconds()
		}
		back := time.Now()
		if cut {
			err = e.c.HealNode(p.Node)
		} else {
			err = e.c.RebootNode(ctx, p.Node)
		}
		if err != nil {
			return err
		}
		if err := e.c.WaitNodeReady(ctx, p.Node, true, 3*time.Minute); err != nil {
			return err
		}
		if err := e.s.WaitHealthy(ctx, 6*time.Minute); err != nil {
			return err
		}
		r.Times["back_to_rejoined"] = time.Since(back).Seconds()
		r.Checks = append(r.Checks, fmt.Sprintf("%s promoted %.1f s after the fault; %s; the node rejoined and bank-db "+
			"has 3 ready instances %.0f s after it came back", newP, at.Sub(t).Seconds(), moved, time.Since(back).Seconds()))
		e.cnpgStatus(ctx, r.Name)
		return nil
	}
}

// pluginLeaderNode is the node of the Barman Cloud plugin's elected replica (its leader Lease's holder), ""
// when the plugin is not installed.
func (e *env) pluginLeaderNode(ctx context.Context) (string, error) {
	l, err := e.cs.CoordinationV1().Leases(barman.Namespace).Get(ctx, barman.LeaderLease, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var holder string
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	pod, _, _ := strings.Cut(holder, "_") // controller-runtime's identity: <pod>_<uuid>
	p, err := e.cs.CoreV1().Pods(barman.Namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("the backup plugin's leader %q: %w", holder, err)
	}
	return p.Spec.NodeName, nil
}

// appsOffNode checks that the app pods left the failed node (evicted after the 30 s toleration of the
// node's unreachable taint) and run elsewhere.
func (e *env) appsOffNode(ctx context.Context, node string) (string, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var on []string
		ready := map[string]int{}
		for _, app := range []string{"bank", "store"} {
			pods, err := e.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil {
				return "", err
			}
			for _, p := range pods.Items {
				if p.Spec.NodeName == node && p.DeletionTimestamp == nil {
					on = append(on, p.Name)
				}
				if p.Spec.NodeName != node && podReady(&p) {
					ready[app]++
				}
			}
		}
		if len(on) == 0 && ready["bank"] >= 2 && ready["store"] >= 2 {
			return fmt.Sprintf("bank and store rescheduled off %s (%d and %d ready elsewhere)", node, ready["bank"],
				ready["store"]), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("app pods still on %s or not ready elsewhere: on node %v, ready %v", node, on, ready)
		}
		time.Sleep(2 * time.Second)
	}
}
