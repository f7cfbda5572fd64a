package bank

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/caller"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/web"
)

// Server holds the Bank API's dependencies.
type Server struct {
	ledger       Ledger
	callers      *caller.Policy
	refused      *prometheus.CounterVec
	log          *slog.Logger
	queryTimeout time.Duration
	decided      *prometheus.CounterVec
	latency      prometheus.Histogram
	batchItems   *prometheus.CounterVec
	batchSize    prometheus.Histogram
	batchLatency prometheus.Histogram
}

// Option configures a Server.
type Option func(*Server)

// WithQueryTimeout bounds each database operation of a request (default 5s): a database that stops
// answering (a blackholed network, a frozen primary) turns into a 503 + Retry-After instead of a request
// hanging until the client gives up. A transaction that committed just before the deadline is simply
// answered by the client's retry (a replay).
func WithQueryTimeout(d time.Duration) Option { return func(s *Server) { s.queryTimeout = d } }

// NewServer returns the Bank's HTTP handler: its API answers only the callers that callers allows. Metrics
// are registered on reg.
func NewServer(ledger Ledger, callers *caller.Policy, health *web.Health, reg *prometheus.Registry,
	log *slog.Logger, opts ...Option) http.Handler {
	s := &Server{
		ledger:       ledger,
		callers:      callers,
		refused:      newRefused(),
		log:          log,
		queryTimeout: 5 * time.Second,
		decided: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "bank", Name: "transactions_total",
			Help: "Transactions processed for the first time (single or in a batch), by decision and decline reason.",
		}, []string{"status", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "bank", Name: "processing_duration_seconds",
			Help:    "Time to decide and record a transaction in the database (first processing and replays).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		batchItems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "bank", Name: "batch_items_total",
			Help: "Transactions answered inside batches, by the status code each got (201, 200, 409, 400, 413, 403).",
		}, []string{"code"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "bank", Name: "batch_size",
			Help:    "Transactions per batch request that reached decoding of its items.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		batchLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "bank", Name: "batch_processing_duration_seconds",
			Help:    "Time to decide and record a batch's valid transactions in the database (one statement).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	for _, o := range opts {
		o(s)
	}
	reg.MustRegister(s.decided, s.latency, s.batchItems, s.batchSize, s.batchLatency, s.refused)
	for _, r := range []payment.Reason{payment.ReasonNone, payment.ReasonInsufficientFunds,
		payment.ReasonUnknownAccount, payment.ReasonCurrencyMismatch} {
		status := payment.StatusDeclined
		if r == payment.ReasonNone {
			status = payment.StatusApproved
		}
		s.decided.WithLabelValues(string(status), string(r)) // export zeroes so rates exist from the start
	}
	for _, code := range []int{http.StatusCreated, http.StatusOK, http.StatusConflict, http.StatusBadRequest,
		http.StatusRequestEntityTooLarge, http.StatusForbidden} {
		s.batchItems.WithLabelValues(strconv.Itoa(code))
	}
	e := web.NewEngine("bank", reg, log)
	s.routes(e, health)
	return e
}

// postTransaction handles POST /v1/transactions.
func (s *Server) postTransaction(c *gin.Context) {
	if !web.RequireJSON(c) {
		return
	}
	web.LimitBody(c)
	tx, err := payment.DecodeTransaction(c.Request.Body)
	if err != nil {
		s.fail(c, err)
		return
	}
	if key := c.GetHeader(payment.IdempotencyHeader); key != "" && key != tx.ID.String() {
		web.Abort(c, http.StatusBadRequest, payment.CodeInvalidRequest, "Idempotency-Key must equal id",
			map[string]string{payment.IdempotencyHeader: "must equal the body's id"})
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.queryTimeout)
	defer cancel()
	start := time.Now()
	res, created, err := s.ledger.Process(ctx, callerOf(c), tx)
	s.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		s.fail(c, err)
		return
	}
	if created {
		s.decided.WithLabelValues(string(res.Status), string(res.Reason)).Inc()
		c.JSON(http.StatusCreated, res)
		return
	}
	c.JSON(http.StatusOK, res)
}

// getTransaction handles GET /v1/transactions/:id.
func (s *Server) getTransaction(c *gin.Context) {
	id, err := payment.ParseUUID(c.Param("id"))
	if err != nil {
		web.Abort(c, http.StatusBadRequest, payment.CodeInvalidRequest, "id must be a UUID",
			map[string]string{"id": "must be a UUID"})
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.queryTimeout)
	defer cancel()
	rec, err := s.ledger.Transaction(ctx, callerOf(c), id)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, rec)
}

// getAccount handles GET /v1/accounts/:id.
func (s *Server) getAccount(c *gin.Context) {
	id := c.Param("id")
	if !payment.ValidIdentifier(id) {
		web.Abort(c, http.StatusBadRequest, payment.CodeInvalidRequest, "invalid account id",
			map[string]string{"id": "must be 1-64 characters of [A-Za-z0-9._-]"})
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.queryTimeout)
	defer cancel()
	acc, err := s.ledger.Account(ctx, id)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, acc)
}

// batchItem is one item of the batch's answer: the status and body POST /v1/transactions would have given
// (payment.BatchItem on the wire).
type batchItem struct {
	Status int `json:"status"`
	Body   any `json:"body"`
}

// postBatch handles POST /v1/transactions/batch: every valid transaction is processed in one database
// statement (Ledger.ProcessBatch), and each item gets the answer and the effect the single endpoint would
// give it, in order. A database failure fails the whole batch (503 + Retry-After): nothing of it is
// half-applied, and the retry answers every item once.
func (s *Server) postBatch(c *gin.Context) {
	if !web.RequireJSON(c) {
		return
	}
	if c.GetHeader(payment.IdempotencyHeader) != "" {
		web.Abort(c, http.StatusBadRequest, payment.CodeInvalidRequest, "a batch takes no Idempotency-Key",
			map[string]string{payment.IdempotencyHeader: "not used by batches: each transaction's id is its key"})
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, payment.MaxBatchBytes)
	raws, err := payment.DecodeBatch(c.Request.Body)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.batchSize.Observe(float64(len(raws)))
	items := make([]batchItem, len(raws))
	txs := make([]payment.Transaction, 0, len(raws))
	at := make([]int, 0, len(raws)) // at[j]: the item of txs[j]
	for i, raw := range raws {
		var tx payment.Transaction
		var err error = &http.MaxBytesError{Limit: payment.MaxBodyBytes} // the single endpoint's answer to it
		if len(raw) <= payment.MaxBodyBytes {
			tx, err = payment.DecodeBatchTransaction(raw)
		}
		if err != nil {
			items[i].Status, items[i].Body = s.itemError(c, err)
			continue
		}
		txs = append(txs, tx)
		at = append(at, i)
	}
	if len(txs) > 0 {
		ctx, cancel := context.WithTimeout(c.Request.Context(), s.queryTimeout)
		defer cancel()
		start := time.Now()
		outs, err := s.ledger.ProcessBatch(ctx, callerOf(c), txs)
		s.batchLatency.Observe(time.Since(start).Seconds())
		if err != nil {
			s.fail(c, err)
			return
		}
		for j, o := range outs {
			it := &items[at[j]]
			switch {
			case o.Err != nil:
				s.refuse(c, fmt.Errorf("batch item %s: %w", txs[j].ID, o.Err))
				it.Status, it.Body = s.itemError(c, o.Err)
			case o.Created:
				s.decided.WithLabelValues(string(o.Result.Status), string(o.Result.Reason)).Inc()
				it.Status, it.Body = http.StatusCreated, o.Result
			default:
				it.Status, it.Body = http.StatusOK, o.Result
			}
		}
	}
	for _, it := range items {
		s.batchItems.WithLabelValues(strconv.Itoa(it.Status)).Inc()
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", appendBatchAnswer(nil, items))
}

// appendBatchAnswer appends {"results":[…]} for items: each body is what gin's c.JSON writes for it (a
// Result encoded by hand, as encoding/json would: its strings are fixed ASCII and uuid text, its time in
// PostgreSQL's range; anything else through encoding/json), without encoding/json's reflection over 32 interfaces per batch — a fifth of the
// batch handler's CPU (docs/performance.md). The batch test compares it byte for byte with the single
// endpoint's bodies.
func appendBatchAnswer(b []byte, items []batchItem) []byte {
	b = slices.Grow(b, 16+112*len(items))
	b = append(b, `{"results":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"status":`...)
		b = strconv.AppendInt(b, int64(it.Status), 10)
		b = append(b, `,"body":`...)
		if res, ok := it.Body.(payment.Result); ok {
			b = append(b, `{"id":"`...)
			b = payment.AppendUUID(b, res.ID)
			b = append(b, `","status":"`...)
			b = append(b, res.Status...)
			b = append(b, `","reason":"`...)
			b = append(b, res.Reason...)
			b = append(b, `","processed_at":"`...)
			b = res.ProcessedAt.AppendFormat(b, time.RFC3339Nano)
			b = append(b, `"}`...)
		} else {
			body, err := json.Marshal(it.Body)
			if err != nil {
				body = []byte(`null`) // not reached: bodies are results and error bodies
			}
			b = append(b, body...)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// itemError is the answer to one item of a batch that failed on its own (bad input, a conflict): what fail
// answers the single endpoint for the same error.
func (s *Server) itemError(c *gin.Context, err error) (int, payment.ErrorBody) {
	status, body, ok := answer(err)
	if !ok { // not an item's error: a bug in the ledger
		s.log.Error("batch item failed", "path", c.FullPath(), "err", err)
		status, body = http.StatusInternalServerError, web.ErrorBody(payment.CodeInternal, "internal error", nil)
	}
	return status, payment.Problem(status, body) // the body the single endpoint writes (web.WriteError)
}

// answer maps an error to its HTTP status and error body, in one place — for whole requests (fail) and for
// each item of a batch: a conflict (409), a caller refused (403 caller_not_allowed), also on the id of
// another caller's transaction (disclosing nothing of it: the Store retries and alerts, it never takes it
// for the Bank's rejection), an unknown resource (404), bad input (400 with fields, 413). ok is false for anything else: a database
// failure or a bug, answered for the whole request by web.DependencyError (503 + Retry-After, or 500).
func answer(err error) (status int, body payment.ErrorBody, ok bool) {
	switch {
	case errors.Is(err, ErrConflict):
		return http.StatusConflict, web.ErrorBody(payment.CodeIdempotencyConflict,
			"a transaction with this id exists with different fields", nil), true
	case errors.Is(err, ErrForeign):
		return http.StatusForbidden, web.ErrorBody(payment.CodeCallerNotAllowed,
			"this transaction id belongs to another caller", nil), true
	case errors.As(err, new(*refusal)):
		return http.StatusForbidden, web.ErrorBody(payment.CodeCallerNotAllowed, err.Error(), nil), true
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, web.ErrorBody(payment.CodeNotFound, "not found", nil), true
	}
	return web.InputError(err)
}

// fail answers a request that failed as a whole.
func (s *Server) fail(c *gin.Context, err error) {
	s.refuse(c, err)
	if status, body, ok := answer(err); ok {
		web.WriteError(c, status, body)
		return
	}
	web.DependencyError(c, s.log, err, postgres.Unavailable)
}
