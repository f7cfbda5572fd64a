package pglocal

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func query[T any](t *testing.T, ctx context.Context, s *Server, sql string) T {
	t.Helper()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v T
	if err := c.QueryRow(ctx, sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFailoverAndRewind is what the HA lab does to bank-db: a synchronous standby, kill -9 of the primary,
// promotion, and the old primary re-joined as a standby of the new one with pg_rewind.
func TestFailoverAndRewind(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two PostgreSQL servers")
	}
	ctx := context.Background()
	settings := map[string]string{"wal_log_hints": "on", "full_page_writes": "on",
		"wal_retrieve_retry_interval": "200ms"}
	a, err := Start(ctx, Options{Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Exec(ctx, "postgres", `ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 ("a", "b")'`); err != nil {
		t.Fatal(err)
	}
	if err := a.Exec(ctx, "postgres", "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	b, err := a.Standby(ctx, "b", Options{Settings: settings, Upstream: a.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitFor(t, "b streaming synchronously", func() bool {
		return query[int](t, ctx, a, "SELECT count(*)::int FROM pg_stat_replication WHERE application_name = 'b' "+
			"AND sync_state = 'quorum'") == 1
	})
	if err := a.Exec(ctx, "postgres", "CREATE TABLE t AS SELECT 1 AS x"); err != nil {
		t.Fatal(err)
	}
	// Acknowledged by a synchronous commit: b has it.
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	// Kill took the backends with the postmaster, the walsender that served b among them.
	waitFor(t, "a's processes gone", func() bool { return len(serverProcesses(a.dataDir)) == 0 })
	if err := b.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if n := query[int](t, ctx, b, "SELECT count(*)::int FROM t"); n != 1 {
		t.Fatalf("promoted standby has %d rows, want 1", n)
	}
	if err := a.Rewind(ctx, b, "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := a.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if !query[bool](t, ctx, a, "SELECT pg_is_in_recovery()") {
		t.Fatal("re-joined server is not a standby")
	}
	// b requires a synchronous standby (the setting came with the base backup): this commit waits for a.
	if err := b.Exec(ctx, "postgres", "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a replaying b", func() bool { return query[int](t, ctx, a, "SELECT count(*)::int FROM t") == 2 })
}

// TestPauseResume: a paused server answers nothing, not even on a connection opened before (its backend is
// frozen as well, though backends leave the postmaster's process group); Resume brings it back, and a paused
// server still stops cleanly.
func TestPauseResume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	ctx := context.Background()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	var one int
	err = c.QueryRow(qctx, "SELECT 1").Scan(&one)
	cancel()
	if err == nil {
		t.Fatal("a paused server answered on a connection opened before the pause")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if n := query[int](t, ctx, s, "SELECT 1"); n != 1 {
		t.Fatalf("after Resume: SELECT 1 = %d", n)
	}
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.pm.Load().Err(); err != nil {
		t.Fatalf("a paused server did not shut down cleanly: postmaster %v", err)
	}
}
