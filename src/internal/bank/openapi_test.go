package bank

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/mock/gomock"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/web"
)

// TestServerMatchesOpenAPI sends requests of every documented outcome to a Bank on a real database and
// validates each response (status, headers, body schema, no undocumented field) against openapi.yaml; the
// documented 2xx requests are validated too, so the document cannot drift from the server either way.
func TestServerMatchesOpenAPI(t *testing.T) {
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.yaml is invalid: %v", err)
	}
	doc.Servers = nil // match any host
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}

	repo, _ := newLedger(t)
	real := httptest.NewServer(NewServer(repo, web.NewHealth(func(context.Context) error { return nil }),
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler)))
	defer real.Close()
	// A Bank whose database is down, for the 503 answers.
	down := NewMockLedger(gomock.NewController(t))
	down.EXPECT().Process(gomock.Any(), gomock.Any()).Return(payment.Result{}, false, &pgconn.ConnectError{}).AnyTimes()
	down.EXPECT().ProcessBatch(gomock.Any(), gomock.Any()).Return(nil, &pgconn.ConnectError{}).AnyTimes()
	broken := httptest.NewServer(NewServer(down, web.NewHealth(func(context.Context) error { return errors.New("database: connection refused") }),
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler)))
	defer broken.Close()

	tx := newTx("ACC-000001", 10, "EUR")
	body := mustJSON(t, tx)
	conflict := tx
	conflict.Amount = 11
	// A batch with every item-level answer: created, replay (of an earlier request and of an earlier item),
	// conflict, invalid, too large.
	fresh := mustJSON(t, newTx("ACC-000002", 5, "EUR"))
	batch := `{"transactions":[` + strings.Join([]string{fresh, body, mustJSON(t, conflict), fresh, `{"id":1}`,
		`{` + strings.Repeat(" ", 17000) + `}`}, ",") + `]}`
	cases := []struct {
		name, base, method, path, contentType, body string
		want                                        int
		validRequest                                bool
	}{
		{"create", real.URL, "POST", "/v1/transactions", "application/json", body, 201, true},
		{"replay", real.URL, "POST", "/v1/transactions", "application/json", body, 200, true},
		{"conflict", real.URL, "POST", "/v1/transactions", "application/json", mustJSON(t, conflict), 409, true},
		{"invalid", real.URL, "POST", "/v1/transactions", "application/json", `{"id":1}`, 400, false},
		{"too large", real.URL, "POST", "/v1/transactions", "application/json", strings.Repeat(" ", 20000) + body, 413, false},
		{"media type", real.URL, "POST", "/v1/transactions", "text/plain", body, 415, false},
		{"unavailable", broken.URL, "POST", "/v1/transactions", "application/json", mustJSON(t, newTx("A", 1, "EUR")), 503, true},
		{"batch", real.URL, "POST", "/v1/transactions/batch", "application/json", batch, 200, true},
		{"batch invalid", real.URL, "POST", "/v1/transactions/batch", "application/json", `{"transactions":[]}`, 400, false},
		{"batch too large", real.URL, "POST", "/v1/transactions/batch", "application/json", `{"transactions":[` + strings.Repeat(" ", 300<<10) + body + `]}`, 413, false},
		{"batch media type", real.URL, "POST", "/v1/transactions/batch", "text/plain", batch, 415, false},
		{"batch unavailable", broken.URL, "POST", "/v1/transactions/batch", "application/json", `{"transactions":[` + body + `]}`, 503, true},
		{"get transaction", real.URL, "GET", "/v1/transactions/" + tx.ID.String(), "", "", 200, true},
		{"get missing", real.URL, "GET", "/v1/transactions/" + uuid.NewString(), "", "", 404, true},
		{"get bad id", real.URL, "GET", "/v1/transactions/xyz", "", "", 400, true},
		{"account", real.URL, "GET", "/v1/accounts/ACC-000001", "", "", 200, true},
		{"account missing", real.URL, "GET", "/v1/accounts/ACC-777777", "", "", 404, true},
		{"account bad id", real.URL, "GET", "/v1/accounts/a%20b", "", "", 400, true},
		{"healthz", real.URL, "GET", "/healthz", "", "", 200, true},
		{"readyz", real.URL, "GET", "/readyz", "", "", 200, true},
		{"not ready", broken.URL, "GET", "/readyz", "", "", 503, true},
		{"metrics", real.URL, "GET", "/metrics", "", "", 200, true},
		{"openapi", real.URL, "GET", "/openapi.yaml", "", "", 200, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, c.method, c.base+c.path, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("%s %s is not documented: %v", c.method, c.path, err)
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
			if c.validRequest {
				if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
					t.Fatalf("request does not match the document: %v", err)
				}
				req.Body = io.NopCloser(strings.NewReader(c.body))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.want, got)
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
				Header: resp.Header, Body: io.NopCloser(bytes.NewReader(got)),
				Options: &openapi3filter.Options{IncludeResponseStatus: true}}
			if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
				t.Fatalf("response does not match the document: %v\n%s", err, got)
			}
		})
	}
}
