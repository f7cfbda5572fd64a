// Package banktest starts a real Bank for tests: bank.NewServer over bank.NewRepository on its own fresh
// PostgreSQL database (pgtest), served over HTTPS with client certificates (a pki CA) as the Bank serves
// them — verified when presented, the caller allowed only with the Store's certificate's ID — behind a
// TCP proxy the test can switch off (Down/Up) and a wrapper that injects faults (503s, connection resets
// before or after processing, answers slower than the client's timeout) and counts what reaches the Bank.
//
// The package using it must run its tests through pgtest.Main.
package banktest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/bank"
	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/caller"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/web"
	"github.com/txmesh/txmesh/src/localenv/httpfault"
	"github.com/txmesh/txmesh/src/localenv/pki"
)

// Options shape the Bank's seed.
type Options struct {
	Accounts int    // ACC-000001…ACC-<Accounts>; default 100
	Balance  int64  // each account's initial balance; default 1_000_000
	Currency string // default EUR
	// NoBatch makes the Bank answer POST /v1/transactions/batch 404, as a Bank from before that endpoint.
	NoBatch bool
}

// Faults are injected per request (httpfault.Faults: what a load balancer, a sidecar or the network does to a
// request or its answer).
type Faults = httpfault.Faults

// Bank is a running test Bank.
type Bank struct {
	DSN   string
	DB    *gorm.DB
	Certs pki.Files // CA, the Bank's server certificate and a client certificate for the Store
	URL   string    // https://127.0.0.1:<proxy port>
	Proxy *Proxy

	faults   *httpfault.Injector
	requests atomic.Int64
	batches  atomic.Int64
	// refusedBatches counts batch requests a NoBatch Bank answered 404.
	refusedBatches atomic.Int64
	created        atomic.Int64
	inFlight       atomic.Int64

	mu    sync.Mutex
	sends map[string]int
	hook  func(*http.Request)
}

// Start starts a Bank on a fresh database; everything stops when the test ends.
func Start(t testing.TB, opts Options) *Bank {
	t.Helper()
	if opts.Accounts == 0 {
		opts.Accounts = 100
	}
	if opts.Balance == 0 {
		opts.Balance = 1_000_000
	}
	if opts.Currency == "" {
		opts.Currency = "EUR"
	}
	b := &Bank{DSN: pgtest.NewDatabase(t), faults: httpfault.New(), sends: map[string]int{}}
	db, err := postgres.Open(postgres.Config{URL: b.DSN, MaxConns: 20})
	if err != nil {
		t.Fatal(err)
	}
	b.DB = db
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	if _, err := postgres.Migrate(ctx, sqlDB, bank.Migrations(), bank.MigrationLockID, log); err != nil {
		t.Fatal(err)
	}
	if _, err := bank.Seed(ctx, db, opts.Accounts, opts.Balance, opts.Currency); err != nil {
		t.Fatal(err)
	}
	if b.Certs, err = pki.Write(t.TempDir(), "store", "127.0.0.1", "localhost"); err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := web.ServerConfig{TLSCertFile: b.Certs.ServerCert, TLSKeyFile: b.Certs.ServerKey,
		TLSClientCAFile: b.Certs.CA, ClientCertOptional: true}.TLS()
	if err != nil {
		t.Fatal(err)
	}
	callers, err := caller.New(caller.Config{Source: caller.SourceTLS, Allowed: caller.List{b.Certs.ClientID}}, true)
	if err != nil {
		t.Fatal(err)
	}
	inner := bank.NewServer(bank.NewRepository(db), callers,
		web.NewHealth(func(context.Context) error { return nil }), prometheus.NewRegistry(), log)
	handler := b.wrap(inner)
	if opts.NoBatch {
		wrapped := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/transactions/batch" {
				b.refusedBatches.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no such route"}}`))
				return
			}
			wrapped.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = tlsCfg
	srv.StartTLS()
	b.Proxy = NewProxy(t, srv.Listener.Addr().String())
	b.URL = "https://" + b.Proxy.Addr()
	t.Cleanup(func() {
		b.faults.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return b
}

// SetFaults changes the injected faults from the next request on.
func (b *Bank) SetFaults(f Faults) { b.faults.Set(f) }

// OnRequest registers f, called for every request that reaches the Bank before anything else (e.g. to
// timestamp arrivals). Set it before requests flow.
func (b *Bank) OnRequest(f func(*http.Request)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hook = f
}

// Stats counts what reached the Bank.
type Stats struct {
	Requests int64 // transactions received (faulty or not): one per POST /v1/transactions, each item of a batch
	Batches  int64 // POST /v1/transactions/batch received
	Refused  int64 // of them, answered 404 by a NoBatch Bank (not counted in Batches)
	Distinct int64 // distinct transaction ids among them
	Created  int64 // first processings (201, also as batch items)
	InFlight int64 // requests being handled now
	// Foreign counts the answers given in the Bank's place with a status (Unavailable, Deny, NoRoute,
	// DenyAfter); Corrupted the requests garbled on their way (Corrupt).
	Foreign, Corrupted int64
}

// Duplicates is how many transactions received repeated an id already received.
func (s Stats) Duplicates() int64 { return s.Requests - s.Distinct }

// Stats returns the counters.
func (b *Bank) Stats() Stats {
	b.mu.Lock()
	distinct := int64(len(b.sends))
	b.mu.Unlock()
	f := b.faults.Stats()
	return Stats{Requests: b.requests.Load(), Batches: b.batches.Load(), Refused: b.refusedBatches.Load(),
		Distinct: distinct, Created: b.created.Load(), InFlight: b.inFlight.Load(), Foreign: f.Foreign,
		Corrupted: f.Corrupted}
}

// Sends returns how many times id was received (alone or in a batch).
func (b *Bank) Sends(id uuid.UUID) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sends[id.String()]
}

// Client returns a Bank client speaking mTLS with the Store's certificate.
func (b *Bank) Client(t testing.TB, timeout time.Duration, maxConns int) *bankclient.Client {
	t.Helper()
	tlsCfg, err := bankclient.TLSConfig(b.Certs.CA, b.Certs.ClientCert, b.Certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bankclient.New(b.URL, bankclient.HTTPClient(timeout, maxConns, tlsCfg))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// StoreEnv is the Store's environment for this Bank (BANK_URL and the mTLS files).
func (b *Bank) StoreEnv() map[string]string {
	return map[string]string{"BANK_URL": b.URL, "BANK_CA_FILE": b.Certs.CA,
		"BANK_CLIENT_CERT_FILE": b.Certs.ClientCert, "BANK_CLIENT_KEY_FILE": b.Certs.ClientKey}
}

// Balance returns an account's balance.
func (b *Bank) Balance(t testing.TB, account string) int64 {
	t.Helper()
	a, err := bank.NewRepository(b.DB).Account(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

// Record returns the Bank's row for id, or false.
func (b *Bank) Record(t testing.TB, id uuid.UUID) (payment.Record, bool) {
	t.Helper()
	rec, _, err := bank.NewRepository(b.DB).Stored(context.Background(), id)
	if err != nil {
		return payment.Record{}, false
	}
	return rec, true
}

// Transactions counts the Bank's transaction rows.
func (b *Bank) Transactions(t testing.TB) int64 {
	t.Helper()
	var n int64
	if err := b.DB.Raw("SELECT count(*) FROM transactions").Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// wrap counts requests and injects the faults around the real Bank handler (for batches too: a fault hits
// the whole batch).
func (b *Bank) wrap(inner http.Handler) http.Handler {
	faulty := b.faults.Wrap(inner, func(r *http.Request, rec *httptest.ResponseRecorder) {
		b.created.Add(created(r.URL.Path == "/v1/transactions/batch", rec))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		batch := r.URL.Path == "/v1/transactions/batch"
		if r.Method != http.MethodPost || (r.URL.Path != "/v1/transactions" && !batch) {
			inner.ServeHTTP(w, r)
			return
		}
		b.inFlight.Add(1)
		defer b.inFlight.Add(-1)
		ids := []string{r.Header.Get(payment.IdempotencyHeader)}
		if batch {
			b.batches.Add(1)
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var req struct {
				Transactions []struct {
					ID string `json:"id"`
				} `json:"transactions"`
			}
			_ = json.Unmarshal(body, &req)
			ids = ids[:0]
			for _, tx := range req.Transactions {
				ids = append(ids, tx.ID)
			}
		}
		b.requests.Add(int64(len(ids)))
		b.mu.Lock()
		for _, id := range ids {
			b.sends[id]++
		}
		hook := b.hook
		b.mu.Unlock()
		if hook != nil {
			hook(r)
		}
		faulty.ServeHTTP(w, r)
	})
}

// created counts the first processings in an answer: a 201, or the 201 items of a batch's answer.
func created(batch bool, rec *httptest.ResponseRecorder) int64 {
	if !batch {
		if rec.Code == http.StatusCreated {
			return 1
		}
		return 0
	}
	var resp payment.BatchResponse
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &resp) != nil {
		return 0
	}
	n := int64(0)
	for _, it := range resp.Results {
		if it.Status == http.StatusCreated {
			n++
		}
	}
	return n
}
