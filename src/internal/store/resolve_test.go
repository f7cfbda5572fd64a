package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// begin starts, on its own connection to dsn, a transaction that inserts one purchase with createSQL, and
// returns the connection and what insertBatch learns before COMMIT.
func begin(t *testing.T, dsn string) (*pgx.Conn, *uncertainCommit) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	id, _ := NewID()
	u := &uncertainCommit{}
	if err := c.QueryRow(ctx, createSQL, []string{id.String()}, []string{"ACC-000001"}, []int64{5},
		[]string{"EUR"}, []string{"api"}, []string{""}, []time.Time{time.Now()}, "store-test").
		Scan(&u.id, &u.xid, &u.pid); err != nil {
		t.Fatal(err)
	}
	return c, u
}

// TestResolveCommitOutcome: resolve, on real PostgreSQL, for each state a COMMIT that failed unanswered can
// leave: committed → committed; rolled back → not; a transaction whose COMMIT never arrived (idle in it) →
// its backend is terminated, not committed; an id the server never assigned → not; and a commit waiting for
// an absent synchronous standby — committed in the commit log yet invisible — → its backend is terminated,
// the commit stands on the primary: committed. Each answer is known well within its deadline.
func TestResolveCommitOutcome(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	repo := NewRepository(openDB(t, dsn), "store-test")
	resolve := func(u *uncertainCommit) (bool, bool) {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return repo.resolve(rctx, u)
	}

	c, u := begin(t, dsn)
	if _, err := c.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if committed, known := resolve(u); !committed || !known {
		t.Fatalf("committed: resolved committed=%v known=%v", committed, known)
	}

	c, u = begin(t, dsn)
	if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if committed, known := resolve(u); committed || !known {
		t.Fatalf("rolled back: resolved committed=%v known=%v", committed, known)
	}

	_, u = begin(t, dsn) // its COMMIT never arrives
	if committed, known := resolve(u); committed || !known {
		t.Fatalf("idle in transaction: resolved committed=%v known=%v", committed, known)
	}
	if _, err := repo.Get(ctx, uuid.MustParse(u.id)); err == nil {
		t.Fatal("the purchase of a transaction resolved not committed exists")
	}

	future := &uncertainCommit{xid: "4000000000", pid: 1, id: uuid.NewString()}
	if committed, known := resolve(future); committed || !known {
		t.Fatalf("an id never assigned: resolved committed=%v known=%v", committed, known)
	}

	srv, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.CreateDatabase(ctx, "store"); err != nil {
		t.Fatal(err)
	}
	isolated := NewRepository(openDB(t, srv.DSN("store")), "store-test")
	if err := srv.IsolateFromStandby(ctx); err != nil {
		t.Fatal(err)
	}
	c, u = begin(t, srv.DSN("store"))
	commitErr := make(chan error, 1)
	go func() { _, err := c.Exec(context.Background(), "COMMIT"); commitErr <- err }()
	waitForSyncRep(t, srv)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	committed, known := isolated.resolve(rctx, u)
	cancel()
	if !committed || !known {
		t.Fatalf("waiting for the standby: resolved committed=%v known=%v", committed, known)
	}
	if err := <-commitErr; err == nil {
		t.Fatal("the COMMIT of a terminated backend answered success")
	}
	if _, err := isolated.Get(ctx, uuid.MustParse(u.id)); err != nil {
		t.Fatalf("resolved committed, but: %v", err)
	}
}
