package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/bank"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openDB opens dsn and applies the Store's migrations.
func openDB(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := postgres.Open(postgres.Config{URL: dsn, MaxConns: 20})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	if _, err := postgres.Migrate(context.Background(), sqlDB, Migrations(), MigrationLockID,
		slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return db
}

// newRepo returns a Repository on a fresh migrated database.
func newRepo(t *testing.T) (*Repository, *gorm.DB) {
	t.Helper()
	db := openDB(t, pgtest.NewDatabase(t))
	return NewRepository(db, "store-test"), db
}

func count(t *testing.T, db *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	if err := db.Raw("SELECT count(*) FROM " + table).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func sampleIn(key string) NewPurchase {
	return NewPurchase{AccountID: "ACC-000001", Amount: 1250, Currency: "EUR", Source: SourceAPI, IdempotencyKey: key}
}

func TestCreateWritesPurchaseAndOutboxTogether(t *testing.T) {
	repo, db := newRepo(t)
	ctx := context.Background()
	woken := 0
	repo.OnCreate(func() { woken++ })
	p, created, err := repo.Create(ctx, sampleIn(""))
	if err != nil || !created {
		t.Fatalf("create: %v created=%v", err, created)
	}
	if p.Status != StatusPending || p.StoreID != "store-test" || p.ID.Version() != 7 {
		t.Fatalf("created %+v", p)
	}
	if count(t, db, "purchases") != 1 || count(t, db, "outbox") != 1 || woken != 1 {
		t.Fatalf("purchases %d outbox %d woken %d, want 1 1 1", count(t, db, "purchases"), count(t, db, "outbox"), woken)
	}
	got, err := repo.Get(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Transaction() != p.Transaction() || got.NextAttemptAt == nil || got.Attempts != 0 {
		t.Fatalf("read back %+v, want %+v", got, p)
	}
	if _, err := repo.Get(ctx, uuid.New()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	// Invalid fields are validation errors, and nothing is written.
	_, _, err = repo.Create(ctx, NewPurchase{AccountID: "ACC 1", Amount: 0, Currency: "eur", Source: SourceAPI})
	var verr *payment.ValidationError
	if !errors.As(err, &verr) || len(verr.Fields) != 3 {
		t.Fatalf("invalid purchase: %v", err)
	}
	if count(t, db, "purchases") != 1 {
		t.Fatal("an invalid purchase was written")
	}
}

func TestCreateIdempotencyKey(t *testing.T) {
	repo, db := newRepo(t)
	ctx := context.Background()
	first, created, err := repo.Create(ctx, sampleIn("key-1"))
	if err != nil || !created {
		t.Fatal(err)
	}
	again, created, err := repo.Create(ctx, sampleIn("key-1"))
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("replay: %v created=%v id %s want %s", err, created, again.ID, first.ID)
	}
	other := sampleIn("key-1")
	other.Amount++
	if _, _, err := repo.Create(ctx, other); !errors.Is(err, ErrConflict) {
		t.Fatalf("same key, different amount: %v, want ErrConflict", err)
	}
	// Without a key every call is a new purchase.
	for range 2 {
		if _, created, err := repo.Create(ctx, sampleIn("")); err != nil || !created {
			t.Fatal(err)
		}
	}
	if n := count(t, db, "purchases"); n != 3 {
		t.Fatalf("%d purchases, want 3", n)
	}
}

func TestCreateIdempotencyKeyConcurrent(t *testing.T) {
	repo, db := newRepo(t)
	var wg sync.WaitGroup
	ids := make([]uuid.UUID, 8)
	errs := make([]error, 8)
	for i := range ids {
		wg.Go(func() {
			p, _, err := repo.Create(context.Background(), sampleIn("same-key"))
			ids[i], errs[i] = p.ID, err
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("call %d: %v, id %s vs %s", i, errs[i], ids[i], ids[0])
		}
	}
	if count(t, db, "purchases") != 1 || count(t, db, "outbox") != 1 {
		t.Fatal("concurrent calls with one key created more than one purchase")
	}
}

func TestClaimSkipsLockedAndLeasedRows(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := context.Background()
	for range 10 {
		if _, _, err := repo.Create(ctx, sampleIn("")); err != nil {
			t.Fatal(err)
		}
	}
	// Concurrent claimers never get the same row.
	var mu sync.Mutex
	seen := map[uuid.UUID]int{}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			claims, err := repo.Claim(ctx, "relay-"+string(rune('a'+i)), 3, time.Minute)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, c := range claims {
				seen[c.Tx.ID]++
			}
		})
	}
	wg.Wait()
	if len(seen) != 10 {
		t.Fatalf("claimed %d distinct rows, want 10", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("row %s claimed %d times", id, n)
		}
	}
	// Leased rows are not due.
	if claims, err := repo.Claim(ctx, "relay-z", 10, time.Minute); err != nil || len(claims) != 0 {
		t.Fatalf("claimed leased rows: %d, %v", len(claims), err)
	}
	d, ok, err := repo.NextDue(ctx)
	if err != nil || !ok || d < 50*time.Second {
		t.Fatalf("next due %v %v %v, want about a minute", d, ok, err)
	}
}

func TestExpiredLeaseIsClaimedAgainAndStaleClaimLosesRetry(t *testing.T) {
	repo, db := newRepo(t)
	ctx := context.Background()
	p, _, err := repo.Create(ctx, sampleIn(""))
	if err != nil {
		t.Fatal(err)
	}
	first, err := repo.Claim(ctx, "relay-a", 1, time.Millisecond)
	if err != nil || len(first) != 1 {
		t.Fatalf("claim: %v %v", first, err)
	}
	time.Sleep(5 * time.Millisecond)
	second, err := repo.Claim(ctx, "relay-b", 1, time.Minute)
	if err != nil || len(second) != 1 || second[0].Tx.ID != p.ID || second[0].Token == first[0].Token {
		t.Fatalf("expired lease not claimed again: %v %v", second, err)
	}
	// The first relay's retry only counts its attempt: the row stays with its new holder.
	if err := repo.Retry(ctx, first[0], 0, "timeout"); err != nil {
		t.Fatal(err)
	}
	got, _ := repo.Get(ctx, p.ID)
	if got.Attempts != 1 || got.LastError != "timeout" || time.Until(*got.NextAttemptAt) < 50*time.Second {
		t.Fatalf("after a stale retry: %+v", got)
	}
	// The holder's retry reschedules it.
	if err := repo.Retry(ctx, second[0], 0, "503"); err != nil {
		t.Fatal(err)
	}
	if again, _ := repo.Claim(ctx, "relay-b", 1, time.Minute); len(again) != 1 || again[0].Attempts != 2 {
		t.Fatalf("after the holder's retry: %+v", again)
	}
	// Completion does not need the current claim, and a second completion changes nothing.
	processed := time.Now().UTC().Round(time.Microsecond)
	res := payment.Result{ID: p.ID, Status: payment.StatusDeclined, Reason: payment.ReasonInsufficientFunds,
		ProcessedAt: processed}
	if err := repo.Complete(ctx, p.ID, res); err != nil {
		t.Fatal(err)
	}
	if err := repo.Complete(ctx, p.ID, payment.Result{ID: p.ID, Status: payment.StatusApproved}); err != nil {
		t.Fatal(err)
	}
	got, _ = repo.Get(ctx, p.ID)
	if got.Status != StatusDeclined || got.Reason != payment.ReasonInsufficientFunds || got.Attempts != 3 ||
		got.ProcessedAt == nil || !got.ProcessedAt.Equal(processed) || got.CompletedAt == nil ||
		got.NextAttemptAt != nil || got.LastError != "503" {
		t.Fatalf("completed: %+v", got)
	}
	if count(t, db, "outbox") != 0 {
		t.Fatal("completed purchase still in the outbox")
	}
}

func TestRejectAndRelease(t *testing.T) {
	repo, _ := newRepo(t)
	ctx := context.Background()
	a, _, _ := repo.Create(ctx, sampleIn(""))
	b, _, _ := repo.Create(ctx, sampleIn(""))
	claims, err := repo.Claim(ctx, "relay", 2, time.Minute)
	if err != nil || len(claims) != 2 || claims[0].Tx.ID != a.ID {
		t.Fatalf("claim in creation order: %+v %v", claims, err)
	}
	if err := repo.Reject(ctx, a.ID, payment.CodeIdempotencyConflict, "different fields"); err != nil {
		t.Fatal(err)
	}
	if err := repo.Release(ctx, claims[1], 0); err != nil {
		t.Fatal(err)
	}
	got, _ := repo.Get(ctx, a.ID)
	if got.Status != StatusRejected || got.ErrorCode != payment.CodeIdempotencyConflict ||
		got.LastError != "different fields" || got.Attempts != 1 || got.CompletedAt == nil {
		t.Fatalf("rejected: %+v", got)
	}
	again, err := repo.Claim(ctx, "relay", 5, time.Minute)
	if err != nil || len(again) != 1 || again[0].Tx.ID != b.ID || again[0].Attempts != 0 {
		t.Fatalf("released row not due again (or rejected one still there): %+v %v", again, err)
	}
	counts, err := repo.CountByStatus(ctx)
	if err != nil || counts[StatusPending] != 1 || counts[StatusRejected] != 1 || counts[StatusApproved] != 0 {
		t.Fatalf("counts %v %v", counts, err)
	}
	bl, err := repo.Backlog(ctx)
	if err != nil || bl.Size != 1 || bl.OldestAge <= 0 {
		t.Fatalf("backlog %+v %v", bl, err)
	}
}

func TestAccountIDMatchesBankSeed(t *testing.T) {
	for _, n := range []int{1, 42, 100, 999_999} {
		if AccountID(n) != bank.AccountID(n) {
			t.Fatalf("AccountID(%d) = %s, bank seeds %s", n, AccountID(n), bank.AccountID(n))
		}
	}
}

func TestTruncateKeepsUTF8(t *testing.T) {
	if got := truncate("ééé", 3); got != "é" {
		t.Fatalf("truncate = %q", got)
	}
	if got := truncate("abc", 5); got != "abc" {
		t.Fatalf("truncate = %q", got)
	}
}

// TestConcurrentCreatesAreGroupCommitted: 400 concurrent Create calls through two replicas' repositories on
// one database — without keys, and 50 keys each sent 6 times (4 identical, 2 with another amount) in random
// order — are written in shared statements (fewer transactions than purchases), none fails or deadlocks,
// each key creates one purchase that its identical calls replay, and only calls with other fields conflict;
// every purchase has its outbox row.
func TestConcurrentCreatesAreGroupCommitted(t *testing.T) {
	repo, db := newRepo(t)
	replica := NewRepository(db, "store-test")
	type call struct {
		in   NewPurchase
		p    Purchase
		made bool
		err  error
	}
	var calls []*call
	for range 100 {
		calls = append(calls, &call{in: sampleIn("")})
	}
	for k := range 50 {
		for i := range 6 {
			in := sampleIn(fmt.Sprintf("key-%d", k))
			if i >= 4 {
				in.Amount++
			}
			calls = append(calls, &call{in: in})
		}
	}
	rand.Shuffle(len(calls), func(i, j int) { calls[i], calls[j] = calls[j], calls[i] })
	var wg sync.WaitGroup
	for i, c := range calls {
		r := repo
		if i%2 == 1 {
			r = replica
		}
		wg.Go(func() { c.p, c.made, c.err = r.Create(context.Background(), c.in) })
	}
	wg.Wait()
	byKey := map[string]Purchase{}
	for _, c := range calls {
		switch {
		case c.err != nil && !errors.Is(c.err, ErrConflict):
			t.Fatalf("Create: %v", c.err)
		case c.made && c.in.IdempotencyKey != "":
			if prev, dup := byKey[c.in.IdempotencyKey]; dup {
				t.Fatalf("key %s created %s and %s", c.in.IdempotencyKey, prev.ID, c.p.ID)
			}
			byKey[c.in.IdempotencyKey] = c.p
		}
	}
	for _, c := range calls {
		if c.in.IdempotencyKey == "" {
			if !c.made || c.err != nil {
				t.Fatalf("a call without a key: created=%v %v", c.made, c.err)
			}
			continue
		}
		first := byKey[c.in.IdempotencyKey]
		same := first.Amount == c.in.Amount
		switch {
		case c.made:
		case same && (c.err != nil || c.p.ID != first.ID):
			t.Fatalf("replay of %s: %v, %s (created %s)", c.in.IdempotencyKey, c.err, c.p.ID, first.ID)
		case !same && !errors.Is(c.err, ErrConflict):
			t.Fatalf("other fields under %s: %v, want ErrConflict", c.in.IdempotencyKey, c.err)
		}
	}
	if p, o := count(t, db, "purchases"), count(t, db, "outbox"); p != 150 || o != 150 {
		t.Fatalf("%d purchases and %d outbox rows, want 150 of each", p, o)
	}
	var txs int64
	if err := db.Raw(`SELECT count(DISTINCT xmin::text) FROM purchases`).Scan(&txs).Error; err != nil {
		t.Fatal(err)
	}
	if txs >= 150 {
		t.Fatalf("150 purchases in %d transactions: nothing was group-committed", txs)
	}
	t.Logf("150 purchases written by %d transactions", txs)
}
