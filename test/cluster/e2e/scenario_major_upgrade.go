package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/barman"
	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/stack"
)

// major-upgrade: bank-db from PostgreSQL 17 to 18 in place, under load, the way CloudNativePG 1.30 supports it
// and docs/operations.md tells an operator to do it. The harness deployed bank-db on cnpg.UpgradeFrom,
// archiving under serverName bank-db-pg17 (stack.Options.BankDBUpgrade); this row changes its imageName to
// cnpg.UpgradeTo and drops that serverName in one apply. The operator stops every instance, runs the Job
// bank-db-<serial>-major-upgrade (pg_upgrade --link; cnpg's TestMajorUpgradeOffline does the same offline),
// starts the primary on 18 and re-clones the standbys. Checks: the Job succeeded, the cluster is healthy again
// with 3 instances and a synchronous standby, server_version is 18, the new system archives its WAL (under the
// manifests' serverName) and a base backup of it completes. Then imageName becomes the shipped image (same
// major: a rolling update, switchover last), so that every later row runs what production ships.
// It fires StoreBreakerOpen (the Bank answers 503 for the whole write outage, over a minute here): silence it
// for a planned upgrade. Times: the Job, the patch to a healthy cluster, the longest interval without a Bank commit (the write
// outage: the Bank answers 503 while bank-db is down, the Store keeps accepting and its relay retries), the
// base backup and the roll. The audit after it: nothing lost, nothing applied twice.
var majorUpgrade = scenario{
	name: "major-upgrade",
	fault: "bank-db's imageName from PostgreSQL 17 to 18: CloudNativePG's in-place major upgrade (every instance " +
		"stopped, pg_upgrade --link in a Job, standbys cloned again), a base backup, then a roll to the shipped image",
	// The harness's images (bank-db starts on 17), and its object store: the row moves the archive.
	needs:          []string{"postgres-images", "backups"},
	noClientErrors: true,
	run:            majorUpgradeRun,
}

func majorUpgradeRun(ctx context.Context, e *env, r *Row) error {
	from, to := cnpg.UpgradeFrom, cnpg.UpgradeTo
	if major, image, err := e.pgDataImage(ctx, "bank-db"); err != nil {
		return err
	} else if fmt.Sprint(major) != from.Major {
		return fmt.Errorf("bank-db's data is PostgreSQL %d (%s), not %s: the harness deploys it on %s only in a new "+
			"cluster (a reused one has upgraded already: make cluster-down)", major, image, from.Major, from.Ref())
	}
	if err := e.waitClusterCondition(ctx, "bank-db", "ContinuousArchiving", 3*time.Minute); err != nil {
		return err
	}
	// The runbook's step 2, a base backup of the old system first: the ScheduledBackup's immediate one. An
	// upgrade that stops the instances under a running backup loses it (make e2e, 2026-12-07: the Backup
	// vanished and the pitr row after it found none).
	first, err := e.scheduledBackupDone(ctx, "bank-db-nightly", 5*time.Minute)
	if err != nil {
		return err
	}
	before, err := e.serverVersion(ctx, "bank-db")
	if err != nil {
		return err
	}
	r.Checks = append(r.Checks, fmt.Sprintf("bank-db on %s: PostgreSQL %s, archiving under serverName %s; base backup %s completed first",
		from.Ref(), before, stack.PreUpgradeServerName, first))

	w := e.watchCommits(ctx)
	defer w.close()
	if err := sleepCtx(ctx, 10*time.Second); err != nil {
		return err
	}
	tag := tagOf(e.image)
	t0 := time.Now()
	if err := e.s.DeployOnly(ctx, tag, stack.BankDBPatch(to.Ref(), ""), "Cluster/bank-db"); err != nil {
		return err
	}
	e.logf("major-upgrade: bank-db's imageName is %s", to.Ref())
	job, err := e.waitUpgradeJob(ctx, "bank-db", 15*time.Minute)
	if err != nil {
		e.failureLogs(ctx, "major-upgrade", time.Since(t0)+time.Minute)
		// CloudNativePG's rollback: the old image again, the failed Job deleted, the instances back on 17.
		if rerr := e.s.DeployOnly(context.WithoutCancel(ctx), tag, stack.BankDBPatch(from.Ref(), stack.PreUpgradeServerName),
			"Cluster/bank-db"); rerr != nil {
			e.logf("major-upgrade: rollback to %s: %v", from.Ref(), rerr)
		}
		return err
	}
	r.Times["upgrade_job"] = job.duration.Seconds()
	if err := e.waitUpgraded(ctx, "bank-db", to.Major, 15*time.Minute); err != nil {
		return err
	}
	healthy := time.Now()
	r.Times["to_healthy"] = healthy.Sub(t0).Seconds()
	if d, ok := w.firstAfter(t0); ok {
		r.Times["to_first_bank_commit"] = d.Seconds()
	}
	r.Times["longest_bank_gap"] = w.longestGap(t0.Add(-2*time.Second), healthy).Seconds()
	after, err := e.serverVersion(ctx, "bank-db")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(after, to.Major+".") {
		return fmt.Errorf("bank-db runs PostgreSQL %s after the upgrade, want %s", after, to.Major)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("Job %s succeeded in %.0f s; bank-db healthy %.0f s after the patch, 3 instances, "+
		"a synchronous standby; PostgreSQL %s → %s; longest interval without a Bank commit %.1f s", job.name,
		r.Times["upgrade_job"], r.Times["to_healthy"], before, after, r.Times["longest_bank_gap"]))

	// The archive: the new system (another system identifier, timeline 1) archives under the manifests'
	// serverName, and needs a base backup of its own: no backup of 17 recovers past the upgrade.
	if err := e.waitClusterCondition(ctx, "bank-db", "ContinuousArchiving", 3*time.Minute); err != nil {
		return err
	}
	name := fmt.Sprintf("bank-db-after-upgrade-%d", time.Now().Unix())
	t := time.Now()
	if err := e.s.Apply.Apply(ctx, []*unstructured.Unstructured{{Object: map[string]any{
		"apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{"cluster": map[string]any{"name": "bank-db"}, "method": "plugin",
			"pluginConfiguration": map[string]any{"name": barman.PluginName}},
	}}}); err != nil {
		return err
	}
	b, err := e.waitBackup(ctx, name, 6*time.Minute)
	if err != nil {
		return err
	}
	r.Times["base_backup"] = time.Since(t).Seconds()
	id, _, _ := unstructured.NestedString(b.Object, "status", "backupId")
	r.Checks = append(r.Checks, fmt.Sprintf("the new system archives under serverName bank-db (ContinuousArchiving True); "+
		"base backup %s (barman %s) in %.0f s", name, id, r.Times["base_backup"]))

	// The shipped image: same major, a rolling update (standbys, then a switchover).
	t = time.Now()
	if err := e.s.DeployOnly(ctx, tag, nil, "Cluster/bank-db"); err != nil {
		return err
	}
	if err := e.waitClusterImage(ctx, "bank-db", cnpg.Shipped.Ref(), 15*time.Minute); err != nil {
		return err
	}
	r.Times["roll_to_shipped"] = time.Since(t).Seconds()
	r.Times["roll_longest_bank_gap"] = w.longestGap(t, time.Now()).Seconds()
	version, err := e.postgresVersion(ctx, false)
	if err != nil {
		return err
	}
	r.Checks = append(r.Checks, fmt.Sprintf("rolled to %s in %.0f s (longest interval without a Bank commit %.1f s): "+
		"bank-db and store-db both run PostgreSQL %s", cnpg.Shipped.Ref(), r.Times["roll_to_shipped"],
		r.Times["roll_longest_bank_gap"], version))
	e.cnpgStatus(ctx, "major-upgrade")
	return nil
}

// pgDataImage is the major version and image of a cluster's data directory (status.pgDataImageInfo).
func (e *env) pgDataImage(ctx context.Context, cluster string) (int64, string, error) {
	c, err := e.s.Apply.Dynamic().Resource(cnpg.Clusters).Namespace(namespace).Get(ctx, cluster, metav1.GetOptions{})
	if err != nil {
		return 0, "", err
	}
	major, _, _ := unstructured.NestedInt64(c.Object, "status", "pgDataImageInfo", "majorVersion")
	image, _, _ := unstructured.NestedString(c.Object, "status", "pgDataImageInfo", "image")
	return major, image, nil
}

// serverVersion is SHOW server_version on a cluster's primary.
func (e *env) serverVersion(ctx context.Context, cluster string) (string, error) {
	p, err := e.primary(ctx, cluster)
	if err != nil {
		return "", err
	}
	return e.psql(ctx, p.Pod, "postgres", "show server_version")
}

type upgradeJob struct {
	name     string
	duration time.Duration
}

// waitUpgradeJob waits for the cluster's major-upgrade Job (label cnpg.io/jobRole=major-upgrade) to succeed,
// and fails at once when it fails. The operator deletes the Job as soon as it has succeeded: a Job gone
// after it was seen running counts as done when the data directory is of the new major.
func (e *env) waitUpgradeJob(ctx context.Context, cluster string, d time.Duration) (upgradeJob, error) {
	var seen upgradeJob
	var started time.Time
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		l, err := e.cs.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{
			LabelSelector: "cnpg.io/jobRole=major-upgrade,cnpg.io/cluster=" + cluster})
		if err == nil {
			if len(l.Items) == 0 && seen.name != "" {
				if major, _, err := e.pgDataImage(ctx, cluster); err == nil && major > 0 && fmt.Sprint(major) == cnpg.UpgradeTo.Major {
					seen.duration = time.Since(started)
					return seen, nil
				}
			}
			for _, j := range l.Items {
				if seen.name == "" {
					seen.name, started = j.Name, time.Now()
					e.logf("major-upgrade: Job %s created", j.Name)
				}
				if j.Status.StartTime != nil {
					started = j.Status.StartTime.Time
				}
				if jobFailed(&j) {
					return seen, fmt.Errorf("the major upgrade Job %s failed (its pod's log: pg_upgrade's output)", j.Name)
				}
				if j.Status.Succeeded > 0 {
					end := time.Now()
					if j.Status.CompletionTime != nil {
						end = j.Status.CompletionTime.Time
					}
					seen.duration = end.Sub(started)
					return seen, nil
				}
			}
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return seen, err
		}
	}
	return seen, fmt.Errorf("%s: no major upgrade Job succeeded within %s (seen: %q)", cluster, d, seen.name)
}

func jobFailed(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == "True" {
			return true
		}
	}
	return false
}

// waitUpgraded waits until the cluster's data directory is of major, every instance is ready, the operator
// calls it healthy and the primary has a synchronous standby (quorum or sync) streaming.
func (e *env) waitUpgraded(ctx context.Context, cluster, major string, d time.Duration) error {
	var last string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		c, err := e.s.Apply.Dynamic().Resource(cnpg.Clusters).Namespace(namespace).Get(ctx, cluster, metav1.GetOptions{})
		if err == nil {
			m, _, _ := unstructured.NestedInt64(c.Object, "status", "pgDataImageInfo", "majorVersion")
			ok, why := cnpg.ClusterHealthy(c)
			last = fmt.Sprintf("data of major %d, %s", m, why)
			if ok && fmt.Sprint(m) == major {
				p, err := e.primary(ctx, cluster)
				if err == nil {
					n, err := e.psql(ctx, p.Pod, "postgres",
						"select count(*) from pg_stat_replication where state = 'streaming' and sync_state in ('sync', 'quorum')")
					if err == nil && n != "0" {
						return nil
					}
					last += fmt.Sprintf("; %s synchronous standbys streaming (%v)", n, err)
				}
			}
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	e.failureLogs(ctx, "major-upgrade", d)
	return fmt.Errorf("%s: not healthy on PostgreSQL %s within %s (%s)", cluster, major, d, last)
}

// waitClusterImage waits until every instance of the cluster runs image and the cluster is healthy.
func (e *env) waitClusterImage(ctx context.Context, cluster, image string, d time.Duration) error {
	var last string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		c, err := e.s.Apply.Dynamic().Resource(cnpg.Clusters).Namespace(namespace).Get(ctx, cluster, metav1.GetOptions{})
		pods, perr := e.podsOf(ctx, "cnpg.io/cluster="+cluster+",cnpg.io/podRole=instance")
		if err == nil && perr == nil {
			ok, why := cnpg.ClusterHealthy(c)
			current := 0
			for _, p := range pods {
				for _, ct := range p.Spec.Containers {
					if ct.Name == "postgres" && ct.Image == image && podReady(&p) {
						current++
					}
				}
			}
			last = fmt.Sprintf("%s; %d of %d pods ready on %s", why, current, len(pods), image)
			if ok && current == len(pods) && current > 0 {
				return nil
			}
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: not healthy on %s within %s (%s)", cluster, image, d, last)
}
