package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/txmesh/txmesh/test/cluster/barman"
	"github.com/txmesh/txmesh/test/cluster/cnpg"
)

// pitr: bank-db recovered to a point in time, under load, the way docs/operations.md tells an operator to. A
// base backup of bank-db (a Backup, plugin method) while the load goes on; 20 s later the target time is read
// from the primary's clock; 20 s more of writes; the WAL past the target is archived (pg_switch_wal, then
// pg_stat_archiver). Then a new Cluster, bank-db-pitr, bootstraps from the object store to the target, and is
// audited against bank-db by commit time (track_commit_timestamp is on in the shipped Cluster): every
// transaction committed by the target is there, none committed after it, and the recovered ledger balances.
// rpo_s: the target minus the last recovered commit; rto_s: the Cluster's creation to the recovered
// database's first answer. The recovered cluster is deleted afterwards; the backup stays in the object store.
var pitr = scenario{
	name:  "pitr",
	fault: "point-in-time recovery of bank-db, under load, into a new cluster (bank-db-pitr) from its base backup and archived WAL",
	needs: []string{"backups"},
	run:   runPITR,
}

const pitrCluster = "bank-db-pitr"

var backups = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "backups"}

// pitrPolicies are the shipped and e2e NetworkPolicies a bank-db instance needs that a restored cluster needs
// too (the operator in, the API server and the object store out): copied for bank-db-pitr, as the runbook says.
var pitrPolicies = []string{"databases", "databases-e2e-apiserver", "databases-e2e-objectstore"}

func runPITR(ctx context.Context, e *env, r *Row) error {
	for _, db := range []string{"bank-db", "store-db"} {
		if err := e.waitClusterCondition(ctx, db, "ContinuousArchiving", 3*time.Minute); err != nil {
			return err
		}
	}
	r.Checks = append(r.Checks, "bank-db and store-db archive their WAL (condition ContinuousArchiving True)")
	for _, sb := range []string{"bank-db-nightly", "store-db-nightly"} {
		done, err := e.scheduledBackupDone(ctx, sb, 5*time.Minute)
		if err != nil {
			return err
		}
		r.Checks = append(r.Checks, "ScheduledBackup "+sb+": its first backup completed ("+done+")")
	}

	// Transactions without a commit timestamp before the row: those of an earlier major version (pg_upgrade
	// does not carry pg_commit_ts; the major-upgrade row). Older than the base backup below, so committed by
	// the target; every transaction committed from here on must have one.
	p0, err := e.primary(ctx, "bank-db")
	if err != nil {
		return err
	}
	untimed0, err := e.psql(ctx, p0.Pod, "bank", "select count(*) from transactions where pg_xact_commit_timestamp(xmin) is null")
	if err != nil {
		return err
	}

	// The base backup, under load.
	name := fmt.Sprintf("bank-db-pitr-base-%d", time.Now().Unix())
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
	stopped, _, _ := unstructured.NestedString(b.Object, "status", "stoppedAt")
	if stopped == "" { // not reported: when the harness saw it complete, later than its end
		stopped = time.Now().UTC().Format(time.RFC3339Nano)
	}
	id, _, _ := unstructured.NestedString(b.Object, "status", "backupId")
	r.Checks = append(r.Checks, fmt.Sprintf("base backup %s (barman %s) completed in %.0f s", name, id, r.Times["base_backup"]))
	n, size, err := e.s.BackupObjects(ctx, "bank-db/")
	if err != nil {
		return fmt.Errorf("the object store, from the host: %w", err)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("object store: %d objects, %.1f MiB of bank-db's backups and WAL", n, float64(size)/(1<<20)))

	if err := sleepCtx(ctx, 20*time.Second); err != nil {
		return err
	}
	origin, err := e.primary(ctx, "bank-db")
	if err != nil {
		return err
	}
	target, err := e.psql(ctx, origin.Pod, "bank",
		`select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'`)
	if err != nil {
		return err
	}
	e.logf("pitr: target time %s (bank-db's clock, %s)", target, origin.Pod)
	if err := sleepCtx(ctx, 20*time.Second); err != nil {
		return err
	}
	// The segment holding the target's commits and those after it, closed and archived: recovery must find a
	// commit after the target to stop at (otherwise it ends before the target, and fails).
	if origin, err = e.primary(ctx, "bank-db"); err != nil {
		return err
	}
	seg, err := e.psql(ctx, origin.Pod, "postgres", "select pg_walfile_name(pg_switch_wal())")
	if err != nil {
		return err
	}
	if err := e.waitArchived(ctx, origin.Pod, seg, 3*time.Minute); err != nil {
		return err
	}
	r.Checks = append(r.Checks, "WAL past the target archived: "+seg)

	// What bank-db committed by the target and after it, by commit time.
	committed := func(cond string) string {
		return "from transactions where coalesce(pg_xact_commit_timestamp(xmin) " + cond + " '" + target + "'::timestamptz, " +
			strconv.FormatBool(cond == "<=") + ")"
	}
	beforeIDs, err := e.psql(ctx, origin.Pod, "bank", "copy (select id "+committed("<=")+") to stdout")
	if err != nil {
		return err
	}
	want := lines(beforeIDs)
	stats, err := e.psql(ctx, origin.Pod, "bank", "select (select count(*) "+committed(">")+"), "+
		"(select count(*) "+committed("<=")+" and pg_xact_commit_timestamp(xmin) > '"+stopped+"'::timestamptz), "+
		"(select coalesce(extract(epoch from '"+target+"'::timestamptz - max(pg_xact_commit_timestamp(xmin))), -1) "+committed("<=")+"), "+
		"(select count(*) from transactions where pg_xact_commit_timestamp(xmin) is null)")
	if err != nil {
		return err
	}
	f := strings.Split(stats, "|")
	if len(f) != 4 {
		return fmt.Errorf("bank-db's counts: %q", stats)
	}
	after, replayed, rpo, untimed := atoi(f[0]), atoi(f[1]), f[2], atoi(f[3])
	if untimed != atoi(untimed0) {
		return fmt.Errorf("bank-db: %d transactions without a commit timestamp, %s before the row (track_commit_timestamp off?)", untimed, untimed0)
	}
	if untimed > 0 {
		r.Checks = append(r.Checks, fmt.Sprintf("%d transactions committed before bank-db's major upgrade have no commit "+
			"timestamp (pg_upgrade does not carry them): older than the base backup, they count as committed by the target", untimed))
	}
	if after == 0 || replayed == 0 {
		return fmt.Errorf("no proof: %d transactions committed after the target, %d between the backup's end and the target (both must be > 0)", after, replayed)
	}

	// The recovery.
	if err := e.pitrPolicies(ctx, true); err != nil {
		return err
	}
	defer func() {
		if err := e.deletePITR(context.WithoutCancel(ctx)); err != nil {
			e.logf("pitr: cleanup: %v", err)
		}
	}()
	c, err := e.pitrClusterObject(ctx, target)
	if err != nil {
		return err
	}
	t = time.Now()
	if err := e.s.Apply.Apply(ctx, []*unstructured.Unstructured{c}); err != nil {
		return err
	}
	pod, err := e.waitRecovered(ctx, 10*time.Minute)
	if err != nil {
		return err
	}
	rto := time.Since(t).Seconds()
	r.RTOSeconds = &rto
	got, err := e.psql(ctx, pod, "bank", "copy (select id from transactions) to stdout")
	if err != nil {
		return err
	}
	missing, extra := diff(want, lines(got))
	imbalanced, err := e.psql(ctx, pod, "bank", "select count(*) from accounts a where balance <> initial_balance - "+
		"coalesce((select sum(amount) from transactions t where t.account_id = a.id and t.status = 'approved'), 0)")
	if err != nil {
		return err
	}
	if missing > 0 || extra > 0 || imbalanced != "0" {
		return fmt.Errorf("recovered to %s: %d transactions committed by the target missing, %d committed after it present, %s accounts imbalanced", target, missing, extra, imbalanced)
	}
	v, _ := strconv.ParseFloat(rpo, 64)
	r.RPOSeconds = &v
	r.Checks = append(r.Checks, fmt.Sprintf("recovered to %s in %.0f s: all %d transactions committed by the target "+
		"(%d of them after the base backup, from the WAL), none of the %d committed after it; the ledger balances; "+
		"last recovered commit %.3f s before the target", target, rto, len(want), replayed, after, v))
	return nil
}

// pitrClusterObject is the recovery Cluster: one instance of bank-db's image, parameters (recovery needs
// settings such as max_connections at least the origin's) and resources, bootstrapped from bank-db's
// ObjectStore to the target time. No WAL archiving of its own: it is audited, then deleted.
func (e *env) pitrClusterObject(ctx context.Context, target string) (*unstructured.Unstructured, error) {
	src, err := e.s.Apply.Dynamic().Resource(cnpg.Clusters).Namespace(namespace).Get(ctx, "bank-db", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	spec := map[string]any{
		"instances": int64(1),
		"storage":   map[string]any{"size": "1Gi"},
		"bootstrap": map[string]any{"recovery": map[string]any{
			"source":         "origin",
			"database":       "bank",
			"owner":          "bank",
			"recoveryTarget": map[string]any{"targetTime": target},
		}},
		"externalClusters": []any{map[string]any{
			"name": "origin",
			"plugin": map[string]any{"name": barman.PluginName, "parameters": map[string]any{
				"barmanObjectName": "bank-db-backup", "serverName": "bank-db"}},
		}},
	}
	for _, k := range []string{"imageName", "imagePullPolicy", "resources", "inheritedMetadata"} {
		if v, ok := src.Object["spec"].(map[string]any)[k]; ok {
			spec[k] = v
		}
	}
	if params, ok, _ := unstructured.NestedMap(src.Object, "spec", "postgresql", "parameters"); ok {
		spec["postgresql"] = map[string]any{"parameters": params}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
		"metadata": map[string]any{"name": pitrCluster, "namespace": namespace},
		"spec":     spec,
	}}, nil
}

// pitrPolicies copies pitrPolicies for the recovery cluster's pods (create) or deletes the copies.
func (e *env) pitrPolicies(ctx context.Context, create bool) error {
	nps := e.cs.NetworkingV1().NetworkPolicies(namespace)
	for _, name := range pitrPolicies {
		if !create {
			if err := nps.Delete(ctx, name+"-pitr", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			continue
		}
		np, err := nps.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		np.ObjectMeta = metav1.ObjectMeta{Name: name + "-pitr", Namespace: namespace}
		np.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"cnpg.io/cluster": pitrCluster}}
		if _, err := nps.Create(ctx, np, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// deletePITR removes the recovery cluster and its policies and waits until its pods are gone.
func (e *env) deletePITR(ctx context.Context) error {
	err := e.s.Apply.Dynamic().Resource(cnpg.Clusters).Namespace(namespace).Delete(ctx, pitrCluster, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); {
		pods, err := e.podsOf(ctx, "cnpg.io/cluster="+pitrCluster)
		if err == nil && len(pods) == 0 {
			return e.pitrPolicies(ctx, false)
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s's pods still there 3 min after its deletion", pitrCluster)
}

// waitRecovered waits until the recovery cluster is healthy and its primary answers, and returns that pod.
func (e *env) waitRecovered(ctx context.Context, d time.Duration) (string, error) {
	var last string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		c, err := e.s.Apply.Dynamic().Resource(cnpg.Clusters).Namespace(namespace).Get(ctx, pitrCluster, metav1.GetOptions{})
		if err == nil {
			phase, _, _ := unstructured.NestedString(c.Object, "status", "phase")
			ready, _, _ := unstructured.NestedInt64(c.Object, "status", "readyInstances")
			pod, _, _ := unstructured.NestedString(c.Object, "status", "currentPrimary")
			last = fmt.Sprintf("phase %q, %d ready", phase, ready)
			if ready == 1 && pod != "" {
				if _, err := e.psql(ctx, pod, "bank", "select 1"); err == nil {
					return pod, nil
				}
			}
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return "", err
		}
	}
	e.failureLogs(ctx, "pitr", d)
	return "", fmt.Errorf("%s not serving within %s (%s)", pitrCluster, d, last)
}

// waitClusterCondition waits until a Cluster's condition is True.
func (e *env) waitClusterCondition(ctx context.Context, cluster, cond string, d time.Duration) error {
	return e.waitClusterConditionStatus(ctx, cluster, cond, "True", d)
}

// waitClusterConditionStatus waits until the Cluster's condition cond has status ("True", "False").
func (e *env) waitClusterConditionStatus(ctx context.Context, cluster, cond, status string, d time.Duration) error {
	return e.s.Apply.Wait(ctx, cnpg.Clusters, namespace, cluster, d, func(c *unstructured.Unstructured) (bool, string) {
		conds, _, _ := unstructured.NestedSlice(c.Object, "status", "conditions")
		for _, x := range conds {
			if m, _ := x.(map[string]any); m["type"] == cond {
				return m["status"] == status, fmt.Sprintf("condition %s %v: %v", cond, m["status"], m["message"])
			}
		}
		return false, "no condition " + cond
	})
}

// scheduledBackupDone waits until a Backup the ScheduledBackup made has completed and names it (or names the
// one an earlier row saw: plugin-barman-cloud v0.15.0 deletes every completed Backup of a cluster that is not in
// the catalog of its current serverName, internal/cnpgi/instance/retention.go, so after major-upgrade moved
// bank-db's archive, the one of PostgreSQL 17 is gone from Kubernetes, not from the bucket).
func (e *env) scheduledBackupDone(ctx context.Context, scheduled string, d time.Duration) (string, error) {
	if name, ok := e.scheduled[scheduled]; ok {
		return name + ", seen by an earlier row", nil
	}
	var last string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		l, err := e.s.Apply.Dynamic().Resource(backups).Namespace(namespace).List(ctx,
			metav1.ListOptions{LabelSelector: "cnpg.io/scheduled-backup=" + scheduled})
		if err == nil {
			last = fmt.Sprintf("%d backups", len(l.Items))
			for _, b := range l.Items {
				phase, _, _ := unstructured.NestedString(b.Object, "status", "phase")
				last += ", " + b.GetName() + " " + phase
				if phase == "completed" {
					if e.scheduled == nil {
						e.scheduled = map[string]string{}
					}
					e.scheduled[scheduled] = b.GetName()
					return b.GetName(), nil
				}
			}
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("ScheduledBackup %s: no completed backup within %s (%s)", scheduled, d, last)
}

// waitBackup waits until a Backup completes, and fails at once when it fails (Applier.Wait would wait on).
func (e *env) waitBackup(ctx context.Context, name string, d time.Duration) (*unstructured.Unstructured, error) {
	var phase string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		b, err := e.s.Apply.Dynamic().Resource(backups).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			phase, _, _ = unstructured.NestedString(b.Object, "status", "phase")
			switch phase {
			case "completed":
				return b, nil
			case "failed":
				msg, _, _ := unstructured.NestedString(b.Object, "status", "error")
				return nil, fmt.Errorf("backup %s failed: %s", name, msg)
			}
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("backup %s not completed within %s (phase %q)", name, d, phase)
}

// waitArchived waits until the primary has archived segment seg (or a later one).
func (e *env) waitArchived(ctx context.Context, pod, seg string, d time.Duration) error {
	var last string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		out, err := e.psql(ctx, pod, "postgres", "select coalesce(last_archived_wal, '') from pg_stat_archiver")
		if err == nil {
			last = out
			// Same length, timeline first: a later segment (or timeline) sorts after.
			if len(out) == len(seg) && out >= seg {
				return nil
			}
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: segment %s not archived within %s (last archived %q)", pod, seg, d, last)
}

// psql runs one statement in a pod's PostgreSQL (as postgres, over its socket) and returns the output,
// unaligned, tuples only, trimmed.
func (e *env) psql(ctx context.Context, pod, db, sql string) (string, error) {
	out, err := e.kubectl(ctx, "kubectl", "exec", "-n", namespace, pod, "-c", "postgres", "--",
		"psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", db, "-tAc", sql)
	return strings.TrimSpace(out), err
}

func lines(s string) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			m[l] = true
		}
	}
	return m
}

// diff counts the members of want missing from got, and those of got not in want.
func diff(want, got map[string]bool) (missing, extra int) {
	for k := range want {
		if !got[k] {
			missing++
		}
	}
	for k := range got {
		if !want[k] {
			extra++
		}
	}
	return missing, extra
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	return n
}
