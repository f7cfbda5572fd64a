package bank

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/mock/gomock"

	"github.com/txmesh/txmesh/src/internal/apitest"
	"github.com/txmesh/txmesh/src/internal/caller"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/web"
	"github.com/txmesh/txmesh/src/internal/webtest"
)

// TestServerMatchesOpenAPI sends requests of every documented outcome to a Bank on a real database and
// validates each against openapi.yaml (apitest.Conform).
func TestServerMatchesOpenAPI(t *testing.T) {
	repo, _ := newLedger(t)
	real := httptest.NewServer(NewServer(repo, anonymous(), web.NewHealth(func(context.Context) error { return nil }),
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler)))
	defer real.Close()
	// A Bank whose database is down, for the 503 answers.
	down := NewMockLedger(gomock.NewController(t))
	down.EXPECT().Process(gomock.Any(), caller.Anonymous, gomock.Any()).Return(payment.Result{}, false, &pgconn.ConnectError{}).AnyTimes()
	down.EXPECT().ProcessBatch(gomock.Any(), caller.Anonymous, gomock.Any()).Return(nil, &pgconn.ConnectError{}).AnyTimes()
	broken := httptest.NewServer(NewServer(down, anonymous(), web.NewHealth(func(context.Context) error { return errors.New("database: connection refused") }),
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler)))
	defer broken.Close()
	// A Bank in the mesh's shape (identity from X-Forwarded-Client-Cert) that takes this test's requests for
	// its sidecar's (loopback is trusted) and allows two callers, for the refusals and the other caller's id.
	const mine, theirs = "spiffe://txmesh.test/store", "spiffe://txmesh.test/other"
	mesh, err := caller.New(caller.Config{Source: caller.SourceXFCC, Allowed: caller.List{mine, theirs},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, false)
	if err != nil {
		t.Fatal(err)
	}
	meshed := httptest.NewServer(NewServer(repo, mesh, web.NewHealth(func(context.Context) error { return nil }),
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler)))
	defer meshed.Close()
	as := func(id string) []string { return []string{caller.HeaderXFCC, "By=spiffe://txmesh.test/bank;URI=" + id} }
	owned := newTx("ACC-000003", 7, "EUR")
	ownedBody := mustJSON(t, owned)

	tx := newTx("ACC-000001", 10, "EUR")
	body := mustJSON(t, tx)
	conflict := tx
	conflict.Amount = 11
	// A batch with every item-level answer: created, replay (of an earlier request and of an earlier item),
	// conflict, invalid, too large.
	fresh := mustJSON(t, newTx("ACC-000002", 5, "EUR"))
	batch := `{"transactions":[` + strings.Join([]string{fresh, body, mustJSON(t, conflict), fresh, `{"id":1}`,
		`{` + strings.Repeat(" ", 17000) + `}`}, ",") + `]}`
	batchItems := func(t *testing.T, _ *http.Response, got []byte) {
		var resp payment.BatchResponse
		if err := json.Unmarshal(got, &resp); err != nil {
			t.Fatal(err)
		}
		var codes []int
		for _, it := range resp.Results {
			codes = append(codes, it.Status)
		}
		if fmt.Sprint(codes) != "[201 200 409 200 400 413]" {
			t.Fatalf("item answers %v, want [201 200 409 200 400 413]", codes)
		}
	}
	r, b, m, full := real.URL, broken.URL, meshed.URL, webtest.Saturated(t, "bank") // full: at HTTP_MAX_IN_FLIGHT
	apitest.Conform(t, OpenAPI, []apitest.Case{
		{Name: "create", Base: r, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: body, Want: 201, ValidRequest: true},
		{Name: "replay", Base: r, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: body, Want: 200, ValidRequest: true},
		{Name: "conflict", Base: r, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: mustJSON(t, conflict), Want: 409, ValidRequest: true},
		{Name: "invalid", Base: r, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: `{"id":1}`, Want: 400},
		{Name: "too large", Base: r, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: strings.Repeat(" ", 20000) + body, Want: 413},
		{Name: "media type", Base: r, Method: "POST", Path: "/v1/transactions", ContentType: "text/plain", Body: body, Want: 415},
		{Name: "unavailable", Base: b, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: mustJSON(t, newTx("A", 1, "EUR")), Want: 503, ValidRequest: true},
		{Name: "batch", Base: r, Method: "POST", Path: "/v1/transactions/batch", ContentType: "application/json", Body: batch, Want: 200, ValidRequest: true, Check: batchItems},
		{Name: "batch invalid", Base: r, Method: "POST", Path: "/v1/transactions/batch", ContentType: "application/json", Body: `{"transactions":[]}`, Want: 400},
		{Name: "batch too large", Base: r, Method: "POST", Path: "/v1/transactions/batch", ContentType: "application/json", Body: `{"transactions":[` + strings.Repeat(" ", 300<<10) + body + `]}`, Want: 413},
		{Name: "batch media type", Base: r, Method: "POST", Path: "/v1/transactions/batch", ContentType: "text/plain", Body: batch, Want: 415},
		{Name: "overloaded", Base: full, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: body, Want: 503, ValidRequest: true},
		{Name: "batch overloaded", Base: full, Method: "POST", Path: "/v1/transactions/batch", ContentType: "application/json", Body: `{"transactions":[` + body + `]}`, Want: 503, ValidRequest: true},
		{Name: "get overloaded", Base: full, Method: "GET", Path: "/v1/transactions/" + tx.ID.String(), Want: 503, ValidRequest: true},
		{Name: "batch unavailable", Base: b, Method: "POST", Path: "/v1/transactions/batch", ContentType: "application/json", Body: `{"transactions":[` + body + `]}`, Want: 503, ValidRequest: true},
		{Name: "get transaction", Base: r, Method: "GET", Path: "/v1/transactions/" + tx.ID.String(), Want: 200, ValidRequest: true},
		{Name: "get missing", Base: r, Method: "GET", Path: "/v1/transactions/" + uuid.NewString(), Want: 404, ValidRequest: true},
		{Name: "get bad id", Base: r, Method: "GET", Path: "/v1/transactions/xyz", Want: 400, ValidRequest: true},
		{Name: "account", Base: r, Method: "GET", Path: "/v1/accounts/ACC-000001", Want: 200, ValidRequest: true},
		{Name: "account missing", Base: r, Method: "GET", Path: "/v1/accounts/ACC-777777", Want: 404, ValidRequest: true},
		{Name: "account bad id", Base: r, Method: "GET", Path: "/v1/accounts/a%20b", Want: 400, ValidRequest: true},
		{Name: "healthz", Base: r, Method: "GET", Path: "/healthz", Want: 200, ValidRequest: true},
		{Name: "readyz", Base: r, Method: "GET", Path: "/readyz", Want: 200, ValidRequest: true},
		{Name: "not ready", Base: b, Method: "GET", Path: "/readyz", Want: 503, ValidRequest: true},
		{Name: "metrics", Base: r, Method: "GET", Path: "/metrics", Want: 200, ValidRequest: true},
		{Name: "openapi", Base: r, Method: "GET", Path: "/openapi.yaml", Want: 200, ValidRequest: true},
		{Name: "caller's create", Base: m, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: ownedBody, Header: as(mine), Want: 201, ValidRequest: true},
		{Name: "another caller's id", Base: m, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: ownedBody, Header: as(theirs), Want: 403, ValidRequest: true},
		{Name: "another caller's id in a batch", Base: m, Method: "POST", Path: "/v1/transactions/batch", ContentType: "application/json", Body: `{"transactions":[` + ownedBody + `]}`, Header: as(theirs), Want: 200, ValidRequest: true, Check: func(t *testing.T, _ *http.Response, got []byte) {
			if !strings.Contains(string(got), `"status":403`) || !strings.Contains(string(got), payment.CodeCallerNotAllowed) {
				t.Fatalf("item answer %s, want 403 caller_not_allowed", got)
			}
		}},
		{Name: "another caller's transaction", Base: m, Method: "GET", Path: "/v1/transactions/" + owned.ID.String(), Header: as(theirs), Want: 403, ValidRequest: true},
		{Name: "caller's transaction", Base: m, Method: "GET", Path: "/v1/transactions/" + owned.ID.String(), Header: as(mine), Want: 200, ValidRequest: true},
		{Name: "caller not allowed", Base: m, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: body, Header: as("spiffe://txmesh.test/intruder"), Want: 403, ValidRequest: true},
		{Name: "caller not identified", Base: m, Method: "POST", Path: "/v1/transactions", ContentType: "application/json", Body: body, Want: 403, ValidRequest: true},
		{Name: "batch caller not allowed", Base: m, Method: "POST", Path: "/v1/transactions/batch", ContentType: "application/json", Body: batch, Want: 403, ValidRequest: true},
		{Name: "get caller not allowed", Base: m, Method: "GET", Path: "/v1/transactions/" + tx.ID.String(), Want: 403, ValidRequest: true},
		{Name: "account caller not allowed", Base: m, Method: "GET", Path: "/v1/accounts/ACC-000001", Header: as("spiffe://txmesh.test/intruder"), Want: 403, ValidRequest: true},
		{Name: "probe of a caller-checking Bank", Base: m, Method: "GET", Path: "/readyz", Want: 200, ValidRequest: true},
		{Name: "metrics of a caller-checking Bank", Base: m, Method: "GET", Path: "/metrics", Want: 200, ValidRequest: true},
	})
}
