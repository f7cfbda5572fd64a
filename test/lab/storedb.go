package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// storeStandbyName is the application_name of store-db's synchronous standby.
const storeStandbyName = "store-db-standby"

// startStoreDB starts store-db as CloudNativePG runs it: a primary whose every commit waits for a
// synchronous standby (`synchronous_standby_names = 'ANY 1 (…)'`, synchronous_commit on), the standby
// streaming from it. The lab's "standby gone" fault pauses the standby's processes: commits on the primary
// then wait until it returns.
func startStoreDB(ctx context.Context, dir string) (primary, standby *pglocal.Server, err error) {
	settings := pgSettings(map[string]string{
		"synchronous_commit":          "on",
		"wal_retrieve_retry_interval": "500ms",
		"wal_receiver_timeout":        "10s",
		"wal_sender_timeout":          "10s",
	})
	primary, err = pglocal.Start(ctx, pglocal.Options{Dir: filepath.Join(dir, "store-db"), Settings: settings})
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*pglocal.Server, *pglocal.Server, error) {
		if standby != nil {
			stopPG(standby)
		}
		stopPG(primary)
		return nil, nil, err
	}
	if err := primary.Exec(ctx, "postgres", "CREATE DATABASE store"); err != nil { // before: it would wait
		return fail(err)
	}
	for _, sql := range []string{
		`ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 ("` + storeStandbyName + `")'`,
		"SELECT pg_reload_conf()",
	} {
		if err := primary.Exec(ctx, "postgres", sql); err != nil {
			return fail(err)
		}
	}
	standby, err = primary.Standby(ctx, storeStandbyName, pglocal.Options{
		Dir: filepath.Join(dir, storeStandbyName), Settings: settings})
	if err != nil {
		return fail(err)
	}
	if err := waitSyncStandby(ctx, primary, storeStandbyName, 30*time.Second); err != nil {
		return fail(err)
	}
	return primary, standby, nil
}

// waitSyncStandby waits until primary streams to the standby called name as a synchronous one.
func waitSyncStandby(ctx context.Context, primary *pglocal.Server, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var st string
	for {
		st = ""
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if conn, err := pgx.Connect(cctx, primary.DSN("postgres")); err == nil {
			_ = conn.QueryRow(cctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 "+
				"AND state = 'streaming'", name).Scan(&st)
			_ = conn.Close(cctx)
		}
		cancel()
		if st == "quorum" || st == "sync" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("standby %s not streaming synchronously after %s (state %q); see %s", name, timeout,
				st, primary.LogFile())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
