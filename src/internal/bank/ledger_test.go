package bank

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/caller"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testCaller is the caller of the ledger tests' transactions.
const testCaller = "spiffe://txmesh.test/store"

// anonymous is the caller policy of a Bank without an identity source that serves everyone (its tests over
// plain HTTP): every caller is caller.Anonymous.
func anonymous() *caller.Policy {
	p, err := caller.New(caller.Config{Source: caller.SourceNone, Allowed: caller.List{caller.Anonymous}}, false)
	if err != nil {
		panic(err)
	}
	return p
}

// newLedger returns a Repository on a fresh migrated database with ACC-000001…ACC-000003 (EUR, 1000).
func newLedger(t *testing.T) (*Repository, *gorm.DB) {
	t.Helper()
	db, err := postgres.Open(postgres.Config{URL: pgtest.NewDatabase(t), MaxConns: 20})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	ctx := context.Background()
	if _, err := postgres.Migrate(ctx, sqlDB, Migrations(), MigrationLockID, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if n, err := Seed(ctx, db, 3, 1000, "EUR"); err != nil || n != 3 {
		t.Fatalf("seed: %d, %v", n, err)
	}
	return NewRepository(db), db
}

func newTx(account string, amount int64, currency string) payment.Transaction {
	return payment.Transaction{ID: uuid.New(), StoreID: "store-1", AccountID: account, Amount: amount,
		Currency: currency, CreatedAt: time.Now()}
}

func balance(t *testing.T, l *Repository, id string) int64 {
	t.Helper()
	a, err := l.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

func countRows(t *testing.T, db *gorm.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Raw("SELECT count(*) FROM transactions").Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestProcessDecisions(t *testing.T) {
	l, db := newLedger(t)
	ctx := context.Background()
	tests := []struct {
		name        string
		tx          payment.Transaction
		status      payment.Status
		reason      payment.Reason
		balanceWant int64 // of the transaction's account afterwards (-1: no such account)
	}{
		{"approved", newTx("ACC-000001", 300, "EUR"), payment.StatusApproved, payment.ReasonNone, 700},
		{"exact balance", newTx("ACC-000002", 1000, "EUR"), payment.StatusApproved, payment.ReasonNone, 0},
		{"insufficient", newTx("ACC-000001", 701, "EUR"), payment.StatusDeclined, payment.ReasonInsufficientFunds, 700},
		{"unknown account", newTx("ACC-999999", 1, "EUR"), payment.StatusDeclined, payment.ReasonUnknownAccount, -1},
		{"currency mismatch", newTx("ACC-000003", 1, "USD"), payment.StatusDeclined, payment.ReasonCurrencyMismatch, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, created, err := l.Process(ctx, testCaller, tt.tx)
			if err != nil || !created {
				t.Fatalf("Process: created=%v err=%v", created, err)
			}
			if res.ID != tt.tx.ID || res.Status != tt.status || res.Reason != tt.reason || res.ProcessedAt.IsZero() {
				t.Fatalf("result %+v, want %s/%q", res, tt.status, tt.reason)
			}
			if tt.balanceWant >= 0 {
				if got := balance(t, l, tt.tx.AccountID); got != tt.balanceWant {
					t.Fatalf("balance %d, want %d", got, tt.balanceWant)
				}
			}
			// A replay returns the very same result and changes nothing.
			before := balance(t, l, "ACC-000001") + balance(t, l, "ACC-000002") + balance(t, l, "ACC-000003")
			again, created, err := l.Process(ctx, testCaller, tt.tx)
			if err != nil || created || again != res {
				t.Fatalf("replay: %+v created=%v err=%v, want %+v", again, created, err, res)
			}
			// The same id with other fields is a conflict and changes nothing either.
			other := tt.tx
			other.Amount++
			if _, _, err := l.Process(ctx, testCaller, other); !errors.Is(err, ErrConflict) {
				t.Fatalf("conflict: got %v, want ErrConflict", err)
			}
			after := balance(t, l, "ACC-000001") + balance(t, l, "ACC-000002") + balance(t, l, "ACC-000003")
			if before != after {
				t.Fatalf("replay or conflict moved money: %d → %d", before, after)
			}
			rec, err := l.Transaction(ctx, testCaller, tt.tx.ID)
			if err != nil || !rec.SameFields(tt.tx) || rec.Result() != res {
				t.Fatalf("stored record %+v (%v), want %+v / %+v", rec, err, tt.tx, res)
			}
		})
	}
	if n := countRows(t, db); n != int64(len(tests)) {
		t.Fatalf("%d rows, want %d", n, len(tests))
	}
}

// TestConcurrentDebitsNeverOverdraw races 40 distinct debits of 100 on a balance of 1000 through 20
// connections: exactly 10 are approved and the balance ends at 0.
func TestConcurrentDebitsNeverOverdraw(t *testing.T) {
	l, _ := newLedger(t)
	var wg sync.WaitGroup
	results := make(chan payment.Result, 40)
	for range 40 {
		wg.Go(func() {
			res, _, err := l.Process(context.Background(), testCaller, newTx("ACC-000001", 100, "EUR"))
			if err != nil {
				t.Error(err)
				return
			}
			results <- res
		})
	}
	wg.Wait()
	close(results)
	approved := 0
	for r := range results {
		if r.Status == payment.StatusApproved {
			approved++
		} else if r.Reason != payment.ReasonInsufficientFunds {
			t.Errorf("unexpected decline %q", r.Reason)
		}
	}
	if approved != 10 || balance(t, l, "ACC-000001") != 0 {
		t.Fatalf("approved %d (want 10), balance %d (want 0)", approved, balance(t, l, "ACC-000001"))
	}
}

// TestSchemaEnforcesInvariants proves the constraints hold even against SQL that bypasses the code.
func TestSchemaEnforcesInvariants(t *testing.T) {
	_, db := newLedger(t)
	for _, stmt := range []string{
		`UPDATE accounts SET balance = -1 WHERE id = 'ACC-000001'`,
		`INSERT INTO transactions (id, store_id, account_id, amount, currency, created_at, status)
		 VALUES (gen_random_uuid(), 's', 'ACC-000001', 0, 'EUR', now(), 'approved')`,
		`INSERT INTO transactions (id, store_id, account_id, amount, currency, created_at, status, reason)
		 VALUES (gen_random_uuid(), 's', 'ACC-000001', 5, 'EUR', now(), 'declined', '')`,
		`INSERT INTO accounts (id, currency, balance, initial_balance) VALUES ('bad id', 'EUR', 1, 1)`,
	} {
		if err := db.Exec(stmt).Error; err == nil {
			t.Errorf("schema accepted %s", stmt)
		}
	}
	id := uuid.New()
	insert := `INSERT INTO transactions (id, store_id, account_id, amount, currency, created_at, status)
		VALUES (?, 's', 'ACC-000001', 5, 'EUR', now(), 'approved')`
	if err := db.Exec(insert, id).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(insert, id).Error; err == nil {
		t.Error("schema accepted a duplicate id")
	}
}

func TestSeedLeavesExistingAccountsAlone(t *testing.T) {
	l, db := newLedger(t)
	ctx := context.Background()
	if _, _, err := l.Process(ctx, testCaller, newTx("ACC-000001", 400, "EUR")); err != nil {
		t.Fatal(err)
	}
	n, err := Seed(ctx, db, 5, 50, "EUR")
	if err != nil || n != 2 {
		t.Fatalf("seed created %d (%v), want 2", n, err)
	}
	if b := balance(t, l, "ACC-000001"); b != 600 {
		t.Fatalf("existing account balance %d, want 600", b)
	}
	if b := balance(t, l, "ACC-000005"); b != 50 {
		t.Fatalf("new account balance %d, want 50", b)
	}
	if _, err := Seed(ctx, db, 0, 1, "EUR"); err == nil {
		t.Fatal("seed accepted 0 accounts")
	}
	if _, err := Seed(ctx, db, 1, 1, "eur"); err == nil {
		t.Fatal("seed accepted a lower-case currency")
	}
}

// TestSeedCanaryAccounts: the canary accounts are their own range (CANARY-…, payment.IsCanaryAccount), created
// beside the customer accounts without touching them, idempotently, and spendable like any account.
func TestSeedCanaryAccounts(t *testing.T) {
	l, db := newLedger(t)
	ctx := context.Background()
	n, err := SeedCanary(ctx, db, 2, 1_000_000_000_000, "EUR")
	if err != nil || n != 2 {
		t.Fatalf("canary seed created %d (%v), want 2", n, err)
	}
	var ids []string
	if err := db.Raw("SELECT id FROM accounts ORDER BY id").Scan(&ids).Error; err != nil {
		t.Fatal(err)
	}
	want := []string{"ACC-000001", "ACC-000002", "ACC-000003", "CANARY-000001", "CANARY-000002"}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Fatalf("accounts %v, want %v", ids, want)
	}
	for i, id := range want {
		if payment.IsCanaryAccount(id) != (i >= 3) {
			t.Errorf("IsCanaryAccount(%s) = %v", id, i < 3)
		}
	}
	if CanaryAccountID(2) != "CANARY-000002" || !payment.IsCanaryAccount(CanaryAccountID(999_999)) ||
		payment.IsCanaryAccount(AccountID(1)) {
		t.Fatalf("ids: %s %s", CanaryAccountID(2), AccountID(1))
	}
	res, _, err := l.Process(ctx, testCaller, newTx("CANARY-000001", 250, "EUR"))
	if err != nil || res.Status != payment.StatusApproved {
		t.Fatalf("a debit of a canary account: %+v %v", res, err)
	}
	if n, err := SeedCanary(ctx, db, 3, 7, "EUR"); err != nil || n != 1 {
		t.Fatalf("second canary seed created %d (%v), want 1", n, err)
	}
	if b := balance(t, l, "CANARY-000001"); b != 1_000_000_000_000-250 {
		t.Errorf("the seed touched an existing canary account: balance %d", b)
	}
	if b := balance(t, l, "CANARY-000003"); b != 7 {
		t.Errorf("new canary account balance %d, want 7", b)
	}
	if b := balance(t, l, "ACC-000001"); b != 1000 {
		t.Errorf("the canary seed touched a customer account: balance %d", b)
	}
	if _, err := SeedCanary(ctx, db, 0, 1, "EUR"); err == nil {
		t.Error("canary seed accepted 0 accounts")
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestProcessHonoursTheDeadline: a statement stuck behind a lock (as behind a hung database) returns at the
// context's deadline with an error the server answers 503, and the ledger works again afterwards.
func TestProcessHonoursTheDeadline(t *testing.T) {
	repo, db := newLedger(t)
	ctx := context.Background()
	sqlDB, _ := db.DB()
	locker, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Rollback() //nolint:errcheck
	if _, err := locker.ExecContext(ctx, `SELECT 1 FROM accounts WHERE id = 'ACC-000001' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := repo.Process(dctx, testCaller, newTx("ACC-000001", 10, "EUR"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !postgres.Unavailable(err) {
			t.Fatalf("Process behind a lock returned %v; want an Unavailable error at the deadline", err)
		}
	case <-time.After(5 * time.Second):
		_ = locker.Rollback()
		<-done
		t.Fatal("Process behind a lock ignored its deadline")
	}
	if err := locker.Rollback(); err != nil {
		t.Fatal(err)
	}
	if res, created, err := repo.Process(ctx, testCaller, newTx("ACC-000002", 10, "EUR")); err != nil || !created ||
		res.Status != payment.StatusApproved {
		t.Fatalf("after the deadline: %+v %v %v", res, created, err)
	}
}
