package bank

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/internal/payment"
)

const otherCaller = "spiffe://txmesh.test/intruder"

// ledgerState is what a foreign caller's request must leave unchanged.
type ledgerState struct {
	rows, total int64
}

func stateOf(t *testing.T, l *Repository) ledgerState {
	t.Helper()
	var s ledgerState
	if err := l.db.Raw(`SELECT (SELECT count(*) FROM transactions), (SELECT sum(balance) FROM accounts)`).
		Row().Scan(&s.rows, &s.total); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTransactionsBelongToTheirCaller: the caller is recorded with the transaction (single and batch
// statements); another caller's replay — same fields or not — is ErrForeign (not ErrConflict: whether the
// fields match is not disclosed) and changes nothing; so is its lookup.
func TestTransactionsBelongToTheirCaller(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	single, batched := newTx("ACC-000001", 100, "EUR"), newTx("ACC-000002", 200, "EUR")
	if _, created, err := l.Process(ctx, testCaller, single); err != nil || !created {
		t.Fatalf("process: created %v, %v", created, err)
	}
	if outs, err := l.ProcessBatch(ctx, testCaller, []payment.Transaction{batched}); err != nil || !outs[0].Created {
		t.Fatalf("batch: %+v, %v", outs, err)
	}
	for _, tx := range []payment.Transaction{single, batched} {
		if _, owner, err := l.Stored(ctx, tx.ID); err != nil || owner != testCaller {
			t.Fatalf("%s recorded for %q (%v), want %q", tx.ID, owner, err, testCaller)
		}
	}
	before := stateOf(t, l)
	for _, tx := range []payment.Transaction{single, batched} {
		changed := tx
		changed.Amount++
		for _, replay := range []payment.Transaction{tx, changed} {
			if _, _, err := l.Process(ctx, otherCaller, replay); !errors.Is(err, ErrForeign) {
				t.Errorf("another caller's replay (amount %d): %v, want ErrForeign", replay.Amount, err)
			}
		}
		if rec, err := l.Transaction(ctx, otherCaller, tx.ID); !errors.Is(err, ErrForeign) || rec.ID != uuid.Nil {
			t.Errorf("another caller's lookup: %+v, %v; want nothing and ErrForeign", rec, err)
		}
		if rec, err := l.Transaction(ctx, testCaller, tx.ID); err != nil || rec.ID != tx.ID {
			t.Errorf("the owner's lookup: %+v, %v", rec, err)
		}
		if _, created, err := l.Process(ctx, testCaller, tx); err != nil || created {
			t.Errorf("the owner's replay: created %v, %v; want the stored result", created, err)
		}
	}
	// In a batch: the other caller's items with those ids are ErrForeign; its own new item is its own.
	fresh := newTx("ACC-000003", 300, "EUR")
	outs, err := l.ProcessBatch(ctx, otherCaller, []payment.Transaction{single, fresh, batched, fresh})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(outs[0].Err, ErrForeign) || !errors.Is(outs[2].Err, ErrForeign) || !outs[1].Created ||
		outs[3].Created || outs[3].Err != nil {
		t.Fatalf("batch of another caller: %+v", outs)
	}
	if _, owner, _ := l.Stored(ctx, fresh.ID); owner != otherCaller {
		t.Fatalf("the other caller's transaction recorded for %q", owner)
	}
	if got, want := stateOf(t, l), (ledgerState{before.rows + 1, before.total - 300}); got != want {
		t.Fatalf("after the other caller: %+v, want %+v (only its own transaction)", got, want)
	}
}

// TestTransactionsOfUnknownCaller: a row recorded before callers were (caller "") stays every allowed
// caller's: replayed and read as before, by anyone, and never claimed.
func TestTransactionsOfUnknownCaller(t *testing.T) {
	l, db := newLedger(t)
	ctx := context.Background()
	tx := newTx("ACC-000001", 5, "EUR").Normalize()
	if err := db.Exec(`INSERT INTO transactions (id, store_id, account_id, amount, currency, created_at, status)
		VALUES (?, ?, ?, ?, ?, ?, 'approved')`, tx.ID, tx.StoreID, tx.AccountID, tx.Amount, tx.Currency,
		tx.CreatedAt).Error; err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{testCaller, otherCaller} {
		if res, created, err := l.Process(ctx, who, tx); err != nil || created || res.Status != payment.StatusApproved {
			t.Errorf("%s replays: %+v, created %v, %v", who, res, created, err)
		}
		if outs, err := l.ProcessBatch(ctx, who, []payment.Transaction{tx}); err != nil || outs[0].Err != nil ||
			outs[0].Created {
			t.Errorf("%s replays in a batch: %+v, %v", who, outs, err)
		}
		if _, err := l.Transaction(ctx, who, tx.ID); err != nil {
			t.Errorf("%s reads: %v", who, err)
		}
	}
	if _, owner, _ := l.Stored(ctx, tx.ID); owner != "" {
		t.Fatalf("claimed by %q", owner)
	}
	if _, _, err := l.Stored(ctx, uuid.New()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stored of a missing id: %v", err)
	}
}
