package store

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
)

// TestConcurrentCompletesAreGroupCommitted: 100 concurrent Complete calls and 10 CompleteBatch calls of 10
// (a relay's sends and batches finishing together, coalesced into shared statements) each record their own
// outcomes exactly once and empty the outbox.
func TestConcurrentCompletesAreGroupCommitted(t *testing.T) {
	for _, mode := range []string{"", "simple_protocol"} { // the default, and PgBouncer's transaction mode
		t.Run("mode="+mode, func(t *testing.T) { testConcurrentCompletes(t, mode) })
	}
}

func testConcurrentCompletes(t *testing.T, mode string) {
	db, err := postgres.Open(postgres.Config{URL: pgtest.NewDatabase(t), MaxConns: 20, QueryExecMode: mode})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	if _, err := postgres.Migrate(context.Background(), sqlDB, Migrations(), MigrationLockID,
		slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	repo := NewRepository(db, "store-test")
	ctx := context.Background()
	const n = 200
	var purchases []Purchase
	for range n {
		p, _, err := repo.Create(ctx, NewPurchase{AccountID: "ACC-000001", Amount: 10, Currency: "EUR",
			Source: SourceAPI})
		if err != nil {
			t.Fatal(err)
		}
		purchases = append(purchases, p)
	}
	var wg sync.WaitGroup
	processed := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	decision := func(i int) Decision {
		res := payment.Result{ID: purchases[i].ID, Status: payment.StatusApproved, ProcessedAt: processed}
		if i%2 == 1 {
			res.Status, res.Reason = payment.StatusDeclined, payment.ReasonInsufficientFunds
		}
		return Decision{ID: purchases[i].ID, Result: res}
	}
	// The first half one by one (Complete), the second in groups of 10 (CompleteBatch: a batch's answers),
	// all at once.
	for i := range n / 2 {
		wg.Go(func() {
			d := decision(i)
			if err := repo.Complete(ctx, d.ID, d.Result); err != nil {
				t.Error(err)
			}
		})
	}
	for g := n / 2; g < n; g += 10 {
		wg.Go(func() {
			var ds []Decision
			for i := g; i < g+10; i++ {
				ds = append(ds, decision(i))
			}
			if err := repo.CompleteBatch(ctx, ds); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if left := count(t, db, "outbox"); left != 0 {
		t.Fatalf("%d outbox rows left", left)
	}
	for i, p := range purchases {
		got, err := repo.Get(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		want, reason := StatusApproved, payment.ReasonNone
		if i%2 == 1 {
			want, reason = StatusDeclined, payment.ReasonInsufficientFunds
		}
		if got.Status != want || got.Reason != reason || got.Attempts != 1 || got.ProcessedAt == nil ||
			!got.ProcessedAt.Equal(processed) || got.CompletedAt == nil {
			t.Fatalf("purchase %d: %+v", i, got)
		}
	}
	// A later recording of the same decision changes nothing (status is no longer pending).
	if err := repo.Complete(ctx, purchases[0].ID, payment.Result{ID: purchases[0].ID,
		Status: payment.StatusDeclined, Reason: payment.ReasonUnknownAccount}); err != nil {
		t.Fatal(err)
	}
	if got, _ := repo.Get(ctx, purchases[0].ID); got.Status != StatusApproved || got.Attempts != 1 {
		t.Fatalf("second recording changed %+v", got)
	}
}
