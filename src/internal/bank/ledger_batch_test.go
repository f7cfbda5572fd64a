package bank

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
)

// same reports whether a batch outcome equals what Process returned, processed_at aside when the
// transaction was created by each (each ledger records its own time).
func same(o Outcome, res payment.Result, created bool, err error) bool {
	if (o.Err == nil) != (err == nil) || (err != nil && !errors.Is(o.Err, err)) || o.Created != created {
		return false
	}
	a, b := o.Result, res
	a.ProcessedAt, b.ProcessedAt = time.Time{}, time.Time{}
	return a == b
}

// auditLedger checks the invariants the audit proves: every balance is its seed minus its approved debits
// and never negative, and there is one row per id.
func auditLedger(t *testing.T, db *gorm.DB) {
	t.Helper()
	var bad []string
	if err := db.Raw(`
SELECT a.id FROM accounts a
LEFT JOIN (SELECT account_id, sum(amount) AS s FROM transactions WHERE status = 'approved' GROUP BY account_id) t
       ON t.account_id = a.id
WHERE a.balance <> a.initial_balance - COALESCE(t.s, 0) OR a.balance < 0`).Scan(&bad).Error; err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Fatalf("accounts whose balance is not seed - approved debits: %v", bad)
	}
}

// TestProcessBatchAnswersAsProcess: every item-level outcome in mixed batches — approvals and the three
// declines, debits of one account in order (a decline does not debit, a later smaller one is approved),
// replays and conflicts of recorded ids, duplicates inside the batch (identical: a replay of the earlier
// item; different: a conflict) — equals what Process returns for the same transactions sent one by one, on
// a twin database; so do the balances and rows afterwards, and the audit holds.
func TestProcessBatchAnswersAsProcess(t *testing.T) {
	batchLedger, batchDB := newLedger(t)
	singleLedger, singleDB := newLedger(t)
	ctx := context.Background()
	recorded := newTx("ACC-000003", 100, "EUR")
	for _, l := range []*Repository{batchLedger, singleLedger} {
		if _, _, err := l.Process(ctx, testCaller, recorded); err != nil {
			t.Fatal(err)
		}
	}
	conflictRecorded := recorded
	conflictRecorded.Amount = 101
	first := newTx("ACC-000001", 300, "EUR")
	dupDiff := first
	dupDiff.AccountID = "ACC-000002"
	declined := newTx("ACC-000001", 800, "EUR")
	declinedDiff := declined
	declinedDiff.Amount = 799
	fixed := []payment.Transaction{
		first,                            // approved: 1000 → 700
		declined,                         // insufficient_funds: 700 < 800, no debit
		newTx("ACC-000001", 700, "EUR"),  // approved at exactly what is left: → 0
		newTx("ACC-000001", 1, "EUR"),    // insufficient_funds at 0
		newTx("ACC-000002", 1, "USD"),    // currency_mismatch
		newTx("ACC-999999", 5, "EUR"),    // unknown_account
		recorded,                         // replay of a recorded id: its stored result
		conflictRecorded,                 // the recorded id with other fields: conflict
		first,                            // duplicate inside the batch: replay of item 0
		dupDiff,                          // duplicate with other fields: conflict
		declined,                         // duplicate of a decline: its replay
		declinedDiff,                     // conflict with a decline
		newTx("ACC-000002", 1000, "EUR"), // approved: → 0
		newTx("ACC-000002", 1, "EUR"),    // insufficient_funds
	}
	check := func(name string, batch []payment.Transaction) {
		t.Helper()
		got, err := batchLedger.ProcessBatch(ctx, testCaller, batch)
		if err != nil {
			t.Fatalf("%s: ProcessBatch: %v", name, err)
		}
		if len(got) != len(batch) {
			t.Fatalf("%s: %d outcomes for %d transactions", name, len(got), len(batch))
		}
		for i, tx := range batch {
			res, created, err := singleLedger.Process(ctx, testCaller, tx)
			if err != nil && !errors.Is(err, ErrConflict) {
				t.Fatal(err)
			}
			if !same(got[i], res, created, err) {
				t.Errorf("%s, item %d (%s %d %s): batch %+v, one by one %+v created=%v err=%v", name, i,
					tx.AccountID, tx.Amount, tx.Currency, got[i], res, created, err)
			}
			if got[i].Created && got[i].Result.ProcessedAt.IsZero() {
				t.Errorf("%s, item %d: no processed_at", name, i)
			}
		}
	}
	check("fixed", fixed)
	// The same batch again: every item is now a replay or a conflict; nothing moves.
	check("fixed again", fixed)

	// Random mixes: accounts with little money (many declines), unknown accounts, currencies, duplicates
	// with and without changes, ids recorded by earlier batches.
	rnd := rand.New(rand.NewPCG(1, 2))
	var seen []payment.Transaction
	for round := range 25 {
		n := 1 + rnd.IntN(40)
		var batch []payment.Transaction
		for range n {
			switch p := rnd.IntN(10); {
			case p < 2 && len(seen) > 0:
				tx := seen[rnd.IntN(len(seen))]
				if rnd.IntN(2) == 0 {
					tx.Amount++
				}
				batch = append(batch, tx)
			case p < 3 && len(batch) > 0:
				tx := batch[rnd.IntN(len(batch))]
				if rnd.IntN(3) == 0 {
					tx.CreatedAt = tx.CreatedAt.Add(time.Microsecond)
				}
				batch = append(batch, tx)
			default:
				cur := "EUR"
				if rnd.IntN(12) == 0 {
					cur = "USD"
				}
				acc := AccountID(1 + rnd.IntN(4)) // ACC-000004 does not exist
				batch = append(batch, newTx(acc, 1+rnd.Int64N(120), cur))
			}
		}
		seen = append(seen, batch...)
		check(fmt.Sprintf("random %d", round), batch)
	}
	for _, acc := range []string{"ACC-000001", "ACC-000002", "ACC-000003"} {
		if a, b := balance(t, batchLedger, acc), balance(t, singleLedger, acc); a != b {
			t.Errorf("%s: balance %d after batches, %d one by one", acc, a, b)
		}
	}
	if a, b := countRows(t, batchDB), countRows(t, singleDB); a != b {
		t.Errorf("%d rows after batches, %d one by one", a, b)
	}
	auditLedger(t, batchDB)
}

// TestProcessBatchOverlappingConcurrently races batches and single requests that share ids and accounts,
// in every order (each batch shuffled, so their lock requests would cross if they were taken in batch
// order), with conflicting variants of some ids: no statement deadlocks or fails, each id is created exactly
// once, every other answer is a replay of the created result (or a conflict, exactly when the fields differ
// from the created ones), and the audit holds.
func TestProcessBatchOverlappingConcurrently(t *testing.T) {
	l, db := newLedger(t)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(3, 4))
	var pool []payment.Transaction
	for range 150 {
		pool = append(pool, newTx(AccountID(1+rnd.IntN(3)), 1+rnd.Int64N(60), "EUR"))
	}
	for i := range 15 { // variants: the same id with another amount
		v := pool[i*10]
		v.Amount += 1000
		pool = append(pool, v)
	}
	type answer struct {
		tx  payment.Transaction
		out Outcome
	}
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for range 12 {
				var batch []payment.Transaction
				for range 1 + r.IntN(40) {
					batch = append(batch, pool[r.IntN(len(pool))])
				}
				var outs []Outcome
				if w%5 == 4 { // a fifth of the workers send the same transactions one by one
					for _, tx := range batch {
						res, created, err := l.Process(ctx, testCaller, tx)
						if err != nil && !errors.Is(err, ErrConflict) {
							t.Errorf("Process: %v", err)
							return
						}
						outs = append(outs, Outcome{Result: res, Created: created, Err: err})
					}
				} else {
					var err error
					if outs, err = l.ProcessBatch(ctx, testCaller, batch); err != nil {
						t.Errorf("ProcessBatch: %v", err)
						return
					}
				}
				mu.Lock()
				for i, tx := range batch {
					answers = append(answers, answer{tx, outs[i]})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	created := map[uuid.UUID]answer{}
	for _, a := range answers {
		if a.out.Created {
			if prev, dup := created[a.tx.ID]; dup {
				t.Fatalf("%s created twice: %+v and %+v", a.tx.ID, prev.out, a.out)
			}
			created[a.tx.ID] = a
		}
	}
	for _, a := range answers {
		c, ok := created[a.tx.ID]
		if !ok {
			t.Fatalf("%s answered %+v but never created", a.tx.ID, a.out)
		}
		stored, err := l.Transaction(ctx, testCaller, a.tx.ID)
		if err != nil || !stored.SameFields(c.tx) || stored.Result() != c.out.Result {
			t.Fatalf("%s stored as %+v (%v), created as %+v / %+v", a.tx.ID, stored, err, c.tx, c.out.Result)
		}
		switch {
		case a.out.Created:
		case errors.Is(a.out.Err, ErrConflict):
			if stored.SameFields(a.tx) {
				t.Fatalf("%s: conflict although the fields are the stored ones", a.tx.ID)
			}
		case !stored.SameFields(a.tx) || a.out.Result != c.out.Result:
			t.Fatalf("%s: answer %+v for %+v, stored %+v", a.tx.ID, a.out, a.tx, stored)
		}
	}
	if n := countRows(t, db); n != int64(len(created)) {
		t.Fatalf("%d rows for %d created ids", n, len(created))
	}
	auditLedger(t, db)
	t.Logf("%d answers, %d ids created, %d batch statements run again after a race", len(answers),
		len(created), l.reruns.Load())
}

// TestProcessBatchRunsAgainAfterARace: a concurrent request holds an account's lock and records one of the
// batch's ids; the batch, whose snapshot predates that commit, must not count the id's debit against the
// next item of that account. Its statement fails as raced and runs again: the id is a replay and the next
// item is approved on the balance really left.
func TestProcessBatchRunsAgainAfterARace(t *testing.T) {
	l, db := newLedger(t)
	ctx := context.Background()
	sqlDB, _ := db.DB()
	x := newTx("ACC-000001", 100, "EUR").Normalize()
	other, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback() //nolint:errcheck
	if _, err := other.ExecContext(ctx, processPositional, x.ID.String(), x.StoreID, x.AccountID, x.Amount,
		x.Currency, x.CreatedAt, testCaller); err != nil {
		t.Fatal(err)
	}
	y := newTx("ACC-000001", 850, "EUR") // 1000 - 100 = 900 are left: approved
	type result struct {
		outs []Outcome
		err  error
	}
	done := make(chan result, 1)
	go func() {
		outs, err := l.ProcessBatch(ctx, testCaller, []payment.Transaction{x, y})
		done <- result{outs, err}
	}()
	waitForLockWait(t, sqlDB)
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil {
		t.Fatal(got.err)
	}
	if o := got.outs[0]; o.Created || o.Err != nil || o.Result.Status != payment.StatusApproved {
		t.Errorf("the id recorded concurrently: %+v, want a replay of its approval", o)
	}
	if o := got.outs[1]; !o.Created || o.Result.Status != payment.StatusApproved {
		t.Errorf("the next item of the account: %+v, want approved on the 900 left", o)
	}
	if b := balance(t, l, "ACC-000001"); b != 50 {
		t.Errorf("balance %d, want 50", b)
	}
	if l.reruns.Load() < 1 {
		t.Error("the batch statement did not run again")
	}
	auditLedger(t, db)
}

// waitForLockWait waits until a backend of this database waits for a lock.
func waitForLockWait(t *testing.T, sqlDB *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := sqlDB.QueryRow(`SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no statement waits for a lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProcessBatchHonoursTheDeadline: a batch stuck behind a lock (as behind a hung database) returns at the
// context's deadline with an error the server answers 503; whether the statement still committed once the
// lock was released or not, the retry answers each item once (created, or a replay of what was created).
func TestProcessBatchHonoursTheDeadline(t *testing.T) {
	repo, db := newLedger(t)
	ctx := context.Background()
	sqlDB, _ := db.DB()
	locker, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Rollback() //nolint:errcheck
	if _, err := locker.ExecContext(ctx, `SELECT 1 FROM accounts WHERE id = 'ACC-000002' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	batch := []payment.Transaction{newTx("ACC-000001", 10, "EUR"), newTx("ACC-000002", 10, "EUR")}
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := repo.ProcessBatch(dctx, testCaller, batch); err == nil || !postgres.Unavailable(err) {
		t.Fatalf("ProcessBatch behind a lock returned %v; want an Unavailable error at the deadline", err)
	}
	if err := locker.Rollback(); err != nil {
		t.Fatal(err)
	}
	outs, err := repo.ProcessBatch(ctx, testCaller, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range outs {
		if o.Err != nil || o.Result.Status != payment.StatusApproved {
			t.Fatalf("retry, item %d: %+v", i, o)
		}
	}
	if n := countRows(t, db); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
	auditLedger(t, db)
}

// TestProcessBatchTakesIDsInOneOrder races batches that share no account but share ids (each worker sends
// the same ids with its own account: all but the first to record an id get conflicts), each batch in its own
// shuffled order. Only the ids' index entries are contended; a batch that took them in its own order would
// deadlock with another taking them in the opposite one. None does, and each id is created once.
func TestProcessBatchTakesIDsInOneOrder(t *testing.T) {
	l, db := newLedger(t)
	ctx := context.Background()
	if _, err := Seed(ctx, db, 8, 1_000_000, "EUR"); err != nil {
		t.Fatal(err)
	}
	ids := make([]uuid.UUID, 60)
	for i := range ids {
		ids[i] = uuid.New()
	}
	created := time.Now()
	var mu sync.Mutex
	winners := map[uuid.UUID]string{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 5))
			account := AccountID(w + 1)
			for range 10 {
				var batch []payment.Transaction
				for _, i := range r.Perm(len(ids))[:20] {
					batch = append(batch, payment.Transaction{ID: ids[i], StoreID: "s", AccountID: account,
						Amount: 1, Currency: "EUR", CreatedAt: created})
				}
				outs, err := l.ProcessBatch(ctx, testCaller, batch)
				if err != nil {
					t.Errorf("ProcessBatch: %v", err) // a deadlock (40P01) would fail the statement
					return
				}
				mu.Lock()
				for i, o := range outs {
					if o.Created {
						if prev, dup := winners[batch[i].ID]; dup {
							t.Errorf("%s created by %s and %s", batch[i].ID, prev, account)
						}
						winners[batch[i].ID] = account
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n := countRows(t, db); n != int64(len(winners)) {
		t.Fatalf("%d rows, %d ids created", n, len(winners))
	}
	auditLedger(t, db)
}
