package bank

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/mock/gomock"

	"github.com/txmesh/txmesh/src/internal/caller"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/web"
)

// Unit tests of the HTTP layer with the Ledger mocked: decoding, the error mapping and the metrics. The
// database behaviour is proven against a real PostgreSQL in ledger_test.go and src/cmd/bank.

var sample = payment.Transaction{
	ID: uuid.MustParse("0b7c6a43-3c4e-4f5e-9a0b-6b9d3f1e2a10"), StoreID: "store-1", AccountID: "ACC-000001",
	Amount: 500, Currency: "EUR", CreatedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
}

func sampleBody() string { // the JSON wire form of sample
	b, _ := json.Marshal(sample)
	return string(b)
}

type fixture struct {
	ledger *MockLedger
	reg    *prometheus.Registry
	srv    http.Handler
}

func newFixture(t *testing.T) fixture {
	ctrl := gomock.NewController(t)
	f := fixture{ledger: NewMockLedger(ctrl), reg: prometheus.NewRegistry()}
	health := web.NewHealth(func(context.Context) error { return nil })
	f.srv = NewServer(f.ledger, anonymous(), health, f.reg, slog.New(slog.DiscardHandler))
	return f
}

func (f fixture) do(method, path, contentType, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, req)
	return rec
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) payment.APIError {
	t.Helper()
	var body payment.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", rec.Body.String(), err)
	}
	return body.Error
}

func TestPostTransactionOutcomes(t *testing.T) {
	result := payment.Result{ID: sample.ID, Status: payment.StatusApproved, ProcessedAt: time.Now().UTC()}
	tests := []struct {
		name       string
		created    bool
		err        error
		wantStatus int
		wantCode   string
		retryAfter bool
		counted    float64 // bank_transactions_total{approved} afterwards
	}{
		{name: "first processing", created: true, wantStatus: 201, counted: 1},
		{name: "replay", created: false, wantStatus: 200},
		{name: "conflict", err: ErrConflict, wantStatus: 409, wantCode: payment.CodeIdempotencyConflict},
		{name: "database down", err: fmt.Errorf("process: %w", &pgconn.ConnectError{}), wantStatus: 503,
			wantCode: payment.CodeUnavailable, retryAfter: true},
		{name: "database timeout", err: fmt.Errorf("process: %w", context.DeadlineExceeded), wantStatus: 503,
			wantCode: payment.CodeUnavailable, retryAfter: true},
		{name: "serialization failure", err: &pgconn.PgError{Code: "40001"}, wantStatus: 503,
			wantCode: payment.CodeUnavailable, retryAfter: true},
		{name: "bug", err: errors.New("boom"), wantStatus: 500, wantCode: payment.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.ledger.EXPECT().Process(gomock.Any(), caller.Anonymous, sample).Return(result, tt.created, tt.err)
			rec := f.do("POST", "/v1/transactions", "application/json", sampleBody())
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantCode != "" {
				if got := errorCode(t, rec).Code; got != tt.wantCode {
					t.Fatalf("code %q, want %q", got, tt.wantCode)
				}
			} else {
				var got payment.Result
				if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || !got.ProcessedAt.Equal(result.ProcessedAt) ||
					got.ID != result.ID || got.Status != result.Status {
					t.Fatalf("body %s (%v), want %+v", rec.Body, err, result)
				}
			}
			if got := rec.Header().Get("Retry-After") != ""; got != tt.retryAfter {
				t.Fatalf("Retry-After present=%v, want %v", got, tt.retryAfter)
			}
			approved := testutil.ToFloat64(prometheusCounter(t, f.reg, "approved", ""))
			if approved != tt.counted {
				t.Fatalf("bank_transactions_total{approved} = %v, want %v", approved, tt.counted)
			}
		})
	}
}

// prometheusCounter finds bank_transactions_total{status,reason} in the registry.
func prometheusCounter(t *testing.T, reg *prometheus.Registry, status, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bank_transactions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["status"] == status && labels["reason"] == reason {
				c := prometheus.NewCounter(prometheus.CounterOpts{Name: "copy"})
				c.Add(m.GetCounter().GetValue())
				return c
			}
		}
	}
	t.Fatalf("bank_transactions_total{status=%q,reason=%q} not exported", status, reason)
	return nil
}

// TestBadInputNeverReachesTheLedger: the mock has no expectations, so any call to it fails the test.
func TestBadInputNeverReachesTheLedger(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		header                  []string
		wantStatus              int
		wantCode, wantField     string
	}{
		{"wrong content type", "text/plain", sampleBody(), nil, 415, payment.CodeUnsupportedMediaType, "Content-Type"},
		{"no content type", "", sampleBody(), nil, 415, payment.CodeUnsupportedMediaType, "Content-Type"},
		{"too large", "application/json", `{"id":"` + strings.Repeat("x", payment.MaxBodyBytes) + `"}`, nil, 413,
			payment.CodePayloadTooLarge, ""},
		{"malformed", "application/json", `{"id":`, nil, 400, payment.CodeInvalidRequest, ""},
		{"invalid amount", "application/json", strings.Replace(sampleBody(), `"amount":500`, `"amount":5.5`, 1),
			nil, 400, payment.CodeInvalidRequest, "amount"},
		{"idempotency key differs", "application/json", sampleBody(),
			[]string{payment.IdempotencyHeader, uuid.NewString()}, 400, payment.CodeInvalidRequest,
			payment.IdempotencyHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			rec := f.do("POST", "/v1/transactions", tt.contentType, tt.body, tt.header...)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.wantStatus, rec.Body)
			}
			e := errorCode(t, rec)
			if e.Code != tt.wantCode {
				t.Fatalf("code %q, want %q", e.Code, tt.wantCode)
			}
			if _, ok := e.Fields[tt.wantField]; tt.wantField != "" && !ok {
				t.Fatalf("fields %v lack %q", e.Fields, tt.wantField)
			}
		})
	}
}

func TestIdempotencyKeyEqualToIDIsAccepted(t *testing.T) {
	f := newFixture(t)
	f.ledger.EXPECT().Process(gomock.Any(), caller.Anonymous, sample).Return(payment.Result{ID: sample.ID}, true, nil)
	rec := f.do("POST", "/v1/transactions", "application/json; charset=utf-8", sampleBody(),
		payment.IdempotencyHeader, sample.ID.String())
	if rec.Code != 201 {
		t.Fatalf("status %d, want 201 (%s)", rec.Code, rec.Body)
	}
}

func TestGetRoutes(t *testing.T) {
	f := newFixture(t)
	f.ledger.EXPECT().Transaction(gomock.Any(), caller.Anonymous, sample.ID).Return(payment.Record{}, ErrNotFound)
	f.ledger.EXPECT().Account(gomock.Any(), "ACC-9").Return(payment.Account{}, &pgconn.ConnectError{})
	f.ledger.EXPECT().Account(gomock.Any(), "ACC-1").Return(payment.Account{ID: "ACC-1", Currency: "EUR", Balance: 7}, nil)
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/v1/transactions/not-a-uuid", 400},
		{"/v1/transactions/" + sample.ID.String(), 404},
		{"/v1/accounts/ACC-9", 503},
		{"/v1/accounts/ACC-1", 200},
		{"/v1/accounts/" + strings.Repeat("a", 65), 400},
		{"/v1/nothing", 404},
		{"/healthz", 200},
		{"/readyz", 200},
		{"/openapi.yaml", 200},
	} {
		rec := f.do("GET", tc.path, "", "")
		if rec.Code != tc.want {
			t.Errorf("GET %s: %d, want %d (%s)", tc.path, rec.Code, tc.want, rec.Body)
		}
	}
	if rec := f.do("DELETE", "/v1/transactions", "", ""); rec.Code != 405 {
		t.Errorf("DELETE /v1/transactions: %d, want 405", rec.Code)
	}
	rec := f.do("GET", "/metrics", "", "")
	body, _ := io.ReadAll(rec.Body)
	if !strings.Contains(string(body), `bank_http_requests_total{code="404",method="GET",route="/v1/transactions/:id"} 1`) {
		t.Errorf("metrics lack the request counter by route and code:\n%s", body)
	}
}

// TestHangingDatabaseBecomes503: a ledger call that never returns on its own (a blackholed database) is cut
// by the query timeout and answered 503 + Retry-After.
func TestHangingDatabaseBecomes503(t *testing.T) {
	ctrl := gomock.NewController(t)
	ledger := NewMockLedger(ctrl)
	ledger.EXPECT().Process(gomock.Any(), caller.Anonymous, sample).DoAndReturn(
		func(ctx context.Context, _ string, _ payment.Transaction) (payment.Result, bool, error) {
			<-ctx.Done()
			return payment.Result{}, false, fmt.Errorf("process: %w", ctx.Err())
		})
	srv := NewServer(ledger, anonymous(), web.NewHealth(func(context.Context) error { return nil }), prometheus.NewRegistry(),
		slog.New(slog.DiscardHandler), WithQueryTimeout(50*time.Millisecond))
	req := httptest.NewRequest(http.MethodPost, "/v1/transactions", strings.NewReader(sampleBody()))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d %v, want 503 with Retry-After", rec.Code, rec.Header())
	}
}

// TestRefusedCallersReachNothing: in the mesh's shape, a request from a peer that is not the sidecar, one
// without an identity and one from a caller not on the list are answered 403 caller_not_allowed on every
// API route without a call to the Ledger (the mock fails on any), and counted by reason; the probes, the
// metrics and the document answer.
func TestRefusedCallersReachNothing(t *testing.T) {
	ctrl := gomock.NewController(t)
	reg := prometheus.NewRegistry()
	mesh, err := caller.New(caller.Config{Source: caller.SourceXFCC, Allowed: caller.List{"spiffe://td/store"},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.6/32")}}, false)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(NewMockLedger(ctrl), mesh, web.NewHealth(func(context.Context) error { return nil }), reg,
		slog.New(slog.DiscardHandler))
	requests := []struct{ method, path, body string }{
		{"POST", "/v1/transactions", sampleBody()},
		{"POST", "/v1/transactions/batch", `{"transactions":[` + sampleBody() + `]}`},
		{"GET", "/v1/transactions/" + sample.ID.String(), ""},
		{"GET", "/v1/accounts/ACC-000001", ""},
	}
	for _, who := range []struct{ peer, xfcc, reason string }{
		{"10.244.0.9:5000", "By=spiffe://td/bank;URI=spiffe://td/store", "untrusted_peer"},
		{"127.0.0.6:5000", "", "no_identity"},
		{"127.0.0.6:5000", "By=spiffe://td/bank;URI=spiffe://td/intruder", "not_allowed"},
	} {
		for _, r := range requests {
			req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
			req.RemoteAddr = who.peer
			req.Header.Set("Content-Type", "application/json")
			if who.xfcc != "" {
				req.Header.Set(caller.HeaderXFCC, who.xfcc)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if e := errorCode(t, rec); rec.Code != 403 || e.Code != payment.CodeCallerNotAllowed {
				t.Errorf("%s %s from %s (%q): %d %+v, want 403 caller_not_allowed", r.method, r.path, who.peer,
					who.xfcc, rec.Code, e)
			}
		}
	}
	want := fmt.Sprintf(`# HELP bank_callers_refused_total API requests (and batch items) refused 403 caller_not_allowed, by reason: no_identity, untrusted_peer, not_allowed, not_owner.
# TYPE bank_callers_refused_total counter
bank_callers_refused_total{reason="no_identity"} %[1]d
bank_callers_refused_total{reason="not_allowed"} %[1]d
bank_callers_refused_total{reason="not_owner"} 0
bank_callers_refused_total{reason="untrusted_peer"} %[1]d
`, len(requests))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "bank_callers_refused_total"); err != nil {
		t.Error(err)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 {
			t.Errorf("GET %s from an unidentified client: %d, want 200", path, rec.Code)
		}
	}
}
