package bankclient_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/localenv/pki"
)

var tx = payment.Transaction{ID: uuid.New(), StoreID: "s", AccountID: "ACC-000001", Amount: 5, Currency: "EUR",
	CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}

func TestSubmitClassifiesAnswers(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		retryAfter string
		wantErr    bool
		permanent  bool
		code       string
		wantRetry  time.Duration
		// unmarked: the answer lacks the Bank's marks (Txmesh-Service: bank, a problem document): something in
		// between gave it. foreign: the client must say so.
		unmarked, foreign bool
		contentType       string // of a marked answer; application/problem+json when empty
	}{
		{name: "created", status: 201, body: `{"id":"` + tx.ID.String() + `","status":"approved","reason":"","processed_at":"2026-01-02T03:04:06Z"}`},
		{name: "replayed", status: 200, body: `{"id":"` + tx.ID.String() + `","status":"declined","reason":"insufficient_funds","processed_at":"2026-01-02T03:04:06Z"}`},
		{name: "result for another id", status: 201, body: `{"id":"` + uuid.NewString() + `","status":"approved"}`, wantErr: true},
		{name: "garbage 2xx", status: 200, body: `<html>`, wantErr: true},
		{name: "conflict", status: 409, body: `{"error":{"code":"idempotency_conflict","message":"x"}}`, wantErr: true,
			permanent: true, code: payment.CodeIdempotencyConflict},
		{name: "invalid", status: 400, body: `{"error":{"code":"invalid_request","message":"x"}}`, wantErr: true,
			permanent: true, code: payment.CodeInvalidRequest},
		{name: "too large", status: 413, body: `{"error":{"code":"payload_too_large","message":"x"}}`, wantErr: true,
			permanent: true, code: payment.CodePayloadTooLarge},
		{name: "conflict without the marks", status: 409, unmarked: true, foreign: true, wantErr: true,
			body: `{"error":{"code":"idempotency_conflict","message":"x"}}`, code: payment.CodeIdempotencyConflict},
		{name: "conflict marked but as plain JSON", status: 409, contentType: "application/json", foreign: true,
			wantErr: true, body: `{"error":{"code":"idempotency_conflict","message":"x"}}`,
			code: payment.CodeIdempotencyConflict},
		{name: "Envoy RBAC denial", status: 403, unmarked: true, foreign: true, wantErr: true,
			body: `RBAC: access denied`, code: "http_403"},
		{name: "no route", status: 404, unmarked: true, foreign: true, wantErr: true, code: "http_404"},
		{name: "the Bank refuses the caller", status: 403, wantErr: true, code: "caller_not_allowed",
			body: `{"error":{"code":"caller_not_allowed","message":"x"}}`},
		{name: "the Bank's 404", status: 404, wantErr: true, code: payment.CodeNotFound,
			body: `{"error":{"code":"not_found","message":"no such route"}}`},
		{name: "a 400 with another code", status: 400, wantErr: true, code: payment.CodeInternal,
			body: `{"error":{"code":"internal","message":"x"}}`},
		{name: "unavailable", status: 503, body: `{"error":{"code":"unavailable","message":"x"}}`, retryAfter: "3",
			wantErr: true, code: payment.CodeUnavailable, wantRetry: 3 * time.Second},
		{name: "throttled", status: 429, body: ``, retryAfter: "1", wantErr: true, code: "http_429", wantRetry: time.Second, unmarked: true, foreign: true},
		{name: "proxy error page", status: 502, body: `upstream connect error`, wantErr: true, code: "http_502", unmarked: true, foreign: true},
		{name: "timeout status", status: 408, body: ``, wantErr: true, code: "http_408", unmarked: true, foreign: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var got payment.Transaction
				if r.Header.Get(payment.IdempotencyHeader) != tx.ID.String() || r.URL.Path != "/v1/transactions" ||
					r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&got) != nil ||
					got != tx {
					t.Errorf("unexpected request %s %v", r.URL.Path, r.Header)
				}
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if !tt.unmarked {
					mark(w, tt.contentType)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, err := bankclient.New(srv.URL+"/", srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Submit(context.Background(), tx)
			if !tt.wantErr {
				if err != nil || res.ID != tx.ID || res.Status == "" {
					t.Fatalf("got %+v, %v", res, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error for %d %s", tt.status, tt.body)
			}
			if bankclient.IsPermanent(err) != tt.permanent {
				t.Fatalf("permanent = %v, want %v (%v)", !tt.permanent, tt.permanent, err)
			}
			var e *bankclient.Error
			if tt.code != "" && (!errors.As(err, &e) || e.Code != tt.code || e.RetryAfter != tt.wantRetry ||
				e.Foreign() != tt.foreign) {
				t.Fatalf("error %#v, want code %s retry-after %s foreign %v", e, tt.code, tt.wantRetry, tt.foreign)
			}
		})
	}
}

// mark gives an answer the Bank's marks: its header, and a problem document's content type (or ct).
func mark(w http.ResponseWriter, ct string) {
	w.Header().Set(payment.ServiceHeader, payment.ServiceBank)
	if ct == "" {
		ct = payment.ProblemContentType
	}
	w.Header().Set("Content-Type", ct)
}

// TestLookup: the Bank's own record is returned, its own 404 is ErrNoSuchTransaction, and anything else —
// a 404 or a 200 without its marks, a 503, a record for another id — leaves the Bank's state unknown.
func TestLookup(t *testing.T) {
	record := `{"id":"` + tx.ID.String() + `","store_id":"s","account_id":"ACC-000001","amount":5,"currency":"EUR",` +
		`"created_at":"2026-01-02T03:04:05Z","status":"approved","reason":"","processed_at":"2026-01-02T03:04:06Z"}`
	tests := []struct {
		name     string
		status   int
		body     string
		unmarked bool
		want     string // "record", "none" (ErrNoSuchTransaction) or "unknown"
	}{
		{"the Bank's record", 200, record, false, "record"},
		{"the Bank has none", 404, `{"error":{"code":"not_found","message":"not found"}}`, false, "none"},
		{"a 404 from in between", 404, ``, true, "unknown"},
		{"an unmarked record", 200, record, true, "unknown"},
		{"a record of another id", 200, strings.Replace(record, tx.ID.String(), uuid.NewString(), 1), false, "unknown"},
		{"unavailable", 503, `{"error":{"code":"unavailable","message":"x"}}`, false, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/v1/transactions/"+tx.ID.String() {
					t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
				}
				if !tt.unmarked {
					ct := payment.ProblemContentType
					if tt.status == 200 {
						ct = "application/json"
					}
					mark(w, ct)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, _ := bankclient.New(srv.URL, srv.Client())
			rec, err := c.Lookup(context.Background(), tx.ID)
			got := "unknown"
			switch {
			case err == nil && rec.ID == tx.ID && rec.Status == payment.StatusApproved && rec.Amount == 5:
				got = "record"
			case errors.Is(err, bankclient.ErrNoSuchTransaction):
				got = "none"
			case err == nil:
				t.Fatalf("record %+v", rec)
			}
			if got != tt.want {
				t.Fatalf("got %s (%+v, %v), want %s", got, rec, err, tt.want)
			}
		})
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "bank:8080", "ftp://bank", "https://", "://x"} {
		if _, err := bankclient.New(u, http.DefaultClient); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}

// TestMutualTLS: with the CA and a client certificate the handshake succeeds against a server requiring
// client certificates; without the client certificate, or trusting another CA, it fails.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	files, err := pki.Write(dir, "store", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.Write(t.TempDir(), "intruder", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	cert, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := bankclient.TLSConfig(files.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.RootCAs,
		ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	get := func(caFile, certFile, keyFile string) (string, error) {
		cfg, err := bankclient.TLSConfig(caFile, certFile, keyFile)
		if err != nil {
			return "", err
		}
		resp, err := bankclient.HTTPClient(5*time.Second, 2, cfg).Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if cn, err := get(files.CA, files.ClientCert, files.ClientKey); err != nil || cn != "store" {
		t.Fatalf("mTLS with the right certificates: %q, %v", cn, err)
	}
	if _, err := get(files.CA, "", ""); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	if _, err := get(files.CA, other.ClientCert, other.ClientKey); err == nil {
		t.Fatal("a client certificate from another CA got through")
	}
	if _, err := get(other.CA, files.ClientCert, files.ClientKey); err == nil {
		t.Fatal("the client trusted a server certificate from another CA")
	}
	if _, err := bankclient.TLSConfig(files.CA, files.ClientCert, ""); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}

// TestSubmitBatchClassifiesAnswers: a 200 batch answer becomes one answer per transaction — results for 201
// and 200 items, a permanent *Error with the item's code for 409/400/413 items, a retryable error for an item
// whose result is unreadable or for another id; a batch answered otherwise is one *Error for the whole batch
// (503 with its Retry-After; 404 from a Bank without the endpoint, permanent), as is a 200 whose answer does
// not hold one item per transaction.
func TestSubmitBatchClassifiesAnswers(t *testing.T) {
	tx2 := tx
	tx2.ID = uuid.New()
	txs := []payment.Transaction{tx, tx2, tx, tx2}
	result := func(id uuid.UUID) string {
		return `{"id":"` + id.String() + `","status":"approved","reason":"","processed_at":"2026-01-02T03:04:06Z"}`
	}
	mixed := `{"results":[{"status":201,"body":` + result(tx.ID) + `},` +
		`{"status":409,"body":{"error":{"code":"idempotency_conflict","message":"x"}}},` +
		`{"status":200,"body":` + result(tx.ID) + `},` +
		`{"status":400,"body":{"error":{"code":"invalid_request","message":"y","fields":{"amount":"z"}}}}]}`
	tests := []struct {
		name, body, retryAfter string
		status                 int
		wholeErr               bool
		permanent              bool
		wantRetry              time.Duration
		unmarked               bool
	}{
		{name: "mixed", status: 200, body: mixed},
		{name: "unavailable", status: 503, body: `{"error":{"code":"unavailable","message":"x"}}`, retryAfter: "2",
			wholeErr: true, wantRetry: 2 * time.Second},
		{name: "no batch endpoint", status: 404, body: `{"error":{"code":"not_found","message":"no such route"}}`,
			wholeErr: true},
		{name: "mixed, without the marks", status: 200, body: mixed, unmarked: true},
		{name: "too few answers", status: 200, body: `{"results":[{"status":201,"body":` + result(tx.ID) + `}]}`,
			wholeErr: true},
		{name: "garbage", status: 200, body: `<html>`, wholeErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var got payment.BatchRequest
				if r.URL.Path != "/v1/transactions/batch" || r.Header.Get("Content-Type") != "application/json" ||
					r.Header.Get(payment.IdempotencyHeader) != "" || json.NewDecoder(r.Body).Decode(&got) != nil ||
					len(got.Transactions) != len(txs) || got.Transactions[1] != tx2 {
					t.Errorf("unexpected request %s %v", r.URL.Path, r.Header)
				}
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if !tt.unmarked {
					ct := "application/json"
					if tt.status != 200 {
						ct = payment.ProblemContentType
					}
					mark(w, ct)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, err := bankclient.New(srv.URL, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			answers, err := c.SubmitBatch(context.Background(), txs)
			if tt.wholeErr {
				var e *bankclient.Error
				if err == nil || bankclient.IsPermanent(err) != tt.permanent ||
					(errors.As(err, &e) && e.RetryAfter != tt.wantRetry) {
					t.Fatalf("got %+v, %v; want a whole-batch error (permanent %v, Retry-After %s)", answers, err,
						tt.permanent, tt.wantRetry)
				}
				return
			}
			if err != nil || len(answers) != 4 {
				t.Fatalf("got %+v, %v", answers, err)
			}
			if answers[0].Err != nil || answers[0].Result.ID != tx.ID || answers[2].Err != nil ||
				answers[2].Result.ID != tx.ID {
				t.Fatalf("results: %+v", answers)
			}
			for i, code := range map[int]string{1: payment.CodeIdempotencyConflict, 3: payment.CodeInvalidRequest} {
				var e *bankclient.Error
				if !errors.As(answers[i].Err, &e) || e.Permanent() == tt.unmarked || e.Code != code {
					t.Fatalf("item %d: %v, want a %s, permanent unless unmarked (%v)", i, answers[i].Err, code,
						tt.unmarked)
				}
			}
		})
	}
	// An item whose result names another id is not a decision: retryable, not permanent.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"results":[{"status":201,"body":`+result(tx2.ID)+`}]}`)
	}))
	defer srv.Close()
	c, _ := bankclient.New(srv.URL, srv.Client())
	answers, err := c.SubmitBatch(context.Background(), []payment.Transaction{tx})
	if err != nil || answers[0].Err == nil || bankclient.IsPermanent(answers[0].Err) {
		t.Fatalf("result for another id: %+v, %v", answers, err)
	}
}
