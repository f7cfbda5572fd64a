package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// negative-control: what the HA design relies on taken away — bank-db switched to asynchronous replication,
// its WAL shipping to the standbys blocked, then the primary's node cut. It must lose: the row passes when
// the audit reports the acknowledged transactions that are gone (Flux suspended first when it runs).
var negativeControl = scenario{
	name:     "negative-control",
	fault:    "bank-db switched to asynchronous replication, WAL shipping blocked, the primary's node cut: must lose",
	negative: true,
	run:      negativeControlRun,
}

// negativeControlRun takes away what the HA design relies on — synchronous replication — and then fails the
// primary's node with WAL not yet shipped: the audit must report the acknowledged transactions that are lost.
func negativeControlRun(ctx context.Context, e *env, r *Row) error {
	if err := e.suspendFlux(ctx, r); err != nil {
		return err
	}
	async := `- op: remove
  path: /spec/postgresql/synchronous`
	if e.gitops != nil {
		// Flux's field manager co-owns spec.postgresql.synchronous: an apply that leaves it out does not
		// remove it, a JSON patch does.
		if _, err := e.kubectl(ctx, "kubectl", "-n", namespace, "patch", "clusters.postgresql.cnpg.io", "bank-db",
			"--type=json", "-p", `[{"op":"remove","path":"/spec/postgresql/synchronous"}]`); err != nil {
			return err
		}
	} else if err := e.s.Deploy(ctx, tagOf(e.image), map[string]string{"Cluster/bank-db": async}); err != nil {
		return err
	}
	defer func() {
		// The synchronous setting comes back for whatever runs next on a kept cluster.
		_ = e.s.Deploy(context.WithoutCancel(ctx), tagOf(e.image), nil)
	}()
	p, err := e.primary(ctx, "bank-db")
	if err != nil {
		return err
	}
	if err := e.waitAsync(ctx, p, 2*time.Minute); err != nil {
		return err
	}
	standbys, err := e.standbyIPs(ctx, "bank-db", p.Pod)
	if err != nil {
		return err
	}
	if err := e.c.BlockFromPod(p.Node, p.IP, 5432, standbys); err != nil {
		return err
	}
	// On an error below, the node is reconnected and unblocked all the same: the rows after it need it.
	blocked := true
	defer func() {
		if blocked {
			_ = e.c.UnblockFromPod(p.Node)
		}
	}()
	e.logf("negative control: %s async, WAL to %v blocked on %s; 20 s of commits no standby has", p.Pod, standbys, p.Node)
	if err := sleepCtx(ctx, 20*time.Second); err != nil {
		return err
	}
	// Still asynchronous: anything that put synchronous replication back (a GitOps controller) would make
	// the operator refuse the failover rather than lose, and this row would prove nothing.
	if err := e.waitAsync(ctx, p, 5*time.Second); err != nil {
		return fmt.Errorf("before the cut: %w", err)
	}
	t := time.Now()
	if err := e.c.CutNode(p.Node); err != nil {
		return err
	}
	cut := true
	defer func() {
		if cut {
			_ = e.c.HealNode(p.Node)
		}
	}()
	newP, at, err := e.waitPrimaryChange(ctx, "bank-db", p.Pod, 4*time.Minute)
	if err != nil {
		return err
	}
	r.Times["cut_to_new_primary"] = at.Sub(t).Seconds()
	if err := sleepCtx(ctx, 30*time.Second); err != nil {
		return err
	}
	blocked = false
	if err := e.c.UnblockFromPod(p.Node); err != nil {
		return err
	}
	cut = false
	if err := e.c.HealNode(p.Node); err != nil {
		return err
	}
	if err := e.s.WaitHealthy(ctx, 8*time.Minute); err != nil {
		return err
	}
	r.Checks = append(r.Checks, fmt.Sprintf("asynchronous bank-db, WAL shipping blocked for 20 s, %s cut off: %s promoted "+
		"after %.1f s; the old primary rejoined (rewound)", p.Node, newP, at.Sub(t).Seconds()))
	return nil
}

// waitAsync waits until the primary runs without synchronous standbys.
func (e *env) waitAsync(ctx context.Context, p cnpgPrimary, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		out, err := e.kubectl(ctx, "kubectl", "exec", "-n", namespace, p.Pod, "-c", "postgres", "--",
			"psql", "-tAc", "show synchronous_standby_names")
		if err == nil && strings.TrimSpace(out) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("%s: synchronous_standby_names not readable after %s: %w", p.Pod, d, err)
			}
			return fmt.Errorf("%s still synchronous after %s: %q", p.Pod, d, strings.TrimSpace(out))
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
}

func (e *env) standbyIPs(ctx context.Context, cluster, primary string) ([]string, error) {
	pods, err := e.podsOf(ctx, "cnpg.io/cluster="+cluster)
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, p := range pods {
		if p.Name != primary && p.Labels["cnpg.io/podRole"] == "instance" && p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s has no standby", cluster)
	}
	return ips, nil
}
