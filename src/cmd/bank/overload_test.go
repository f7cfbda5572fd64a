package main

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/web"
	"github.com/txmesh/txmesh/src/internal/webtest"
)

func (b bankUnderTest) metric(t *testing.T, name string) float64 {
	t.Helper()
	v, err := webtest.Metric(b.client, b.url+web.PathMetrics, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOverloadShedsBeyondTheBound: with HTTP_MAX_IN_FLIGHT=4 and the transactions table locked against
// inserts, 4 transactions stay in the Bank's handler; 60 more are answered 503 overloaded with Retry-After at
// once, /healthz, /readyz and /metrics answer meanwhile; unlocked, the 4 are created. The shed ones changed
// nothing (no row, no debit), and sent again — what the Store's relay does after a 503 — each is applied once.
func TestOverloadShedsBeyondTheBound(t *testing.T) {
	const bound, burst = 4, 60
	dsn := pgtest.NewDatabase(t)
	b := startBank(t, dsn, map[string]string{"HTTP_MAX_IN_FLIGHT": "4", "DB_QUERY_TIMEOUT": "60s"})
	ctx := context.Background()
	lock, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	if _, err := lock.Exec(ctx, "BEGIN; LOCK TABLE transactions IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	held := make(chan reply, bound)
	for range bound {
		go func() {
			r, err := b.post(t, tx("ACC-000001", 100))
			if err != nil {
				t.Error(err)
			}
			held <- r
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for b.metric(t, "bank_http_requests_in_flight") < bound {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d transactions in flight after 20s", bound)
		}
		time.Sleep(10 * time.Millisecond)
	}

	shed := make([]payment.Transaction, burst)
	replies := make([]reply, burst)
	var wg sync.WaitGroup
	for i := range burst {
		shed[i] = tx("ACC-000002", 10)
		wg.Go(func() {
			r, err := b.post(t, shed[i])
			if err != nil {
				t.Error(err)
			}
			replies[i] = r
		})
	}
	wg.Wait()
	for _, r := range replies {
		webtest.WantOverloaded(t, webtest.Answer{Status: r.status, Header: r.header, Body: string(r.body)},
			"transaction beyond the bound")
	}
	for _, path := range []string{web.PathHealthz, web.PathReadyz} {
		if r, err := b.do(t, http.MethodGet, path, "", nil); err != nil || r.status != http.StatusOK {
			t.Fatalf("GET %s with the bound full: %d %v %s", path, r.status, err, r.body)
		}
	}
	if v := b.metric(t, "bank_http_requests_in_flight"); v != bound {
		t.Fatalf("in flight %v with the bound full, want %d", v, bound)
	}
	if v := b.metric(t, "bank_http_requests_shed_total"); v != burst {
		t.Fatalf("shed %v, want %d", v, burst)
	}
	if _, err := lock.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	for range bound {
		if r := <-held; r.status != http.StatusCreated {
			t.Fatalf("held transaction after the unlock: %d %s", r.status, r.body)
		}
	}
	if s := b.snapshot(t); s.rows != bound || s.balance != 3000-bound*100 {
		t.Fatalf("%d rows, total balance %d; want %d rows and %d: a shed transaction changed something", s.rows,
			s.balance, bound, 3000-bound*100)
	}
	for _, one := range shed {
		if r, err := b.do(t, http.MethodGet, "/v1/transactions/"+one.ID.String(), "", nil); err != nil ||
			r.status != http.StatusNotFound {
			t.Fatalf("shed transaction %s: %d %v %s; want 404", one.ID, r.status, err, r.body)
		}
	}
	// Sent again, one at a time: each is created once and approved.
	for _, one := range shed {
		r, err := b.post(t, one)
		var res payment.Result
		if err != nil || r.status != http.StatusCreated || json.Unmarshal(r.body, &res) != nil ||
			res.Status != payment.StatusApproved {
			t.Fatalf("retry of a shed transaction: %d %v %s", r.status, err, r.body)
		}
	}
	if s := b.snapshot(t); s.rows != bound+burst || s.balance != 3000-bound*100-burst*10 {
		t.Fatalf("after the retries: %d rows, total balance %d", s.rows, s.balance)
	}
}
