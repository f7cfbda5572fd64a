package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// Replication is how bank-db's standby follows its primary.
type Replication string

const (
	// Sync: synchronous_standby_names = 'ANY 1 (...)', synchronous_commit = on: a commit returns only once
	// the standby has flushed its WAL (CloudNativePG's `postgresql.synchronous` with dataDurability: required).
	Sync Replication = "sync"
	// Async: the negative control. Commits return as soon as the primary has them.
	Async Replication = "async"
)

// cluster is bank-db: two PostgreSQL instances, one primary and one streaming standby that reaches the
// primary through the `replication` fault proxy, and the `bank-db` proxy that plays CloudNativePG's
// `bank-db-rw` Service: a stable address the lab re-points at whichever instance is primary.
type cluster struct {
	mode     Replication
	settings map[string]string
	dir      string

	mu               sync.Mutex // guards the primary/standby swap for readers in other goroutines
	primary, standby *instance
	rw, repl         *netProxy
}

func (c *cluster) primaryName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.primary.name
}

type instance struct {
	name string // application_name, the name synchronous_standby_names lists
	srv  *pglocal.Server
}

// pgSettings are the lab's PostgreSQL settings on top of pglocal's defaults (fsync=off and
// full_page_writes=off among them), plus extra.
func pgSettings(extra map[string]string) map[string]string {
	s := map[string]string{"max_connections": "200", "wal_keep_size": "512MB"}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

// instanceSettings are bank-db's settings. fsync=off keeps the 2-core lab fast and stays honest: the faults
// are process crashes (kill -9), after which the data a killed server wrote is still in the page cache. What
// matters is what the standby received, and that goes through the replication proxy.
func instanceSettings() map[string]string {
	return pgSettings(map[string]string{
		"fsync":                       "off",
		"full_page_writes":            "on", // pg_rewind needs it on its source
		"wal_log_hints":               "on", // and this on its target
		"synchronous_commit":          "on",
		"wal_retrieve_retry_interval": "500ms",
		"wal_receiver_timeout":        "10s",
		"wal_sender_timeout":          "10s",
	})
}

// cloneStandby clones primary into dir (pg_basebackup through the replication proxy) and starts it as a streaming
// standby whose application_name is name.
func (c *cluster) cloneStandby(ctx context.Context, primary *pglocal.Server, dir, name string) (*pglocal.Server,
	error) {
	return primary.Standby(ctx, name, pglocal.Options{Dir: dir, Settings: c.settings, Upstream: c.repl.addr})
}

func startCluster(ctx context.Context, dir string, mode Replication, ps *proxies) (*cluster, error) {
	c := &cluster{mode: mode, settings: instanceSettings(), dir: dir}
	a, err := pglocal.Start(ctx, pglocal.Options{Dir: filepath.Join(dir, "bank-db-1"), Settings: c.settings})
	if err != nil {
		return nil, err
	}
	c.primary = &instance{name: "bank-db-1", srv: a}
	// Set with ALTER SYSTEM, not on the command line: the base backup carries it to the standby, which applies
	// it once promoted (the new primary then waits for its own synchronous standby: the old primary, re-joined).
	if err := a.Exec(ctx, "postgres", "CREATE DATABASE bank"); err != nil { // before: it would wait for a standby
		c.close()
		return nil, err
	}
	names := "''"
	if mode == Sync {
		names = `'ANY 1 ("bank-db-1", "bank-db-2")'`
	}
	for _, sql := range []string{"ALTER SYSTEM SET synchronous_standby_names = " + names, "SELECT pg_reload_conf()"} {
		if err := a.Exec(ctx, "postgres", sql); err != nil {
			c.close()
			return nil, err
		}
	}
	if c.repl, err = ps.add("replication", a.Addr()); err != nil {
		c.close()
		return nil, err
	}
	if c.rw, err = ps.add("bank-db-rw", a.Addr()); err != nil {
		c.close()
		return nil, err
	}
	b, err := c.cloneStandby(ctx, a, filepath.Join(dir, "bank-db-2"), "bank-db-2")
	if err != nil {
		c.close()
		return nil, err
	}
	c.standby = &instance{name: "bank-db-2", srv: b}
	if err := c.waitStreaming(ctx, 30*time.Second); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// dsn is what the Banks use: the stable rw address, and target_session_attrs=read-write so that a
// connection that lands on an instance still in recovery is refused rather than used.
func (c *cluster) dsn() string {
	return "postgres://" + pglocal.Superuser + "@" + c.rw.addr +
		"/bank?sslmode=disable&connect_timeout=2&target_session_attrs=read-write"
}

// primaryDSN reaches the current primary directly (seeding, audit).
func (c *cluster) primaryDSN() string { return c.primary.srv.DSN("bank") }

// syncState is the primary's view of its standby: "quorum"/"sync" (synchronous), "async", or "" (not
// streaming).
func (c *cluster) syncState(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.primary.srv.DSN("postgres"))
	if err != nil {
		return ""
	}
	defer conn.Close(ctx)
	var st string
	_ = conn.QueryRow(ctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 "+
		"AND state = 'streaming'", c.standby.name).Scan(&st)
	return st
}

func (c *cluster) waitStreaming(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := map[Replication][]string{Sync: {"quorum", "sync"}, Async: {"async"}}[c.mode]
	for {
		st := c.syncState(ctx)
		for _, w := range want {
			if st == w {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("standby %s not streaming as %v after %s (state %q); see %s", c.standby.name, want,
				timeout, st, c.standby.srv.LogFile())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// failover is what the lab measured during one primary failure.
type failover struct {
	Cut, Killed, Detected, Promoted, Repointed, Rejoined time.Time
	RejoinedBy                                           string // "pg_rewind" or "re-clone"
	Err                                                  error
}

// alive reports whether the instance accepts a connection within a short timeout.
func alive(ctx context.Context, s *pglocal.Server) bool {
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return false
	}
	_ = conn.Close(ctx)
	return true
}

// killPrimary is the database-node failure: kill -9 of the primary's postmaster.
func (c *cluster) killPrimary(f *failover) error {
	f.Killed = time.Now()
	return c.primary.srv.Kill()
}

// failover plays the operator (CloudNativePG's instance manager and controller): notice the primary is gone
// (three failed probes), promote the standby, point the rw proxy at it, then re-join the old primary as the
// new standby (pg_rewind; a fresh base backup when that fails), and wait until it streams.
func (c *cluster) failover(ctx context.Context, f *failover, logf func(string, ...any)) error {
	for fails := 0; fails < 3; {
		if alive(ctx, c.primary.srv) {
			fails = 0
		} else {
			fails++
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	f.Detected = time.Now()
	if err := c.standby.srv.Promote(ctx); err != nil {
		return fmt.Errorf("promote %s: %w", c.standby.name, err)
	}
	f.Promoted = time.Now()
	if err := c.rw.repoint(c.standby.srv.Addr()); err != nil {
		return err
	}
	f.Repointed = time.Now()
	logf("failover: %s promoted %.1fs after the kill; bank-db-rw → %s", c.standby.name,
		f.Promoted.Sub(f.Killed).Seconds(), c.standby.name)
	old, neu := c.primary, c.standby
	c.mu.Lock()
	c.primary, c.standby = neu, old
	c.mu.Unlock()
	if err := c.repl.repoint(neu.srv.Addr()); err != nil {
		return err
	}
	f.RejoinedBy = "pg_rewind"
	err := old.srv.Rewind(ctx, neu.srv, old.name, c.repl.addr)
	if err == nil {
		err = old.srv.Restart(ctx)
	}
	if err == nil {
		err = c.waitStreaming(ctx, 30*time.Second)
	}
	if err != nil {
		logf("failover: pg_rewind of %s failed (%v): re-cloning it from %s", old.name, err, neu.name)
		f.RejoinedBy = "re-clone"
		_ = old.srv.Kill() // if the rewound server runs; its directory stays for the logs
		srv, err := c.cloneStandby(ctx, neu.srv,
			filepath.Join(c.dir, fmt.Sprintf("%s-%d", old.name, time.Now().UnixNano())), old.name)
		if err != nil {
			return fmt.Errorf("re-clone %s: %w", old.name, err)
		}
		old.srv = srv
		if err := c.waitStreaming(ctx, 30*time.Second); err != nil {
			return err
		}
	}
	f.Rejoined = time.Now()
	logf("failover: %s re-joined as %s standby of %s by %s, %.1fs after the kill", old.name, c.mode, neu.name,
		f.RejoinedBy, f.Rejoined.Sub(f.Killed).Seconds())
	return nil
}

func (c *cluster) close() {
	for _, in := range []*instance{c.primary, c.standby} {
		if in != nil {
			stopPG(in.srv)
		}
	}
	for _, p := range []*netProxy{c.rw, c.repl} {
		if p != nil {
			p.close()
		}
	}
}

// stopPG shuts a server down if it runs. Unlike Close it keeps the directory: the run removes it, unless the
// data and logs are kept.
func stopPG(s *pglocal.Server) {
	if s.Running() {
		_ = s.Stop()
	}
}
