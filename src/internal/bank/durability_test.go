package bank

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// TestNoReplayConfirmsAnUnreplicatedTransaction runs on its own server, cut off from its synchronous standby:
// a transaction whose commit wait is cancelled fails (a 503 for the relay) but is visible — committed
// locally, not replicated. A replay must not confirm it (the Store would record an outcome a failover then
// removes from the Bank: "lost"), whether the statement locked an account (approved) or not (unknown
// account), alone or in a batch. With the standby back, replays answer as always.
func TestNoReplayConfirmsAnUnreplicatedTransaction(t *testing.T) {
	ctx := context.Background()
	srv, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.CreateDatabase(ctx, "bank"); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(postgres.Config{URL: srv.DSN("bank"), MaxConns: 5})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	if _, err := postgres.Migrate(ctx, sqlDB, Migrations(), MigrationLockID, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := Seed(ctx, db, 1, 1000, "EUR"); err != nil {
		t.Fatal(err)
	}
	l := NewRepository(db)
	if err := srv.IsolateFromStandby(ctx); err != nil {
		t.Fatal(err)
	}

	approved, unknown := newTx("ACC-000001", 100, "EUR"), newTx("ACC-999999", 100, "EUR")
	within := func(d time.Duration) (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, d) }
	for _, tx := range []payment.Transaction{approved, unknown} {
		cctx, cancel := within(time.Second)
		_, _, err := l.Process(cctx, testCaller, tx)
		cancel()
		if err == nil {
			t.Fatalf("control: %s processed without the synchronous standby", tx.AccountID)
		}
	}
	var visible int64 // once the server has processed the cancellations
	for deadline := time.Now().Add(10 * time.Second); visible < 2 && time.Now().Before(deadline); {
		if err := db.Raw("SELECT count(*) FROM transactions").Scan(&visible).Error; err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if visible != 2 {
		t.Fatalf("control: %d cancelled commits visible, want 2 (else this test proves nothing)", visible)
	}

	for _, tx := range []payment.Transaction{approved, unknown} {
		cctx, cancel := within(2 * time.Second)
		res, _, err := l.Process(cctx, testCaller, tx)
		cancel()
		if err == nil {
			t.Fatalf("the replay of the unreplicated %s transaction confirmed it: %+v", tx.AccountID, res)
		}
	}
	cctx, cancel := within(2 * time.Second)
	out, err := l.ProcessBatch(cctx, testCaller, []payment.Transaction{approved, unknown})
	cancel()
	if err == nil {
		t.Fatalf("a batch of replays of unreplicated transactions confirmed them: %+v", out)
	}

	if err := srv.ReconnectStandby(ctx); err != nil {
		t.Fatal(err)
	}
	res, created, err := l.Process(ctx, testCaller, approved)
	if err != nil || created || res.Status != payment.StatusApproved {
		t.Fatalf("replay with the standby back: %+v created=%v %v", res, created, err)
	}
	out, err = l.ProcessBatch(ctx, testCaller, []payment.Transaction{approved, unknown})
	if err != nil || len(out) != 2 || out[0].Created || out[1].Result.Status != payment.StatusDeclined {
		t.Fatalf("batch replay with the standby back: %+v %v", out, err)
	}
}
