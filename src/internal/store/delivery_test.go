package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// TestRedriveMakesDeadLettersPendingOnce: a redrive by id makes that dead letter pending again with a new
// outbox row and a redrives row, and leaves every other purchase alone; redriving it again changes nothing;
// --all takes the rest; an unknown id is ErrNotFound. Backlog counts the dead letters throughout.
func TestRedriveMakesDeadLettersPendingOnce(t *testing.T) {
	repo, db := newRepo(t)
	ctx := context.Background()
	var ps []Purchase
	for range 3 {
		p, _, err := repo.Create(ctx, sampleIn(""))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if _, err := repo.Claim(ctx, "relay", 3, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps[:2] {
		if err := repo.Reject(ctx, p.ID, payment.CodeInvalidRequest, "bad"); err != nil {
			t.Fatal(err)
		}
	}
	dead := func(want int64) {
		t.Helper()
		if b, err := repo.Backlog(ctx); err != nil || b.DeadLetters != want {
			t.Fatalf("backlog %+v %v, want %d dead letters", b, err, want)
		}
	}
	dead(2)
	done, err := repo.Redrive(ctx, &ps[0].ID)
	if err != nil || len(done) != 1 || done[0].ID != ps[0].ID || done[0].ErrorCode != payment.CodeInvalidRequest ||
		done[0].LastError != "bad" {
		t.Fatalf("redrive by id: %+v %v", done, err)
	}
	dead(1)
	got, _ := repo.Get(ctx, ps[0].ID)
	if got.Status != StatusPending || got.ErrorCode != "" || got.CompletedAt != nil || got.Attempts != 1 ||
		got.NextAttemptAt == nil {
		t.Fatalf("redriven purchase %+v", got)
	}
	if again, err := repo.Redrive(ctx, &ps[0].ID); err != nil || len(again) != 0 {
		t.Fatalf("second redrive of the same id: %+v %v", again, err)
	}
	if pending, err := repo.Redrive(ctx, &ps[2].ID); err != nil || len(pending) != 0 {
		t.Fatalf("redrive of a pending purchase: %+v %v", pending, err)
	}
	if _, err := repo.Redrive(ctx, new(uuid.New())); !errors.Is(err, ErrNotFound) {
		t.Fatalf("redrive of an unknown id: %v", err)
	}
	all, err := repo.Redrive(ctx, nil)
	if err != nil || len(all) != 1 || all[0].ID != ps[1].ID {
		t.Fatalf("redrive --all: %+v %v", all, err)
	}
	dead(0)
	var history int64
	if err := db.Raw(`SELECT count(*) FROM redrives`).Scan(&history).Error; err != nil || history != 2 {
		t.Fatalf("%d redrives recorded (%v), want 2", history, err)
	}
	claims, err := repo.Claim(ctx, "relay", 10, time.Minute)
	if err != nil || len(claims) != 2 {
		t.Fatalf("the redriven purchases are due again: %+v %v", claims, err)
	}
}

// TestBacklogAgeIsTheDatabasesClock: a Store whose clock runs an hour behind the database must not report a
// purchase created now as an hour old (nor one whose clock runs ahead as 0 s for an hour): the outbox's age
// is measured by the database's clock alone.
func TestBacklogAgeIsTheDatabasesClock(t *testing.T) {
	for _, skew := range []time.Duration{-time.Hour, time.Hour} {
		repo, _ := newRepo(t)
		repo.now = func() time.Time { return time.Now().Add(skew) }
		if _, _, err := repo.Create(context.Background(), sampleIn("")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		b, err := repo.Backlog(context.Background())
		if err != nil || b.Size != 1 || b.OldestAge < 200*time.Millisecond || b.OldestAge > time.Minute {
			t.Fatalf("clock skewed by %s: backlog %+v %v, want an age of about 0.2 s", skew, b, err)
		}
	}
}
