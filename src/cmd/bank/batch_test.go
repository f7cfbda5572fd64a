package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

func (b bankUnderTest) postBatch(t *testing.T, txs []payment.Transaction) (reply, []payment.BatchItem, error) {
	t.Helper()
	data, err := json.Marshal(payment.BatchRequest{Transactions: txs})
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.do(t, "POST", "/v1/transactions/batch", "application/json", data)
	if err != nil || r.status != http.StatusOK {
		return r, nil, err
	}
	var resp payment.BatchResponse
	if err := json.Unmarshal(r.body, &resp); err != nil || len(resp.Results) != len(txs) {
		t.Fatalf("batch answer %s: %v", r.body, err)
	}
	return r, resp.Results, nil
}

// auditBank checks what txaudit proves on the Bank's side: every balance is its seed minus its approved
// debits, and rows is the number of transactions.
func auditBank(t *testing.T, dsn string, rows int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, bad int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM accounts a
WHERE a.balance <> a.initial_balance - COALESCE((SELECT sum(amount) FROM transactions t
                                                 WHERE t.account_id = a.id AND t.status = 'approved'), 0))`).
		Scan(&n, &bad); err != nil {
		t.Fatal(err)
	}
	if n != rows || bad != 0 {
		t.Fatalf("audit: %d rows (want %d), %d accounts whose balance is not seed - approved debits", n, rows, bad)
	}
}

// TestConcurrentBatchesOfTheSameIDs: 20 batches of the same 30 transactions, each shuffled, and 30 single
// requests for them, all at once over HTTPS: each id is created once (one 201 in all the answers), every
// other answer is a 200 with the very body of that 201, no request fails, and the audit holds.
func TestConcurrentBatchesOfTheSameIDs(t *testing.T) {
	b := startBank(t, pgtest.NewDatabase(t), nil)
	var txs []payment.Transaction
	for i := range 30 {
		txs = append(txs, tx([]string{"ACC-000001", "ACC-000002", "ACC-000003"}[i%3], 1+int64(i)))
	}
	type answer struct {
		id     string
		status int
		body   []byte
	}
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			batch := append([]payment.Transaction(nil), txs...)
			r := rand.New(rand.NewPCG(uint64(w), 1))
			r.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
			rep, items, err := b.postBatch(t, batch)
			if err != nil || rep.status != http.StatusOK {
				t.Errorf("batch: %v %d %s", err, rep.status, rep.body)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for i, it := range items {
				answers = append(answers, answer{batch[i].ID.String(), it.Status, it.Body})
			}
		})
	}
	for _, x := range txs {
		wg.Go(func() {
			rep, err := b.post(t, x)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			answers = append(answers, answer{x.ID.String(), rep.status, bytes.TrimSpace(rep.body)})
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	first := map[string][]byte{}
	for _, a := range answers {
		if a.status == http.StatusCreated {
			if _, dup := first[a.id]; dup {
				t.Fatalf("%s created twice", a.id)
			}
			first[a.id] = a.body
		}
	}
	for _, a := range answers {
		if a.status != http.StatusCreated && (a.status != http.StatusOK || !bytes.Equal(a.body, first[a.id])) {
			t.Fatalf("%s: %d %s; the 201 was %s", a.id, a.status, a.body, first[a.id])
		}
	}
	if len(first) != len(txs) {
		t.Fatalf("%d ids created, want %d", len(first), len(txs))
	}
	auditBank(t, b.dsn, int64(len(txs)))
}

// TestDatabaseFailsMidBatch: a batch is inside its statement — it has locked its first account and waits
// for the second, held by another session — when PostgreSQL is killed (kill -9 of the postmaster). The batch
// is answered 503 + Retry-After as a whole; after the restart (crash recovery) nothing of it is in the
// database, and the same batch sent again is processed: every item 201, once, and the audit holds.
func TestDatabaseFailsMidBatch(t *testing.T) {
	ctx := context.Background()
	srv, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.CreateDatabase(ctx, "bank"); err != nil {
		t.Fatal(err)
	}
	b := startBank(t, srv.DSN("bank")+"&connect_timeout=1", nil)
	batch := []payment.Transaction{tx("ACC-000001", 10), tx("ACC-000002", 20), tx("ACC-000003", 30),
		tx("ACC-000001", 40)}
	locker, err := pgx.Connect(ctx, srv.DSN("bank"))
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	if _, err := locker.Exec(ctx, `BEGIN; SELECT 1 FROM accounts WHERE id = 'ACC-000002' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		rep reply
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, _, err := b.postBatch(t, batch)
		done <- result{rep, err}
	}()
	// Watched from another connection: inside the locker's transaction pg_stat_activity would stay the
	// snapshot of its first read.
	watch, err := pgx.Connect(ctx, srv.DSN("bank"))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query LIKE '%unnest%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch never waited for the locked account")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	got := <-done
	var e payment.ErrorBody
	if got.err != nil || got.rep.status != http.StatusServiceUnavailable || got.rep.header.Get("Retry-After") == "" ||
		json.Unmarshal(got.rep.body, &e) != nil || e.Error.Code != payment.CodeUnavailable {
		t.Fatalf("a batch whose database died: %v %d %v %s", got.err, got.rep.status, got.rep.header, got.rep.body)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	auditBank(t, b.dsn, 0)
	deadline = time.Now().Add(15 * time.Second)
	for {
		rep, items, err := b.postBatch(t, batch)
		if err == nil && rep.status == http.StatusOK {
			for i, it := range items {
				if it.Status != http.StatusCreated {
					t.Fatalf("item %d after the restart: %d %s (was it half-applied?)", i, it.Status, it.Body)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the batch still fails after the restart: %v %d %s", err, rep.status, rep.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	auditBank(t, b.dsn, int64(len(batch)))
}
