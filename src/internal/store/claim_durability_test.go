package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// TestNothingUnreplicatedLeavesTheStore runs on its own server, cut off from its synchronous standby (it
// never connects): a purchase's commit waits for it, and one whose wait is cancelled (its 202 never sent)
// is visible on the primary anyway — "committed locally". Neither that purchase nor any other may leave the
// Store while no standby confirms it: the relay's claim must not hand it out (the Bank would record a
// purchase a failover then removes from the Store: "unknown"), and a replay of its key must not answer 202.
// Once the standby is back, both proceed.
func TestNothingUnreplicatedLeavesTheStore(t *testing.T) {
	ctx := context.Background()
	srv, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.CreateDatabase(ctx, "store"); err != nil {
		t.Fatal(err)
	}
	repo := NewRepository(openDB(t, srv.DSN("store")), "store-test")
	before, _, err := repo.Create(ctx, sampleIn("before-isolation"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.IsolateFromStandby(ctx); err != nil {
		t.Fatal(err)
	}

	// A purchase whose commit waits for the absent standby until its deadline: the caller gets an error.
	const wait = time.Second
	cctx, cancel := context.WithTimeout(ctx, wait)
	start := time.Now()
	_, _, err = repo.Create(cctx, sampleIn("during-isolation"))
	cancel()
	if took := time.Since(start); err == nil || took < wait*9/10 {
		t.Fatalf("control: a purchase committed in %v with its synchronous standby absent (err %v)", took, err)
	}
	// ... and yet it is there, on this primary only, once the server has processed the cancellation.
	var visible int
	for deadline := time.Now().Add(10 * time.Second); visible == 0 && time.Now().Before(deadline); {
		if err := repo.db.Raw("SELECT count(*) FROM purchases WHERE idempotency_key = 'during-isolation'").
			Scan(&visible).Error; err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if visible != 1 {
		t.Fatalf("control: the cancelled commit is not visible (count %d): this test would prove nothing", visible)
	}

	// The failed claim is committed locally too: its lease (short here) holds the rows until it ends.
	const lease = 300 * time.Millisecond
	cctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	claims, err := repo.Claim(cctx, "relay-1", 10, lease)
	cancel()
	if err == nil {
		t.Fatalf("a claim succeeded without the synchronous standby, handing out %d purchases", len(claims))
	}
	cctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	_, created, err := repo.Create(cctx, sampleIn("during-isolation"))
	cancel()
	if err == nil {
		t.Fatalf("a replay of the unreplicated purchase's key answered (created=%v) without the standby", created)
	}

	if err := srv.ReconnectStandby(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(lease)
	claims, err = repo.Claim(ctx, "relay-1", 10, time.Minute)
	if err != nil {
		t.Fatalf("claim with the standby back: %v", err)
	}
	ids := make([]uuid.UUID, len(claims))
	for i, c := range claims {
		ids[i] = c.Tx.ID
	}
	if len(ids) != 2 || !slices.Contains(ids, before.ID) {
		t.Fatalf("claimed %v with the standby back, want both purchases (one of them %s)", ids, before.ID)
	}
	p, created, err := repo.Create(ctx, sampleIn("during-isolation"))
	if err != nil || created || !slices.Contains(ids, p.ID) {
		t.Fatalf("replay with the standby back: %v created=%v id %s, want the existing purchase", err, created, p.ID)
	}
}
