package bank

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
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

func batchBody(items ...string) string { return `{"transactions":[` + strings.Join(items, ",") + `]}` }

func decodeBatchAnswer(t *testing.T, body []byte) []payment.BatchItem {
	t.Helper()
	var resp payment.BatchResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("batch answer %s: %v", body, err)
	}
	return resp.Results
}

// TestBatchItemsAnswerAsTheSingleEndpoint posts the same request bodies one by one to POST /v1/transactions
// of one Bank and as the items of batches to POST /v1/transactions/batch of another (twin databases): every
// item gets the very status and body the single endpoint gave — created, replays (of earlier requests, of
// earlier items, with the members in another order), conflicts, each invalid-input class with its fields,
// an item over 16 KiB — processed_at aside, which is each Bank's own clock; within a batch, every answer
// for one id carries the first answer's processed_at. The balances agree afterwards.
func TestBatchItemsAnswerAsTheSingleEndpoint(t *testing.T) {
	singleRepo, _ := newLedger(t)
	batchRepo, batchDB := newLedger(t)
	health := web.NewHealth(func(context.Context) error { return nil })
	single := httptest.NewServer(NewServer(singleRepo, anonymous(), health, prometheus.NewRegistry(), slog.New(slog.DiscardHandler)))
	defer single.Close()
	batched := httptest.NewServer(NewServer(batchRepo, anonymous(), health, prometheus.NewRegistry(), slog.New(slog.DiscardHandler)))
	defer batched.Close()

	post := func(url, body string) (int, []byte) {
		t.Helper()
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, bytes.TrimSpace(data)
	}
	a := newTx("ACC-000001", 600, "EUR")
	aJSON := mustJSON(t, a)
	reordered := fmt.Sprintf(`{"created_at":%q,"currency":"EUR","amount":600,"account_id":"ACC-000001","store_id":"store-1","id":%q}`,
		a.CreatedAt.UTC().Format("2006-01-02T15:04:05.999999999Z07:00"), a.ID)
	aOther := a
	aOther.Amount = 601
	b := newTx("ACC-000001", 500, "EUR")
	batches := [][]string{
		{
			aJSON,          // 201 approved
			mustJSON(t, b), // 201 declined: 400 left
			mustJSON(t, newTx("ACC-000001", 400, "EUR")), // 201 approved: 0 left
			reordered,           // 200: replay of the first item
			mustJSON(t, aOther), // 409
			mustJSON(t, newTx("ACC-000002", 1, "USD")), // 201 currency_mismatch
			mustJSON(t, newTx("ACC-404040", 1, "EUR")), // 201 unknown_account
			`{"id":1}`, // 400 with fields
			strings.Replace(mustJSON(t, newTx("ACC-000002", 1, "EUR")), `"amount":1`, `"amount":1.5`, 1), // 400 amount
			strings.Replace(mustJSON(t, newTx("ACC-000002", 1, "EUR")), `}`, `,"extra":true}`, 1),        // 400 unknown field
			`{"id":"x","id":"y"}`,       // 400 duplicate member
			`null`, `1`, `[]`, `"text"`, // 400 not an object
			`{` + strings.Repeat(" ", payment.MaxBodyBytes) + `}`, // 413
			mustJSON(t, b), // 200: replay of the decline
		},
		{aJSON, mustJSON(t, aOther), mustJSON(t, newTx("ACC-000002", 1000, "EUR")), mustJSON(t, newTx("ACC-000002", 1, "EUR"))},
	}
	processedAt := regexp.MustCompile(`"processed_at":"[^"]*"`)
	for n, items := range batches {
		status, body := post(batched.URL+"/v1/transactions/batch", batchBody(items...))
		if status != http.StatusOK {
			t.Fatalf("batch %d: %d %s", n, status, body)
		}
		got := decodeBatchAnswer(t, body)
		if len(got) != len(items) {
			t.Fatalf("batch %d: %d answers for %d items", n, len(got), len(items))
		}
		firstAnswer := map[string][]byte{}
		for i, item := range items {
			wantStatus, wantBody := post(single.URL+"/v1/transactions", item)
			if got[i].Status != wantStatus ||
				processedAt.ReplaceAllString(string(got[i].Body), "") != processedAt.ReplaceAllString(string(wantBody), "") {
				t.Errorf("batch %d, item %d: %d %s; single endpoint: %d %s", n, i, got[i].Status, got[i].Body,
					wantStatus, wantBody)
			}
			if got[i].Status == http.StatusOK || got[i].Status == http.StatusCreated {
				var res payment.Result
				_ = json.Unmarshal(got[i].Body, &res)
				if prev, ok := firstAnswer[res.ID.String()]; ok && !bytes.Equal(prev, got[i].Body) {
					t.Errorf("batch %d, item %d: %s, an earlier answer for the id was %s", n, i, got[i].Body, prev)
				}
				firstAnswer[res.ID.String()] = got[i].Body
			}
		}
	}
	for _, acc := range []string{"ACC-000001", "ACC-000002"} {
		if x, y := balance(t, singleRepo, acc), balance(t, batchRepo, acc); x != y {
			t.Errorf("%s: %d one by one, %d batched", acc, x, y)
		}
	}
	auditLedger(t, batchDB)
}

// TestBatchFailures: whole-batch answers, with the ledger mocked (no expectation: bad input never reaches
// it) — media type, Idempotency-Key, a body over 256 KiB, an envelope that is not {"transactions":[1-256
// items]} — and a database failure (503 + Retry-After for the whole batch) or a bug (500).
func TestBatchFailures(t *testing.T) {
	many := make([]string, payment.MaxBatchItems+1)
	for i := range many {
		many[i] = sampleBody()
	}
	tests := []struct {
		name, contentType, body string
		header                  []string
		wantStatus              int
		wantCode, wantField     string
	}{
		{"media type", "text/plain", batchBody(sampleBody()), nil, 415, payment.CodeUnsupportedMediaType, "Content-Type"},
		{"idempotency key", "application/json", batchBody(sampleBody()), []string{payment.IdempotencyHeader, sample.ID.String()},
			400, payment.CodeInvalidRequest, payment.IdempotencyHeader},
		{"too large", "application/json", batchBody(strings.Repeat(" ", payment.MaxBatchBytes) + sampleBody()), nil, 413,
			payment.CodePayloadTooLarge, ""},
		{"malformed", "application/json", `{"transactions":[`, nil, 400, payment.CodeInvalidRequest, ""},
		{"not an object", "application/json", `[` + sampleBody() + `]`, nil, 400, payment.CodeInvalidRequest, ""},
		{"missing", "application/json", `{}`, nil, 400, payment.CodeInvalidRequest, "transactions"},
		{"not an array", "application/json", `{"transactions":{}}`, nil, 400, payment.CodeInvalidRequest, "transactions"},
		{"empty", "application/json", `{"transactions":[]}`, nil, 400, payment.CodeInvalidRequest, "transactions"},
		{"too many", "application/json", batchBody(many...), nil, 400, payment.CodeInvalidRequest, "transactions"},
		{"other member", "application/json", `{"transactions":[` + sampleBody() + `],"x":1}`, nil, 400, payment.CodeInvalidRequest, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			rec := f.do("POST", "/v1/transactions/batch", tt.contentType, tt.body, tt.header...)
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
	for _, tt := range []struct {
		name       string
		err        error
		want       int
		retryAfter bool
	}{
		{"database down", fmt.Errorf("batch: %w", &pgconn.ConnectError{}), 503, true},
		{"raced too often", &pgconn.PgError{Code: "40001"}, 503, true},
		{"bug", errors.New("boom"), 500, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.ledger.EXPECT().ProcessBatch(gomock.Any(), caller.Anonymous, []payment.Transaction{sample, sample}).Return(nil, tt.err)
			rec := f.do("POST", "/v1/transactions/batch", "application/json", batchBody(sampleBody(), `{}`, sampleBody()))
			if rec.Code != tt.want || (rec.Header().Get("Retry-After") != "") != tt.retryAfter {
				t.Fatalf("status %d, Retry-After %q; want %d (Retry-After: %v)", rec.Code,
					rec.Header().Get("Retry-After"), tt.want, tt.retryAfter)
			}
		})
	}
}

// TestBatchMetricsCountItems: bank_batch_items_total counts each item by its answer, bank_transactions_total
// each transaction processed for the first time, bank_batch_size the items per batch; a batch of invalid
// items only never reaches the ledger.
func TestBatchMetricsCountItems(t *testing.T) {
	f := newFixture(t)
	approved := payment.Result{ID: sample.ID, Status: payment.StatusApproved}
	f.ledger.EXPECT().ProcessBatch(gomock.Any(), caller.Anonymous, []payment.Transaction{sample, sample, sample}).
		Return([]Outcome{{Result: approved, Created: true}, {Result: approved}, {Err: ErrConflict}}, nil)
	rec := f.do("POST", "/v1/transactions/batch", "application/json",
		batchBody(sampleBody(), sampleBody(), `{"id":1}`, sampleBody()))
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var codes []int
	for _, it := range decodeBatchAnswer(t, rec.Body.Bytes()) {
		codes = append(codes, it.Status)
	}
	if fmt.Sprint(codes) != "[201 200 400 409]" {
		t.Fatalf("item answers %v, want [201 200 400 409]", codes)
	}
	if rec := f.do("POST", "/v1/transactions/batch", "application/json", batchBody(`{}`, `2`)); rec.Code != 200 {
		t.Fatalf("invalid items only: %d %s", rec.Code, rec.Body)
	}
	want := `
# HELP bank_batch_items_total Transactions answered inside batches, by the status code each got (201, 200, 409, 400, 413, 403).
# TYPE bank_batch_items_total counter
bank_batch_items_total{code="200"} 1
bank_batch_items_total{code="201"} 1
bank_batch_items_total{code="400"} 3
bank_batch_items_total{code="403"} 0
bank_batch_items_total{code="409"} 1
bank_batch_items_total{code="413"} 0
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "bank_batch_items_total"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(prometheusCounter(t, f.reg, "approved", "")); got != 1 {
		t.Fatalf("bank_transactions_total{approved} = %v, want 1", got)
	}
	mfs, _ := f.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "bank_batch_size" {
			if h := mf.GetMetric()[0].GetHistogram(); h.GetSampleCount() != 2 || h.GetSampleSum() != 6 {
				t.Fatalf("bank_batch_size: %d batches, %v items; want 2, 6", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
}

// TestBatchAnswerEncodesAsEncodingJSON: the hand-written batch answer is byte for byte what encoding/json
// (gin's c.JSON) writes for the same items — results with every precision of processed_at, the zero time,
// another zone, every status and reason, and error bodies with and without fields.
func TestBatchAnswerEncodesAsEncodingJSON(t *testing.T) {
	var items []batchItem
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, d := range []time.Duration{0, 1, 10, 123456789, time.Microsecond, 120 * time.Millisecond, 999999999} {
		st, reason := payment.StatusApproved, payment.ReasonNone
		if i%2 == 1 {
			st, reason = payment.StatusDeclined, []payment.Reason{payment.ReasonInsufficientFunds,
				payment.ReasonUnknownAccount, payment.ReasonCurrencyMismatch}[i%3]
		}
		items = append(items, batchItem{Status: 201 - i%2, Body: payment.Result{ID: uuid.New(), Status: st,
			Reason: reason, ProcessedAt: base.Add(d)}})
	}
	items = append(items,
		batchItem{Status: 200, Body: payment.Result{ID: uuid.New(), Status: payment.StatusApproved}},
		batchItem{Status: 200, Body: payment.Result{ID: uuid.New(), Status: payment.StatusApproved,
			ProcessedAt: base.In(time.FixedZone("x", 3600))}},
		batchItem{Status: 409, Body: web.ErrorBody(payment.CodeIdempotencyConflict, "a <conflict> & more", nil)},
		batchItem{Status: 400, Body: web.ErrorBody(payment.CodeInvalidRequest, "invalid fields",
			map[string]string{"amount": "must be between 1 and 1000000000", "id": "is required"})})
	want, err := json.Marshal(struct {
		Results []batchItem `json:"results"`
	}{items})
	if err != nil {
		t.Fatal(err)
	}
	if got := appendBatchAnswer(nil, items); !bytes.Equal(got, want) {
		t.Fatalf("hand-written:\n%s\nencoding/json:\n%s", got, want)
	}
}
