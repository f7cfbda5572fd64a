package store

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/banktest"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/web"
)

// The Store API against a real PostgreSQL: every class of bad input is a 4xx naming the field at fault and
// writes nothing; the idempotency key; the outbox status document; 503 when the database is unreachable.

type api struct {
	repo    *Repository
	db      *gorm.DB
	reg     *prometheus.Registry
	metrics *Metrics
	handler http.Handler
}

func newAPI(t *testing.T) api {
	t.Helper()
	repo, db := newRepo(t)
	return apiOver(repo, db)
}

func apiOver(repo *Repository, db *gorm.DB) api {
	a := api{repo: repo, db: db, reg: prometheus.NewRegistry()}
	a.metrics = NewMetrics(a.reg)
	health := web.NewHealth(func(context.Context) error { return nil })
	a.handler = NewServer(repo, a.metrics, func() string { return "closed" }, health, a.reg,
		slog.New(slog.DiscardHandler))
	return a
}

func (a api) do(method, path, contentType, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, req)
	return rec
}

func apiError(t *testing.T, rec *httptest.ResponseRecorder) payment.APIError {
	t.Helper()
	var body payment.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code == "" {
		t.Fatalf("error body %q is not the JSON error body: %v", rec.Body.String(), err)
	}
	return body.Error
}

const validPurchase = `{"account_id":"ACC-000001","amount":1250,"currency":"EUR"}`

func TestPostPurchaseAccepted(t *testing.T) {
	a := newAPI(t)
	rec := a.do("POST", "/v1/purchases", "application/json", validPurchase)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var p Purchase
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != StatusPending || p.AccountID != "ACC-000001" || p.Amount != 1250 || p.Currency != "EUR" ||
		rec.Header().Get("Location") != "/v1/purchases/"+p.ID.String() ||
		rec.Header().Get(PurchaseIDHeader) != p.ID.String() {
		t.Fatalf("answer %+v, Location %q", p, rec.Header().Get("Location"))
	}
	get := a.do("GET", "/v1/purchases/"+p.ID.String(), "", "")
	var got map[string]any
	if err := json.Unmarshal(get.Body.Bytes(), &got); err != nil || get.Code != http.StatusOK {
		t.Fatalf("GET: %d %s", get.Code, get.Body)
	}
	for _, k := range []string{"id", "status", "attempts", "reason", "created_at", "updated_at", "next_attempt_at"} {
		if _, ok := got[k]; !ok {
			t.Errorf("GET /v1/purchases/{id} lacks %q: %s", k, get.Body)
		}
	}
	if v := testutil.ToFloat64(a.metrics.created.WithLabelValues("api")); v != 1 {
		t.Fatalf("store_purchases_created_total{source=api} = %v", v)
	}
}

func TestPostPurchaseBadInputWritesNothing(t *testing.T) {
	a := newAPI(t)
	tests := []struct {
		name        string
		contentType string
		body        string
		header      []string
		status      int
		code        string
		field       string // "" when the error is about the whole body
	}{
		{"no content type", "", validPurchase, nil, 415, payment.CodeUnsupportedMediaType, "Content-Type"},
		{"text body", "text/plain", validPurchase, nil, 415, payment.CodeUnsupportedMediaType, "Content-Type"},
		{"empty body", "application/json", ``, nil, 400, payment.CodeInvalidRequest, ""},
		{"malformed", "application/json", `{"account_id":`, nil, 400, payment.CodeInvalidRequest, ""},
		{"array", "application/json", `[]`, nil, 400, payment.CodeInvalidRequest, ""},
		{"trailing data", "application/json", validPurchase + `{}`, nil, 400, payment.CodeInvalidRequest, ""},
		{"unknown field", "application/json", `{"account_id":"ACC-000001","amount":1,"currency":"EUR","id":"x"}`,
			nil, 400, payment.CodeInvalidRequest, "id"},
		{"duplicate field", "application/json", `{"account_id":"ACC-000001","amount":1,"amount":2,"currency":"EUR"}`,
			nil, 400, payment.CodeInvalidRequest, "amount"},
		{"missing account", "application/json", `{"amount":1,"currency":"EUR"}`, nil, 400,
			payment.CodeInvalidRequest, "account_id"},
		{"bad account", "application/json", `{"account_id":"ACC 1","amount":1,"currency":"EUR"}`, nil, 400,
			payment.CodeInvalidRequest, "account_id"},
		{"amount zero", "application/json", `{"account_id":"ACC-000001","amount":0,"currency":"EUR"}`, nil, 400,
			payment.CodeInvalidRequest, "amount"},
		{"amount negative", "application/json", `{"account_id":"ACC-000001","amount":-5,"currency":"EUR"}`, nil,
			400, payment.CodeInvalidRequest, "amount"},
		{"amount fraction", "application/json", `{"account_id":"ACC-000001","amount":12.5,"currency":"EUR"}`, nil,
			400, payment.CodeInvalidRequest, "amount"},
		{"amount string", "application/json", `{"account_id":"ACC-000001","amount":"12","currency":"EUR"}`, nil,
			400, payment.CodeInvalidRequest, "amount"},
		{"amount too large", "application/json", `{"account_id":"ACC-000001","amount":1000000001,"currency":"EUR"}`,
			nil, 400, payment.CodeInvalidRequest, "amount"},
		{"amount overflow", "application/json",
			`{"account_id":"ACC-000001","amount":99999999999999999999999,"currency":"EUR"}`, nil, 400,
			payment.CodeInvalidRequest, "amount"},
		{"currency lower case", "application/json", `{"account_id":"ACC-000001","amount":1,"currency":"eur"}`, nil,
			400, payment.CodeInvalidRequest, "currency"},
		{"currency unknown", "application/json", `{"account_id":"ACC-000001","amount":1,"currency":"XYZ"}`, nil,
			400, payment.CodeInvalidRequest, "currency"},
		{"body too large", "application/json", `{"account_id":"` + strings.Repeat("A", payment.MaxBodyBytes) + `"}`,
			nil, 413, payment.CodePayloadTooLarge, ""},
		{"empty idempotency key", "application/json", validPurchase, []string{"Idempotency-Key", ""}, 400,
			payment.CodeInvalidRequest, "Idempotency-Key"},
		{"idempotency key with space", "application/json", validPurchase, []string{"Idempotency-Key", "a b"}, 400,
			payment.CodeInvalidRequest, "Idempotency-Key"},
		{"idempotency key too long", "application/json", validPurchase,
			[]string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, payment.CodeInvalidRequest, "Idempotency-Key"},
		{"two idempotency keys", "application/json", validPurchase,
			[]string{"Idempotency-Key", "a", "Idempotency-Key", "b"}, 400, payment.CodeInvalidRequest,
			"Idempotency-Key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := a.do("POST", "/v1/purchases", tt.contentType, tt.body, tt.header...)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.status, rec.Body)
			}
			if rec.Header().Get(PurchaseIDHeader) == "" {
				t.Fatal("an answer to POST /v1/purchases without Purchase-Id")
			}
			e := apiError(t, rec)
			if e.Code != tt.code {
				t.Fatalf("code %q, want %q", e.Code, tt.code)
			}
			if tt.field != "" {
				if _, ok := e.Fields[tt.field]; !ok || len(e.Fields) != 1 {
					t.Fatalf("fields %v, want exactly %q", e.Fields, tt.field)
				}
			}
		})
	}
	if n, m := count(t, a.db, "purchases"), count(t, a.db, "outbox"); n != 0 || m != 0 {
		t.Fatalf("bad input wrote %d purchases, %d outbox rows", n, m)
	}
}

func TestGetPurchaseErrors(t *testing.T) {
	a := newAPI(t)
	for _, tt := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/purchases/not-a-uuid", 400, payment.CodeInvalidRequest},
		{"GET", "/v1/purchases/00000000-0000-0000-0000-000000000000", 400, payment.CodeInvalidRequest},
		{"GET", "/v1/purchases/6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11", 404, payment.CodeNotFound},
		{"DELETE", "/v1/purchases/6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11", 405, payment.CodeMethodNotAllowed},
		{"PUT", "/v1/purchases", 405, payment.CodeMethodNotAllowed},
		{"GET", "/v1/nothing", 404, payment.CodeNotFound},
	} {
		rec := a.do(tt.method, tt.path, "", "")
		if rec.Code != tt.status || apiError(t, rec).Code != tt.code {
			t.Errorf("%s %s: %d %s, want %d %s", tt.method, tt.path, rec.Code, rec.Body, tt.status, tt.code)
		}
	}
}

func TestPostPurchaseIdempotencyKey(t *testing.T) {
	a := newAPI(t)
	first := a.do("POST", "/v1/purchases", "application/json", validPurchase, "Idempotency-Key", "order-42")
	again := a.do("POST", "/v1/purchases", "application/json", validPurchase, "Idempotency-Key", "order-42")
	if first.Code != http.StatusAccepted || again.Code != http.StatusAccepted {
		t.Fatalf("statuses %d, %d: %s %s", first.Code, again.Code, first.Body, again.Body)
	}
	var p1, p2 Purchase
	_ = json.Unmarshal(first.Body.Bytes(), &p1)
	_ = json.Unmarshal(again.Body.Bytes(), &p2)
	if p1.ID != p2.ID || again.Header().Get("Idempotent-Replayed") != "true" ||
		first.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("replay gave %s (replayed=%q), first %s", p2.ID, again.Header().Get("Idempotent-Replayed"), p1.ID)
	}
	conflict := a.do("POST", "/v1/purchases", "application/json",
		`{"account_id":"ACC-000001","amount":1251,"currency":"EUR"}`, "Idempotency-Key", "order-42")
	if conflict.Code != http.StatusConflict || apiError(t, conflict).Code != payment.CodeIdempotencyConflict {
		t.Fatalf("different body, same key: %d %s", conflict.Code, conflict.Body)
	}
	if n := count(t, a.db, "purchases"); n != 1 {
		t.Fatalf("%d purchases, want 1", n)
	}
	if v := testutil.ToFloat64(a.metrics.created.WithLabelValues("api")); v != 1 {
		t.Fatalf("store_purchases_created_total{source=api} = %v, want 1 (replays excluded)", v)
	}
}

func TestOutboxStatusDocument(t *testing.T) {
	a := newAPI(t)
	for range 3 {
		a.do("POST", "/v1/purchases", "application/json", validPurchase)
	}
	rec := a.do("GET", "/v1/outbox", "", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	// The exact document other tools read.
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc) != 4 || string(doc["backlog"]) != "3" || string(doc["breaker"]) != `"closed"` {
		t.Fatalf("document %s", rec.Body)
	}
	var purchases map[string]int64
	if err := json.Unmarshal(doc["purchases"], &purchases); err != nil || len(purchases) != 4 ||
		purchases["pending"] != 3 || purchases["approved"] != 0 {
		t.Fatalf("purchases %s", doc["purchases"])
	}
	var age float64
	if err := json.Unmarshal(doc["oldest_pending_age_seconds"], &age); err != nil || age <= 0 {
		t.Fatalf("oldest_pending_age_seconds %s", doc["oldest_pending_age_seconds"])
	}
	metrics := a.do("GET", "/metrics", "", "").Body.String()
	for _, m := range []string{"store_outbox_backlog 3", "store_outbox_oldest_pending_age_seconds",
		`store_purchases_created_total{source="generator"} 0`, `store_http_requests_total{code="202"`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}

func TestDatabaseDownIs503(t *testing.T) {
	pg := pgtest.Server(t)
	dsn := pgtest.NewDatabase(t)
	openDB(t, dsn) // migrate directly
	proxy := banktest.NewProxy(t, pg.Addr())
	db := openDB(t, strings.Replace(dsn, pg.Addr(), proxy.Addr(), 1))
	a := apiOver(NewRepository(db, "store-test"), db)
	if rec := a.do("POST", "/v1/purchases", "application/json", validPurchase); rec.Code != http.StatusAccepted {
		t.Fatalf("with the database up: %d %s", rec.Code, rec.Body)
	}
	proxy.Down()
	a.repo.SetRideThrough(500 * time.Millisecond)
	down := a.do("POST", "/v1/purchases", "application/json", validPurchase)
	id := down.Header().Get(PurchaseIDHeader)
	if down.Code != http.StatusServiceUnavailable || id == "" || down.Header().Get("Location") != "" {
		t.Fatalf("POST with the database down: %d Purchase-Id %q Location %q; want 503 naming its purchase, "+
			"no Location", down.Code, id, down.Header().Get("Location"))
	}
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/purchases", validPurchase},
		{"GET", "/v1/purchases/6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11", ""},
		{"GET", "/v1/outbox", ""},
	} {
		rec := a.do(r.method, r.path, "application/json", r.body)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" ||
			apiError(t, rec).Code != payment.CodeUnavailable {
			t.Fatalf("%s %s with the database down: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
	// Bad input is still a 400, not a 503: it is judged before the database is touched.
	if rec := a.do("POST", "/v1/purchases", "application/json", `{}`); rec.Code != http.StatusBadRequest {
		t.Fatalf("bad input with the database down: %d", rec.Code)
	}
	if err := proxy.Up(); err != nil {
		t.Fatal(err)
	}
	if rec := a.do("POST", "/v1/purchases", "application/json", validPurchase); rec.Code != http.StatusAccepted {
		t.Fatalf("with the database back: %d %s", rec.Code, rec.Body)
	}
	// The 503's purchase was never written, and never will be.
	if rec := a.do("GET", "/v1/purchases/"+id, "", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("purchase %s answered 503: now %d %s", id, rec.Code, rec.Body)
	}
	if n := count(t, a.db, "purchases"); n != 2 {
		t.Fatalf("%d purchases, want the 2 answered 202", n)
	}
}
