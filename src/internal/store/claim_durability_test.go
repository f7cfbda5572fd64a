package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// TestClaimDoesNotWaitForSynchronousStandby runs on its own server whose synchronous standby never
// connects, so every commit that waits for it waits forever: a purchase (its 202 promises durability)
// must wait, a claim (a lease, re-sendable) must not.
func TestClaimDoesNotWaitForSynchronousStandby(t *testing.T) {
	ctx := context.Background()
	srv, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.CreateDatabase(ctx, "store"); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, srv.DSN("store"))
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(1) // the claim and the purchases after it share one session
	repo := NewRepository(db, "store-test")
	before, _, err := repo.Create(ctx, sampleIn("before-standby-required"))
	if err != nil {
		t.Fatal(err)
	}

	for _, q := range []string{
		"CREATE TABLE sync_probe (i int)",
		"ALTER SYSTEM SET synchronous_standby_names = 'absent_standby'",
		"SELECT pg_reload_conf()",
	} {
		if err := srv.Exec(ctx, "postgres", q); err != nil {
			t.Fatal(err)
		}
	}
	// Backends see the new names at once, but commits start waiting only once the checkpointer has taken the
	// reload: wait until a probe commit blocks (it must write WAL: a commit without any does not wait).
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		began := time.Now()
		err := srv.Exec(pctx, "postgres", "INSERT INTO sync_probe VALUES (1)")
		cancel()
		if time.Since(began) >= 250*time.Millisecond { // a cancelled wait may still report success
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("commits still do not wait for the absent standby 10s after the reload (last err %v)", err)
		}
	}

	// Control: a purchase's commit now waits for the absent standby (else this test could not fail).
	const wait = time.Second
	cctx, cancel := context.WithTimeout(ctx, wait)
	start := time.Now()
	_, _, err = repo.Create(cctx, sampleIn("after-standby-required"))
	cancel()
	if took := time.Since(start); took < wait*9/10 {
		t.Fatalf("control: a purchase committed in %v with its synchronous standby absent (err %v)", took, err)
	}

	cctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start = time.Now()
	claims, err := repo.Claim(cctx, "relay-1", 10, time.Minute)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("claim with the synchronous standby absent: %v after %v", err, took)
	}
	// A claim that waited for the standby would wait until its context ends (an error above); this bound only
	// catches a partial wait, with room for a loaded machine.
	if took > 3*time.Second {
		t.Fatalf("claim took %v: it waited for the synchronous standby", took)
	}
	ids := make([]uuid.UUID, len(claims))
	for i, c := range claims {
		ids[i] = c.Tx.ID
	}
	if !slices.Contains(ids, before.ID) {
		t.Fatalf("claimed %v, want %v among them", ids, before.ID)
	}
	// The lease holds: the same rows are not handed out again. (The control purchase may be: its commit,
	// cancelled while waiting for the standby, is committed locally and becomes due whenever the cancellation
	// is processed, before or after the first claim.)
	again, err := repo.Claim(cctx, "relay-2", 10, time.Minute)
	if err != nil {
		t.Fatalf("second claim: %v", err)
	}
	for _, c := range again {
		if slices.Contains(ids, c.Tx.ID) {
			t.Fatalf("second claim handed out %s again; want none of the leased rows", c.Tx.ID)
		}
	}
	// set_config was local to the claim's transaction: on the same (only) connection, a purchase waits again.
	cctx2, cancel2 := context.WithTimeout(ctx, wait)
	defer cancel2()
	start = time.Now()
	_, _, err = repo.Create(cctx2, sampleIn("after-claim"))
	if took := time.Since(start); took < wait*9/10 {
		t.Fatalf("a purchase after the claim committed in %v without the standby (err %v): the claim's setting leaked",
			took, err)
	}
}
