package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
	"github.com/txmesh/txmesh/src/localenv/proc"
)

// Topology names.
const (
	topoSync   = "sync"   // a primary with one synchronous standby (ANY 1, remote flush), as the CNPG clusters
	topoSingle = "single" // a single primary
)

func topologyLabel(name string) string {
	if name == topoSync {
		return "primary + sync standby"
	}
	return "single primary"
}

// cluster is one throwaway PostgreSQL "cluster": a primary and, for topoSync, a synchronous standby.
type cluster struct {
	topology string
	primary  *pglocal.Server
	standby  *pglocal.Server
	pids     []int // postmasters, for CPU accounting
}

// serverSettings are the settings both contenders run on. fsync and full_page_writes are on unless the caller
// asks otherwise (pglocal's test defaults turn them off); checkpoints happen where the benchmark asks for
// them (before every measured phase) rather than on a timer in the middle of one; track_commit_timestamp
// gives the Bank's commit time for the end-to-end latency.
func serverSettings(fsync bool) map[string]string {
	onOff := map[bool]string{true: "on", false: "off"}[fsync]
	return map[string]string{
		"fsync":                  onOff,
		"full_page_writes":       onOff,
		"synchronous_commit":     "on",
		"track_commit_timestamp": "on",
		"checkpoint_timeout":     "30min",
		"max_wal_size":           "4GB",
		"shared_buffers":         "128MB",
	}
}

func startCluster(ctx context.Context, dir, topology string, fsync, pgStats bool) (*cluster, error) {
	settings := serverSettings(fsync)
	if pgStats {
		settings["shared_preload_libraries"] = "pg_stat_statements"
		settings["pg_stat_statements.track"] = "all"
	}
	p, err := pglocal.Start(ctx, pglocal.Options{Dir: mkdir(dir, "pg-"), Settings: settings})
	if err != nil {
		return nil, fmt.Errorf("start primary: %w", err)
	}
	c := &cluster{topology: topology, primary: p}
	if topology == topoSync {
		if c.standby, err = p.Standby(ctx, "standby1", pglocal.Options{Dir: mkdir(dir, "pg-"), Settings: settings}); err != nil {
			c.Close()
			return nil, fmt.Errorf("start standby: %w", err)
		}
		// CNPG's `synchronous: {method: any, number: 1}` with synchronous_commit = on (remote flush).
		for _, q := range []string{`ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (standby1)'`,
			`SELECT pg_reload_conf()`} {
			if err := p.Exec(ctx, "postgres", q); err != nil {
				c.Close()
				return nil, err
			}
		}
		if err := c.waitSync(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, s := range []*pglocal.Server{c.primary, c.standby} {
		if s != nil {
			c.pids = append(c.pids, s.PID())
		}
	}
	return c, nil
}

// mkdir returns a new directory path under dir (pglocal creates it).
func mkdir(dir, prefix string) string {
	d, err := os.MkdirTemp(dir, prefix)
	if err != nil {
		return "" // pglocal makes its own temporary directory
	}
	_ = os.Remove(d)
	return d
}

func (c *cluster) waitSync(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.primary.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var state string
		err := conn.QueryRow(ctx, `SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'`).
			Scan(&state)
		if err == nil && (state == "quorum" || state == "sync") {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("standby not synchronous after 30s: %w", err)
			}
			return fmt.Errorf("standby not synchronous after 30s (state %q)", state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cpu is the CPU time of every PostgreSQL process of the cluster (standby included), in seconds.
func (c *cluster) cpu() float64 { return treeCPU(c.pids...) }

func (c *cluster) Close() {
	if c.standby != nil {
		_ = c.standby.Close()
	}
	if c.primary != nil {
		_ = c.primary.Close()
	}
}

// createBankDB creates database name, applies the Bank's migrations with the Bank's own `bank migrate`, and
// seeds accounts "1" … "n" (valid Bank account ids that pgbench can draw as integers) with a balance no
// benchmark can exhaust, so every transaction is an approval that debits.
func (c *cluster) createBankDB(ctx context.Context, bankBin, name string, accounts int) (string, error) {
	if err := c.primary.CreateDatabase(ctx, name); err != nil {
		return "", err
	}
	dsn := c.primary.DSN(name)
	if _, err := proc.Run(ctx, proc.Spec{Name: "bank migrate", Path: bankBin, Args: []string{"migrate"},
		Env: []string{"DATABASE_URL=" + dsn, "LOG_LEVEL=warn"}}); err != nil {
		return "", err
	}
	if err := c.primary.Exec(ctx, name, `
INSERT INTO accounts (id, currency, balance, initial_balance)
SELECT g::text, 'EUR', 1000000000000000, 1000000000000000 FROM generate_series(1, `+strconv.Itoa(accounts)+`) AS g`); err != nil {
		return "", fmt.Errorf("seed accounts: %w", err)
	}
	return dsn, nil
}

// settle runs before every measured phase: the same starting point for each contender (statistics fresh,
// dirty pages flushed, so neither pays for the other's checkpoint).
func (c *cluster) settle(ctx context.Context, db string) error {
	for _, q := range []string{"VACUUM ANALYZE", "CHECKPOINT"} {
		if err := c.primary.Exec(ctx, db, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if c.standby != nil {
		if err := c.standby.Exec(ctx, db, "CHECKPOINT"); err != nil {
			return fmt.Errorf("standby CHECKPOINT: %w", err)
		}
	}
	return nil
}

// topStatements returns db's most expensive statements by total execution time (needs -pg-stats).
func (c *cluster) topStatements(ctx context.Context, db string, n int) (string, error) {
	conn, err := pgx.Connect(ctx, c.primary.DSN(db))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return "", err
	}
	rows, err := conn.Query(ctx, `
SELECT calls, rows, round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 3),
       wal_records, regexp_replace(left(query, 110), '\s+', ' ', 'g')
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname = $1 ORDER BY total_exec_time DESC LIMIT $2`, db, n)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%10s %10s %10s %9s %10s  %s\n", "calls", "rows", "total ms", "mean ms", "wal recs", "query")
	for rows.Next() {
		var calls, nrows, walRecs int64
		var total, mean float64
		var q string
		if err := rows.Scan(&calls, &nrows, &total, &mean, &walRecs, &q); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%10d %10d %10.0f %9.3f %10d  %s\n", calls, nrows, total, mean, walRecs, q)
	}
	return b.String(), rows.Err()
}

// resetStatements clears pg_stat_statements (needs -pg-stats).
func (c *cluster) resetStatements(ctx context.Context, db string) error {
	if err := c.primary.Exec(ctx, db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return err
	}
	return c.primary.Exec(ctx, db, "SELECT pg_stat_statements_reset()")
}
