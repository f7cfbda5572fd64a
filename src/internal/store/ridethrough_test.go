package store

import (
	"context"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// TestCreateRidesThroughAShortOutage: store-db down for a second (a switchover's length) while purchases
// arrive — each waits and is created once it is back, with and without an idempotency key; down for longer
// than the ride-through, a purchase fails (the 503 + Retry-After of the API) instead of holding its client.
func TestCreateRidesThroughAShortOutage(t *testing.T) {
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
	const rideThrough = 3 * time.Second
	repo.SetRideThrough(rideThrough)
	if _, _, err := repo.Create(ctx, sampleIn("warm-up")); err != nil {
		t.Fatal(err)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		p       Purchase
		created bool
		err     error
	}
	results := make(chan result, 2)
	for _, key := range []string{"during-outage", ""} {
		go func() {
			in := sampleIn(key)
			p, created, err := repo.Create(ctx, in)
			results <- result{p, created, err}
		}()
	}
	time.Sleep(time.Second)
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := <-results
		if r.err != nil || !r.created {
			t.Fatalf("a purchase during a 1 s outage: created=%v err %v", r.created, r.err)
		}
		if _, err := repo.Get(ctx, r.p.ID); err != nil {
			t.Fatalf("purchase %s answered but not stored: %v", r.p.ID, err)
		}
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err = repo.Create(ctx, sampleIn("long-outage"))
	took := time.Since(start)
	if err == nil {
		t.Fatal("a purchase succeeded with store-db down")
	}
	if took < rideThrough*9/10 || took > rideThrough+5*time.Second {
		t.Fatalf("a purchase with store-db down failed after %v, want about the ride-through (%v)", took, rideThrough)
	}
}
