package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/mock/gomock"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/store"
)

// Unit tests of the relay with the Bank mocked (gomock) over a real PostgreSQL outbox: the failure policy,
// the backoff, the breaker's accounting, the graceful stop. integration_test.go runs it against a real Bank.

func TestMain(m *testing.M) { pgtest.Main(m) }

// testLog is where relays log in tests: quiet unless RELAY_TEST_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("RELAY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newOutbox returns a Repository over a fresh migrated store database, and the database.
func newOutbox(t *testing.T, mode string) (*store.Repository, *gorm.DB, string) {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	db := openStoreDB(t, dsn, mode)
	sqlDB, _ := db.DB()
	if _, err := postgres.Migrate(context.Background(), sqlDB, store.Migrations(), store.MigrationLockID,
		slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return store.NewRepository(db, "store-test"), db, dsn
}

// openStoreDB opens dsn with a pgx query exec mode ("" for the default).
func openStoreDB(t *testing.T, dsn, mode string) *gorm.DB {
	t.Helper()
	db, err := postgres.Open(postgres.Config{URL: dsn, MaxConns: 10, QueryExecMode: mode})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

func fastConfig() Config {
	return Config{Mode: ModeSingle, BatchSize: 16, Concurrency: 4, PollInterval: 50 * time.Millisecond, Lease: 10 * time.Second,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, BreakerFailures: 1000,
		BreakerOpenTimeout: time.Second, Timeout: time.Second}
}

// running is a relay run in a goroutine.
type running struct {
	*Relay
	reg  *prometheus.Registry
	stop func()
}

func startRelay(t *testing.T, outbox Outbox, bank Bank, owner string, cfg Config) *running {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	r := New(outbox, bank, owner, cfg, reg, testLog().With("relay", owner))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("relay %s did not stop", owner)
			}
		})
	}
	t.Cleanup(stop)
	return &running{Relay: r, reg: reg, stop: stop}
}

func createPurchase(t *testing.T, repo *store.Repository, account string, amount int64) store.Purchase {
	t.Helper()
	p, _, err := repo.Create(context.Background(), store.NewPurchase{AccountID: account, Amount: amount,
		Currency: "EUR", Source: store.SourceAPI})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func getPurchase(t *testing.T, repo *store.Repository, id uuid.UUID) store.Purchase {
	t.Helper()
	p, err := repo.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBackoffCapAndJitter(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	prev := time.Duration(0)
	for failed := 1; failed <= 100; failed++ {
		want := min(b.Min<<min(failed-1, 20), b.Max) // the un-jittered exponential, capped
		lo, hi := b.Delay(failed, 0, 0), b.Delay(failed, 0, 0.999999)
		if lo != want/2 || hi > want || hi < want-want/1000 {
			t.Fatalf("failed=%d: jitter range [%s, %s], want [%s, %s]", failed, lo, hi, want/2, want)
		}
		if mid := b.Delay(failed, 0, 0.5); mid < prev {
			t.Fatalf("failed=%d: %s shorter than the previous %s", failed, mid, prev)
		} else {
			prev = mid
		}
		if hi > b.Max {
			t.Fatalf("failed=%d: %s exceeds the cap %s", failed, hi, b.Max)
		}
	}
	if d := b.Delay(1, 2*time.Second, 0); d != 2*time.Second {
		t.Fatalf("Retry-After 2s gave %s", d)
	}
	if d := b.Delay(1, time.Hour, 0); d != b.Max {
		t.Fatalf("Retry-After 1h gave %s, want the cap %s", d, b.Max)
	}
	// Jitter spreads: many draws give many different delays, all in range.
	seen := map[time.Duration]bool{}
	r := New(nil, nil, "x", fastConfig(), prometheus.NewRegistry(), testLog())
	for range 200 {
		d := b.Delay(4, 0, r.random())
		if d < 400*time.Millisecond || d > 800*time.Millisecond {
			t.Fatalf("delay %s outside [400ms, 800ms]", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct delays in 200 draws: no jitter", len(seen))
	}
}

// marked is the Bank's own error answer; foreign one from something in between (no marks).
func marked(status int, code, msg string) *bankclient.Error {
	return &bankclient.Error{StatusCode: status, Code: code, Message: msg, Marked: true}
}

func foreign(status int, body string) *bankclient.Error {
	return &bankclient.Error{StatusCode: status, Code: "http_" + strconv.Itoa(status), Message: body}
}

func TestClassify(t *testing.T) {
	wrap := func(e *bankclient.Error) error { return fmt.Errorf("post: %w", e) }
	timeout := &url.Error{Op: "Post", URL: "https://bank", Err: context.DeadlineExceeded}
	tests := []struct {
		name string
		err  error
		want outcome
	}{
		{"decision", nil, outcomeDone},
		{"the Bank's 400 invalid request", wrap(marked(400, payment.CodeInvalidRequest, "bad")), outcomeRejected},
		{"the Bank's 409 idempotency conflict", wrap(marked(409, payment.CodeIdempotencyConflict, "")), outcomeRejected},
		{"the Bank's 413 too large", wrap(marked(413, payment.CodePayloadTooLarge, "")), outcomeRejected},
		{"the Bank's 415 media type", wrap(marked(415, payment.CodeUnsupportedMediaType, "")), outcomeRejected},
		{"the Bank's 400 with another code", wrap(marked(400, "overloaded", "")), outcomeRetry},
		{"the Bank's 403 caller not allowed", wrap(marked(403, "caller_not_allowed", "")), outcomeRetry},
		{"the Bank's 404 no route", wrap(marked(404, payment.CodeNotFound, "no such route")), outcomeRetry},
		{"the Bank's 405", wrap(marked(405, payment.CodeMethodNotAllowed, "")), outcomeRetry},
		{"the Bank's 503", wrap(marked(503, payment.CodeUnavailable, "")), outcomeRetry},
		{"Envoy's 403 RBAC: access denied", wrap(foreign(403, "RBAC: access denied")), outcomeRetry},
		{"a 404 with an empty body", wrap(foreign(404, "")), outcomeRetry},
		{"an unmarked 400 with the Bank's body", wrap(&bankclient.Error{StatusCode: 400,
			Code: payment.CodeInvalidRequest}), outcomeRetry},
		{"an unmarked 409", wrap(foreign(409, "")), outcomeRetry},
		{"408 request timeout", wrap(foreign(408, "")), outcomeRetry},
		{"429 too many requests", wrap(foreign(429, "")), outcomeRetry},
		{"500", wrap(foreign(500, "")), outcomeRetry},
		{"502", wrap(foreign(502, "")), outcomeRetry},
		{"504", wrap(foreign(504, "upstream request timeout")), outcomeRetry},
		{"timeout", timeout, outcomeRetry},
		{"connection refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, outcomeRetry},
		{"connection reset", fmt.Errorf("post: %w", io.ErrUnexpectedEOF), outcomeRetry},
		{"invalid result", fmt.Errorf("%w: x", errBadResult), outcomeRetry},
		{"breaker open", gobreaker.ErrOpenState, outcomeNotSent},
		{"breaker probing", gobreaker.ErrTooManyRequests, outcomeNotSent},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("%s: classify = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// rejection is a mocked Bank's rejection of a send and its answer to the relay's lookup of the id that
// follows: a payment.Status (the Bank has a record of the same transaction, with that decision) or an error
// (bankclient.ErrNoSuchTransaction, or a failed lookup).
type rejection struct {
	err    error
	lookup any
}

func TestFailurePolicyWithMockedBank(t *testing.T) {
	unavailable := marked(503, payment.CodeUnavailable, "db down")
	conflict := marked(409, payment.CodeIdempotencyConflict, "different fields")
	invalid := marked(400, payment.CodeInvalidRequest, "bad")
	gone := bankclient.ErrNoSuchTransaction
	reset := fmt.Errorf("post transaction: %w", io.ErrUnexpectedEOF)
	tests := []struct {
		name       string
		answers    []any // payment.Status to decide (approved or declined), an error, or a rejection
		wantStatus store.Status
		wantCode   string
		wantError  string // last_error
		foreign    map[string]float64
		refusals   map[string]float64
	}{
		{name: "approved", answers: []any{payment.StatusApproved}, wantStatus: store.StatusApproved},
		{name: "declined", answers: []any{payment.StatusDeclined}, wantStatus: store.StatusDeclined},
		{name: "the Bank's 409, confirmed by its 404: dead-lettered", answers: []any{rejection{conflict, gone}},
			wantStatus: store.StatusRejected, wantCode: payment.CodeIdempotencyConflict, wantError: "different fields"},
		{name: "the Bank's 400, confirmed by its 404: dead-lettered", answers: []any{rejection{invalid, gone}},
			wantStatus: store.StatusRejected, wantCode: payment.CodeInvalidRequest, wantError: "bad"},
		{name: "a 400 for a transaction the Bank applied: its decision recorded",
			answers: []any{rejection{invalid, payment.StatusApproved}}, wantStatus: store.StatusApproved},
		{name: "a 400 the lookup cannot confirm: retried",
			answers:    []any{rejection{invalid, fmt.Errorf("look up: %w", foreign(503, "no healthy upstream"))}, payment.StatusDeclined},
			wantStatus: store.StatusDeclined, wantError: "not confirmed by a lookup",
			foreign: map[string]float64{"503": 1}},
		{name: "Envoy's 403 RBAC: access denied: retried, never a dead letter",
			answers:    []any{foreign(403, "RBAC: access denied"), foreign(403, "RBAC: access denied"), payment.StatusApproved},
			wantStatus: store.StatusApproved, wantError: "RBAC: access denied", foreign: map[string]float64{"403": 2}},
		{name: "a 404 without a body: retried", answers: []any{foreign(404, ""), payment.StatusApproved},
			wantStatus: store.StatusApproved, wantError: "answered 404", foreign: map[string]float64{"404": 1}},
		{name: "an unmarked 400 in the Bank's words: retried", answers: []any{&bankclient.Error{StatusCode: 400,
			Code: payment.CodeInvalidRequest, Message: "bad"}, payment.StatusApproved},
			wantStatus: store.StatusApproved, wantError: "bad", foreign: map[string]float64{"400": 1}},
		{name: "the Bank refuses the caller: retried", answers: []any{marked(403, "caller_not_allowed", "who?"),
			payment.StatusApproved}, wantStatus: store.StatusApproved, wantError: "who?",
			refusals: map[string]float64{"caller_not_allowed": 1}},
		{name: "503 then approved", answers: []any{unavailable, payment.StatusApproved},
			wantStatus: store.StatusApproved, wantError: "bank answered 503"},
		{name: "429 then 500 then declined", answers: []any{foreign(429, ""), marked(500, "internal", ""),
			payment.StatusDeclined}, wantStatus: store.StatusDeclined, wantError: "bank answered 500",
			foreign: map[string]float64{"429": 1}},
		{name: "reset then approved", answers: []any{reset, payment.StatusApproved}, wantStatus: store.StatusApproved,
			wantError: "unexpected EOF"},
		{name: "timeout then approved", answers: []any{context.DeadlineExceeded, payment.StatusApproved},
			wantStatus: store.StatusApproved, wantError: "deadline exceeded"},
		{name: "nonsense result then approved", answers: []any{payment.Status("maybe"), payment.StatusApproved},
			wantStatus: store.StatusApproved, wantError: "invalid result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, _, _ := newOutbox(t, "")
			p := createPurchase(t, repo, "ACC-000001", 700)
			bank := NewMockBank(gomock.NewController(t))
			var calls []any
			for _, a := range tt.answers {
				call := bank.EXPECT().Submit(gomock.Any(), p.Transaction())
				switch a := a.(type) {
				case payment.Status:
					res := payment.Result{ID: p.ID, Status: a, ProcessedAt: time.Now().UTC()}
					if a == payment.StatusDeclined {
						res.Reason = payment.ReasonInsufficientFunds
					}
					call.Return(res, nil)
				case error:
					call.Return(payment.Result{}, a)
				case rejection:
					call.Return(payment.Result{}, a.err)
					lookup := bank.EXPECT().Lookup(gomock.Any(), p.ID)
					switch l := a.lookup.(type) {
					case payment.Status:
						lookup.Return(payment.Record{Transaction: p.Transaction(), Status: l,
							ProcessedAt: time.Now().UTC()}, nil)
					case error:
						lookup.Return(payment.Record{}, l)
					}
					calls = append(calls, call.Call, lookup.Call)
					continue
				}
				calls = append(calls, call.Call)
			}
			gomock.InOrder(calls...) // and no call more: a dead letter is never resent
			r := startRelay(t, repo, bank, "relay-1", fastConfig())
			waitFor(t, 10*time.Second, "the outcome", func() bool {
				return getPurchase(t, repo, p.ID).Status != store.StatusPending
			})
			r.stop()
			got := getPurchase(t, repo, p.ID)
			if got.Status != tt.wantStatus || got.ErrorCode != tt.wantCode || got.Attempts != len(tt.answers) ||
				(tt.wantError == "") != (got.LastError == "") || !strings.Contains(got.LastError, tt.wantError) {
				t.Fatalf("purchase %+v; want status %s, code %q, %d attempts, last error ~%q", got, tt.wantStatus,
					tt.wantCode, len(tt.answers), tt.wantError)
			}
			if tt.wantStatus == store.StatusDeclined && got.Reason != payment.ReasonInsufficientFunds {
				t.Fatalf("reason %q", got.Reason)
			}
			retries := testutil.ToFloat64(r.m.deliveries.WithLabelValues("retry"))
			if int(retries) != len(tt.answers)-1 ||
				testutil.ToFloat64(r.m.deliveries.WithLabelValues(string(tt.wantStatus))) != 1 {
				t.Fatalf("deliveries: retry=%v %s=%v", retries, tt.wantStatus,
					testutil.ToFloat64(r.m.deliveries.WithLabelValues(string(tt.wantStatus))))
			}
			wantCounts(t, "store_relay_foreign_answers_total", r.m.foreign, tt.foreign, foreignCodes)
			wantCounts(t, "store_relay_bank_refusals_total", r.m.refusals, tt.refusals, refusalCodes)
		})
	}
}

// wantCounts fails unless the counter vector holds exactly want (label value → count), beside the zeroes
// exported from the start (zeroes: foreignCodes or refusalCodes).
func wantCounts(t *testing.T, name string, v *prometheus.CounterVec, want map[string]float64, zeroes []string) {
	t.Helper()
	all := maps.Clone(want)
	if all == nil {
		all = map[string]float64{}
	}
	for _, c := range zeroes {
		if _, ok := all[c]; !ok {
			all[c] = 0
		}
	}
	if got := testutil.CollectAndCount(v); got != len(all) {
		t.Errorf("%s: %d series, want %v", name, got, all)
	}
	for label, n := range all {
		if got := testutil.ToFloat64(v.WithLabelValues(label)); got != n {
			t.Errorf("%s{%s} = %v, want %v", name, label, got, n)
		}
	}
}

// The refusals the alerts are for are exported as zeroes before the first one: their series exist from the
// start, and increase() counts the first refusal.
func TestRefusalCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	newMetrics(reg)
	want := `# HELP store_relay_bank_refusals_total The Bank's own 4xx answers that no purchase is at fault for (e.g. caller_not_allowed, not_found), by error code; retried.
# TYPE store_relay_bank_refusals_total counter
store_relay_bank_refusals_total{code="caller_not_allowed"} 0
store_relay_bank_refusals_total{code="not_found"} 0
# HELP store_relay_foreign_answers_total Answers to the relay without the Bank's marks (a sidecar, a proxy, a route in between), by HTTP status code; retried, never a dead letter.
# TYPE store_relay_foreign_answers_total counter
store_relay_foreign_answers_total{code="403"} 0
store_relay_foreign_answers_total{code="404"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "store_relay_bank_refusals_total",
		"store_relay_foreign_answers_total"); err != nil {
		t.Fatal(err)
	}
}

func TestRejectionsDoNotOpenTheBreaker(t *testing.T) {
	repo, _, _ := newOutbox(t, "")
	for range 10 {
		createPurchase(t, repo, "ACC-000001", 1)
	}
	bank := NewMockBank(gomock.NewController(t))
	bank.EXPECT().Submit(gomock.Any(), gomock.Any()).Times(10).
		Return(payment.Result{}, marked(409, payment.CodeIdempotencyConflict, ""))
	bank.EXPECT().Lookup(gomock.Any(), gomock.Any()).Times(10).Return(payment.Record{}, bankclient.ErrNoSuchTransaction)
	cfg := fastConfig()
	cfg.BreakerFailures = 2
	r := startRelay(t, repo, bank, "relay-1", cfg)
	waitFor(t, 10*time.Second, "10 dead letters", func() bool {
		n, err := repo.CountByStatus(context.Background())
		return err == nil && n[store.StatusRejected] == 10
	})
	if s := r.BreakerState(); s != "closed" {
		t.Fatalf("breaker %s after rejections, want closed", s)
	}
}

// TestForeignAnswersOpenTheBreaker: answers without the Bank's marks (a sidecar's 403 for every request,
// as an AuthorizationPolicy mistake gives) are failures of the path to the Bank: they open the breaker,
// are counted, and end no purchase.
func TestForeignAnswersOpenTheBreaker(t *testing.T) {
	repo, _, _ := newOutbox(t, "")
	for range 3 {
		createPurchase(t, repo, "ACC-000001", 1)
	}
	bank := NewMockBank(gomock.NewController(t))
	bank.EXPECT().Submit(gomock.Any(), gomock.Any()).MinTimes(2).
		Return(payment.Result{}, foreign(403, "RBAC: access denied"))
	cfg := fastConfig()
	cfg.Concurrency, cfg.BreakerFailures, cfg.BreakerOpenTimeout = 1, 2, time.Minute
	r := startRelay(t, repo, bank, "relay-1", cfg)
	waitFor(t, 10*time.Second, "the breaker to open", func() bool { return r.BreakerState() == "open" })
	r.stop()
	n, err := repo.CountByStatus(context.Background())
	if err != nil || n[store.StatusPending] != 3 {
		t.Fatalf("purchases by status %v (%v), want 3 pending", n, err)
	}
	if got := testutil.ToFloat64(r.m.foreign.WithLabelValues("403")); got != 2 {
		t.Errorf("store_relay_foreign_answers_total{403} = %v, want 2", got)
	}
}

func TestBreakerStopsCallingTheMockedBank(t *testing.T) {
	repo, _, _ := newOutbox(t, "")
	for range 5 {
		createPurchase(t, repo, "ACC-000001", 1)
	}
	ctrl := gomock.NewController(t)
	bank := NewMockBank(ctrl)
	var mu sync.Mutex
	calls := 0
	healthy := false
	bank.EXPECT().Submit(gomock.Any(), gomock.Any()).AnyTimes().DoAndReturn(
		func(_ context.Context, tx payment.Transaction) (payment.Result, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if !healthy {
				return payment.Result{}, &bankclient.Error{StatusCode: 503, Code: payment.CodeUnavailable}
			}
			return payment.Result{ID: tx.ID, Status: payment.StatusApproved, ProcessedAt: time.Now()}, nil
		})
	cfg := fastConfig()
	cfg.Concurrency, cfg.BreakerFailures, cfg.BreakerOpenTimeout = 1, 3, 300*time.Millisecond
	r := startRelay(t, repo, bank, "relay-1", cfg)
	waitFor(t, 10*time.Second, "the breaker to open", func() bool { return r.BreakerState() == "open" })
	mu.Lock()
	atOpen := calls
	healthy = true
	mu.Unlock()
	if atOpen != 3 {
		t.Fatalf("%d calls when the breaker opened, want 3", atOpen)
	}
	time.Sleep(100 * time.Millisecond) // well inside the open timeout
	mu.Lock()
	if calls != atOpen {
		t.Fatalf("%d calls while open", calls-atOpen)
	}
	mu.Unlock()
	waitFor(t, 10*time.Second, "the backlog to drain", func() bool {
		b, err := repo.Backlog(context.Background())
		return err == nil && b.Size == 0
	})
	if s := r.BreakerState(); s != "closed" {
		t.Fatalf("breaker %s after a successful probe", s)
	}
	for _, tr := range [][2]string{{"closed", "open"}, {"open", "half-open"}, {"half-open", "closed"}} {
		if v := testutil.ToFloat64(r.m.transitions.WithLabelValues(tr[0], tr[1])); v != 1 {
			t.Errorf("transitions %s→%s = %v, want 1", tr[0], tr[1], v)
		}
	}
	if v := testutil.ToFloat64(r.m.breakerState); v != 0 {
		t.Errorf("store_breaker_state = %v, want 0", v)
	}
}

func TestStopWaitsForSendsInFlight(t *testing.T) {
	repo, db, _ := newOutbox(t, "")
	p := createPurchase(t, repo, "ACC-000001", 1)
	bank := NewMockBank(gomock.NewController(t))
	entered, release := make(chan struct{}), make(chan struct{})
	bank.EXPECT().Submit(gomock.Any(), p.Transaction()).DoAndReturn(
		func(ctx context.Context, tx payment.Transaction) (payment.Result, error) {
			close(entered)
			<-release
			if ctx.Err() != nil {
				return payment.Result{}, ctx.Err() // the stop signal must not cancel a send in flight
			}
			return payment.Result{ID: tx.ID, Status: payment.StatusApproved, ProcessedAt: time.Now()}, nil
		})
	r := startRelay(t, repo, bank, "relay-1", fastConfig())
	<-entered
	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Run returned with a send in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-stopped
	if got := getPurchase(t, repo, p.ID); got.Status != store.StatusApproved {
		t.Fatalf("after a graceful stop: %+v", got)
	}
	var claimed int64
	if err := db.Raw("SELECT count(*) FROM outbox WHERE claim_token IS NOT NULL").Scan(&claimed).Error; err != nil ||
		claimed != 0 {
		t.Fatalf("%d claims left behind (%v)", claimed, err)
	}
}

func TestConfigValidation(t *testing.T) {
	if err := fastConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := batchConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"no concurrency":       func(c *Config) { c.Concurrency = 0 },
		"unknown mode":         func(c *Config) { c.Mode = "bulk" },
		"batch over the limit": func(c *Config) { c.Mode, c.BatchSize = ModeBatch, payment.MaxBatchItems+1 },
		"no batch":             func(c *Config) { c.BatchSize = 0 },
		"no poll":              func(c *Config) { c.PollInterval = 0 },
		"max below min":        func(c *Config) { c.MaxBackoff = 0 },
		"no breaker threshold": func(c *Config) { c.BreakerFailures = 0 },
		"lease shorter than a send": func(c *Config) {
			c.Timeout = 5 * time.Second
		},
	} {
		c := fastConfig()
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
