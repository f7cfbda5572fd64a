package store

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/apitest"
	"github.com/txmesh/txmesh/src/internal/banktest"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/web"
	"github.com/txmesh/txmesh/src/internal/webtest"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// TestServerMatchesOpenAPI sends requests of every documented outcome to a Store on a real database (and to
// one whose database is down, for the 503 answers) and validates each against openapi.yaml (apitest.Conform):
// purchases pending, approved, declined and rejected (their optional fields), idempotent replays, every
// error status.
func TestServerMatchesOpenAPI(t *testing.T) {
	repo, _ := newRepo(t)
	real := httptest.NewServer(NewServer(repo, NewMetrics(prometheus.NewRegistry()), func() string { return "closed" },
		web.NewHealth(func(context.Context) error { return nil }), prometheus.NewRegistry(),
		slog.New(slog.DiscardHandler)))
	defer real.Close()
	pg := pgtest.Server(t)
	dsn := pgtest.NewDatabase(t)
	proxy := banktest.NewProxy(t, pg.Addr())
	downDB := openDB(t, strings.Replace(dsn, pg.Addr(), proxy.Addr(), 1))
	sqlDown, _ := downDB.DB()
	broken := httptest.NewServer(NewServer(NewRepository(downDB, "store-test"), NewMetrics(prometheus.NewRegistry()),
		func() string { return "open" }, web.NewHealth(sqlDown.PingContext), prometheus.NewRegistry(),
		slog.New(slog.DiscardHandler)))
	defer broken.Close()
	proxy.Down()

	ctx := context.Background()
	decided := func(status payment.Status, reason payment.Reason) string {
		p, _, err := repo.Create(ctx, NewPurchase{AccountID: "ACC-000002", Amount: 5, Currency: "EUR", Source: SourceAPI})
		if err != nil {
			t.Fatal(err)
		}
		if err := repo.Complete(ctx, p.ID, payment.Result{ID: p.ID, Status: status, Reason: reason,
			ProcessedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		return p.ID.String()
	}
	approved := decided(payment.StatusApproved, payment.ReasonNone)
	declined := decided(payment.StatusDeclined, payment.ReasonInsufficientFunds)
	p, _, err := repo.Create(ctx, NewPurchase{AccountID: "ACC-000003", Amount: 5, Currency: "EUR", Source: SourceAPI})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Reject(ctx, p.ID, payment.CodeIdempotencyConflict, "different fields"); err != nil {
		t.Fatal(err)
	}
	rejected := p.ID.String()

	key := []string{payment.IdempotencyHeader, "order-17"}
	location := func(t *testing.T, resp *http.Response, _ []byte) {
		if !strings.HasPrefix(resp.Header.Get("Location"), "/v1/purchases/") {
			t.Fatalf("Location %q", resp.Header.Get("Location"))
		}
	}
	replayed := func(t *testing.T, resp *http.Response, body []byte) {
		location(t, resp, body)
		if resp.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatal("a replay without Idempotent-Replayed: true")
		}
	}
	// full: at HTTP_MAX_IN_FLIGHT, behind PurchaseIDs as cmd/store serves it.
	saturated, err := url.Parse(webtest.Saturated(t, "store"))
	if err != nil {
		t.Fatal(err)
	}
	fullSrv := httptest.NewServer(PurchaseIDs(httputil.NewSingleHostReverseProxy(saturated)))
	defer fullSrv.Close()
	// isolated: store-db's synchronous standby gone, requests bounded to 2 s: 504 outcome_unknown.
	pgIsolated, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = pgIsolated.Close() })
	if err := pgIsolated.CreateDatabase(ctx, "store"); err != nil {
		t.Fatal(err)
	}
	isolatedDB := openDB(t, pgIsolated.DSN("store"))
	if err := pgIsolated.IsolateFromStandby(ctx); err != nil {
		t.Fatal(err)
	}
	isolated := httptest.NewServer(web.Bounded(PurchaseIDs(NewServer(NewRepository(isolatedDB, "store-test"),
		NewMetrics(prometheus.NewRegistry()), func() string { return "closed" },
		web.NewHealth(func(context.Context) error { return nil }), prometheus.NewRegistry(),
		slog.New(slog.DiscardHandler))), web.ServerConfig{RequestTimeout: 2 * time.Second}))
	defer isolated.Close()
	unconfirmed := func(t *testing.T, resp *http.Response, body []byte) {
		location(t, resp, body)
		if resp.Header.Get("Location") != "/v1/purchases/"+resp.Header.Get(PurchaseIDHeader) {
			t.Fatalf("Location %q, Purchase-Id %q", resp.Header.Get("Location"), resp.Header.Get(PurchaseIDHeader))
		}
	}
	r, b, full := real.URL, broken.URL, fullSrv.URL
	json := "application/json"
	apitest.Conform(t, OpenAPI, []apitest.Case{
		{Name: "create", Base: r, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: validPurchase, Want: 202, ValidRequest: true, Check: location},
		{Name: "create with key", Base: r, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: validPurchase, Header: key, Want: 202, ValidRequest: true, Check: location},
		{Name: "replay", Base: r, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: validPurchase, Header: key, Want: 202, ValidRequest: true, Check: replayed},
		{Name: "conflict", Base: r, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: strings.Replace(validPurchase, "1250", "1251", 1), Header: key, Want: 409, ValidRequest: true},
		{Name: "invalid", Base: r, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: `{"amount":1.5}`, Want: 400},
		{Name: "invalid key", Base: r, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: validPurchase, Header: []string{payment.IdempotencyHeader, "a b"}, Want: 400},
		{Name: "too large", Base: r, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: strings.Repeat(" ", 20000) + validPurchase, Want: 413},
		{Name: "media type", Base: r, Method: "POST", Path: "/v1/purchases", ContentType: "text/plain", Body: validPurchase, Want: 415},
		{Name: "unavailable", Base: b, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: validPurchase, Want: 503, ValidRequest: true},
		{Name: "unconfirmed", Base: isolated.URL, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: validPurchase, Want: 504, ValidRequest: true, Check: unconfirmed},
		{Name: "overloaded", Base: full, Method: "POST", Path: "/v1/purchases", ContentType: json, Body: validPurchase, Want: 503, ValidRequest: true},
		{Name: "get overloaded", Base: full, Method: "GET", Path: "/v1/purchases/" + approved, Want: 503, ValidRequest: true},
		{Name: "outbox overloaded", Base: full, Method: "GET", Path: "/v1/outbox", Want: 503, ValidRequest: true},
		{Name: "get approved", Base: r, Method: "GET", Path: "/v1/purchases/" + approved, Want: 200, ValidRequest: true},
		{Name: "get declined", Base: r, Method: "GET", Path: "/v1/purchases/" + declined, Want: 200, ValidRequest: true},
		{Name: "get rejected", Base: r, Method: "GET", Path: "/v1/purchases/" + rejected, Want: 200, ValidRequest: true},
		{Name: "get missing", Base: r, Method: "GET", Path: "/v1/purchases/" + uuid.NewString(), Want: 404, ValidRequest: true},
		{Name: "get bad id", Base: r, Method: "GET", Path: "/v1/purchases/xyz", Want: 400, ValidRequest: true},
		{Name: "get unavailable", Base: b, Method: "GET", Path: "/v1/purchases/" + approved, Want: 503, ValidRequest: true},
		{Name: "outbox", Base: r, Method: "GET", Path: "/v1/outbox", Want: 200, ValidRequest: true},
		{Name: "outbox unavailable", Base: b, Method: "GET", Path: "/v1/outbox", Want: 503, ValidRequest: true},
		{Name: "healthz", Base: r, Method: "GET", Path: "/healthz", Want: 200, ValidRequest: true},
		{Name: "readyz", Base: r, Method: "GET", Path: "/readyz", Want: 200, ValidRequest: true},
		{Name: "not ready", Base: b, Method: "GET", Path: "/readyz", Want: 503, ValidRequest: true},
		{Name: "metrics", Base: r, Method: "GET", Path: "/metrics", Want: 200, ValidRequest: true},
		{Name: "openapi", Base: r, Method: "GET", Path: "/openapi.yaml", Want: 200, ValidRequest: true},
	})
}
