package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// TestMain stops the shared server pgtest starts for the tests that need no server of their own.
func TestMain(m *testing.M) { pgtest.Main(m) }

var oneMigration = fstest.MapFS{"00001_t.sql": {Data: []byte(
	"-- +goose Up\nCREATE TABLE t (id int PRIMARY KEY);\n-- +goose Down\nDROP TABLE t;\n")}}

// syncBuffer is a log destination written by MigrateDB's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMigrateDBWaitsForTheDatabase: a service starting while its database is down (restarting, failing
// over) opens its pool, waits in MigrateDB and migrates once the database is back, instead of exiting.
func TestMigrateDBWaitsForTheDatabase(t *testing.T) {
	ctx := context.Background()
	srv, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.Exec(ctx, "postgres", "CREATE DATABASE app"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}

	db, err := postgres.Open(postgres.Config{URL: srv.DSN("app"), MaxConns: 2})
	if err != nil {
		t.Fatalf("Open with the database down: %v (a service must start and wait, not exit)", err)
	}
	t.Cleanup(func() { postgres.Close(db) })
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	done := make(chan error, 1)
	go func() { done <- postgres.MigrateDB(ctx, db, oneMigration, 42, log) }()

	// Down for a while: MigrateDB keeps waiting and says so.
	select {
	case err := <-done:
		t.Fatalf("MigrateDB returned while the database was down: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	if !strings.Contains(logs.String(), "database unavailable at start") {
		t.Fatalf("no retry logged while waiting:\n%s", logs.String())
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("MigrateDB after the database came back: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("MigrateDB still waiting 30s after the database came back")
	}
	var n int
	if err := db.Raw("SELECT count(*) FROM t").Scan(&n).Error; err != nil {
		t.Fatalf("the migration was not applied: %v", err)
	}
}

// TestMigrateDBStopsWaitingWithItsContext: SIGTERM during the wait ends it.
func TestMigrateDBStopsWaitingWithItsContext(t *testing.T) {
	db, err := postgres.Open(postgres.Config{URL: "postgres://u@127.0.0.1:1/none?sslmode=disable", MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { postgres.Close(db) })
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = postgres.MigrateDB(ctx, db, oneMigration, 42, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("MigrateDB succeeded against a closed port")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("MigrateDB returned %v after its context ended (%v)", took, err)
	}
	if !postgres.Unavailable(err) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v: want the database failure that kept it waiting", err)
	}
}

// TestMigrateDBFailsFastOnABadMigration: only unavailability is waited for; a broken migration is an error.
func TestMigrateDBFailsFastOnABadMigration(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(postgres.Config{URL: pgtest.NewDatabase(t), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { postgres.Close(db) })
	bad := fstest.MapFS{"00001_bad.sql": {Data: []byte("-- +goose Up\nCREATE TABLEX t (id int);\n")}}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := postgres.MigrateDB(cctx, db, bad, 43, slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("MigrateDB with a syntax error: %v, want the syntax error", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a broken migration took %v to fail: it was retried as if the database were down", took)
	}
}
