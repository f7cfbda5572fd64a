package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// objectstore-outage: the backups' object store down under load (its host daemon killed: every request
// refused), as production's object storage can be. Nothing waits on the archive, so clients see nothing (no
// 5xx, no failure); each primary's archiving fails (a segment closed right after the stop, pg_switch_wal, so
// that the archiver tries at once instead of at archive_timeout), both Clusters report ContinuousArchiving
// False and DatabaseWALArchivingFailing fires for both, while the store is down. The store back, each primary
// archives what waited by itself (the archiver retries every minute): the segment closed in the outage is
// archived and no segment is left ready.
var objectstoreOutage = scenario{
	name: "objectstore-outage",
	fault: "the backups' object store down under load until DatabaseWALArchivingFailing fires for both databases; " +
		"back: the archive catches up by itself",
	needs:          []string{"backups"},
	noClientErrors: true,
	alerts:         []string{archivingAlert},
	run:            objectstoreOutageRun,
}

const archivingAlert = "DatabaseWALArchivingFailing"

// archiveFailing is true on a primary whose last archive attempt failed (pg_stat_archiver's view of what the
// alert reads from the exporter).
const archiveFailing = "select coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false) || ' ' || " +
	"coalesce(last_failed_wal, '') from pg_stat_archiver"

func objectstoreOutageRun(ctx context.Context, e *env, r *Row) error {
	dbs := []string{"bank-db", "store-db"}
	for _, db := range dbs {
		if err := e.waitClusterConditionStatus(ctx, db, "ContinuousArchiving", "True", 3*time.Minute); err != nil {
			return err
		}
	}
	if err := e.s.StopObjectStore(); err != nil {
		return err
	}
	down := time.Now()
	restarted := false
	defer func() {
		if !restarted { // a failed row leaves the store running for the next
			if err := e.s.StartObjectStore(context.WithoutCancel(ctx)); err != nil {
				e.logf("objectstore-outage: the object store did not restart: %v", err)
			}
		}
	}()
	e.logf("objectstore-outage: object store stopped")

	closed := map[string]string{} // cluster → the segment closed in the outage
	lsn := map[string]string{}    // cluster → its WAL position then
	for _, db := range dbs {
		p, err := e.primary(ctx, db)
		if err != nil {
			return err
		}
		out, err := e.psql(ctx, p.Pod, "postgres", "select pg_walfile_name(pg_switch_wal()) || ' ' || pg_current_wal_lsn()")
		if err != nil {
			return err
		}
		closed[db], lsn[db], _ = strings.Cut(out, " ")
	}
	for _, db := range dbs {
		p, err := e.primary(ctx, db)
		if err != nil {
			return err
		}
		failed, err := e.waitPSQL(ctx, p.Pod, "postgres", archiveFailing, func(out string) bool {
			return strings.HasPrefix(out, "true ")
		}, 2*time.Minute)
		if err != nil {
			return fmt.Errorf("%s: archiving did not fail with the object store down: %w", db, err)
		}
		r.Checks = append(r.Checks, fmt.Sprintf("%s: archiving failed %.0f s into the outage (%s, last failed %s)",
			db, time.Since(down).Seconds(), p.Pod, strings.TrimPrefix(failed, "true ")))
	}
	r.Times["archive_failing"] = time.Since(down).Seconds()
	for _, db := range dbs {
		if err := e.waitClusterConditionStatus(ctx, db, "ContinuousArchiving", "False", 2*time.Minute); err != nil {
			return err
		}
	}
	r.Checks = append(r.Checks, "bank-db and store-db report ContinuousArchiving False")

	// Down until the alert fires for both: its for is 2 minutes after the first failure.
	firing, err := e.waitAlertFiring(ctx, archivingAlert, dbs, 5*time.Minute)
	if err != nil {
		return err
	}
	r.Times["alert_firing"] = time.Since(down).Seconds()
	r.Checks = append(r.Checks, fmt.Sprintf("%s firing for %s %.0f s into the outage", archivingAlert,
		strings.Join(firing, " and "), r.Times["alert_firing"]))

	// What pg_wal keeps while nothing is archived: the WAL written since the stop, per minute.
	for _, db := range dbs {
		p, err := e.primary(ctx, db)
		if err != nil {
			return err
		}
		out, err := e.psql(ctx, p.Pod, "postgres", "select pg_wal_lsn_diff(pg_current_wal_lsn(), '"+lsn[db]+"')")
		if err != nil {
			return err
		}
		if b, err := strconv.ParseFloat(out, 64); err == nil {
			r.Checks = append(r.Checks, fmt.Sprintf("%s: %.1f MiB of WAL kept unarchived in %.0f s (%.2f MiB/min)",
				db, b/(1<<20), time.Since(down).Seconds(), b/(1<<20)/time.Since(down).Minutes()))
		}
	}
	if err := e.s.StartObjectStore(ctx); err != nil {
		return err
	}
	restarted = true
	back := time.Now()
	r.Times["outage"] = back.Sub(down).Seconds()
	e.logf("objectstore-outage: object store back after %.0f s", r.Times["outage"])

	for _, db := range dbs {
		p, err := e.primary(ctx, db)
		if err != nil {
			return err
		}
		if err := e.waitArchived(ctx, p.Pod, closed[db], 3*time.Minute); err != nil {
			return err
		}
		if _, err := e.waitPSQL(ctx, p.Pod, "postgres",
			"select count(*) from pg_ls_archive_statusdir() where name like '%.ready'",
			func(out string) bool { return out == "0" }, 2*time.Minute); err != nil {
			return fmt.Errorf("%s: segments still waiting to be archived: %w", db, err)
		}
		if err := e.waitClusterConditionStatus(ctx, db, "ContinuousArchiving", "True", 2*time.Minute); err != nil {
			return err
		}
		r.Checks = append(r.Checks, fmt.Sprintf("%s: %s archived, no segment left ready, ContinuousArchiving True, "+
			"%.0f s after the store was back", db, closed[db], time.Since(back).Seconds()))
	}
	r.Times["archive_caught_up"] = time.Since(back).Seconds()
	return nil
}

// waitPSQL runs sql on pod until ok accepts its answer, and returns that answer.
func (e *env) waitPSQL(ctx context.Context, pod, db, sql string, ok func(string) bool, d time.Duration) (string, error) {
	var last string
	var lastErr error
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		out, err := e.psql(ctx, pod, db, sql)
		if err == nil && ok(out) {
			return out, nil
		}
		last, lastErr = out, err
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return "", err
		}
	}
	if lastErr != nil {
		return "", fmt.Errorf("%s: %q not as awaited within %s: %w", pod, sql, d, lastErr)
	}
	return "", fmt.Errorf("%s: %q answered %q after %s", pod, sql, last, d)
}

// waitAlertFiring waits until the harness's Prometheus has alert firing for every one of clusters (its
// cluster label), and returns them.
func (e *env) waitAlertFiring(ctx context.Context, alert string, clusters []string, d time.Duration) ([]string, error) {
	q := fmt.Sprintf(`ALERTS{alertname=%q, alertstate="firing"}`, alert)
	var firing []string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		_, res, err := e.promQuery(ctx, q)
		if err == nil {
			firing = firing[:0]
			for _, s := range res.Data.Result {
				if c := s.Metric["cluster"]; slices.Contains(clusters, c) && !slices.Contains(firing, c) {
					firing = append(firing, c)
				}
			}
			if len(firing) == len(clusters) {
				slices.Sort(firing)
				return firing, nil
			}
		}
		if err := sleepCtx(ctx, evalInterval); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s firing for %v only, after %s (awaited: %v)", alert, firing, d, clusters)
}
