package bank

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/web"
)

// Server holds the Bank API's dependencies.
type Server struct {
	ledger       Ledger
	log          *slog.Logger
	queryTimeout time.Duration
	decided      *prometheus.CounterVec
	latency      prometheus.Histogram
}

// Option configures a Server.
type Option func(*Server)

// WithQueryTimeout bounds each database operation of a request (default 5s): a database that stops
// answering (a blackholed network, a frozen primary) turns into a 503 + Retry-After instead of a request
// hanging until the client gives up. A transaction that committed just before the deadline is simply
// answered by the client's retry (a replay).
func WithQueryTimeout(d time.Duration) Option { return func(s *Server) { s.queryTimeout = d } }

// NewServer returns the Bank's HTTP handler. Metrics are registered on reg.
func NewServer(ledger Ledger, health *web.Health, reg *prometheus.Registry, log *slog.Logger,
	opts ...Option) http.Handler {
	s := &Server{
		ledger:       ledger,
		log:          log,
		queryTimeout: 5 * time.Second,
		decided: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "bank", Name: "transactions_total",
			Help: "Transactions processed for the first time, by decision and decline reason.",
		}, []string{"status", "reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "bank", Name: "processing_duration_seconds",
			Help:    "Time to decide and record a transaction in the database (first processing and replays).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	for _, o := range opts {
		o(s)
	}
	reg.MustRegister(s.decided, s.latency)
	for _, r := range []payment.Reason{payment.ReasonNone, payment.ReasonInsufficientFunds,
		payment.ReasonUnknownAccount, payment.ReasonCurrencyMismatch} {
		status := payment.StatusDeclined
		if r == payment.ReasonNone {
			status = payment.StatusApproved
		}
		s.decided.WithLabelValues(string(status), string(r)) // export zeroes so rates exist from the start
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
		if !web.BadInput(c, err) {
			s.fail(c, err)
		}
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
	res, created, err := s.ledger.Process(ctx, tx)
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
	rec, err := s.ledger.Transaction(ctx, id)
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

// fail maps every Ledger error to HTTP, in one place.
func (s *Server) fail(c *gin.Context, err error) {
	switch {
	case errors.Is(err, ErrConflict):
		web.Abort(c, http.StatusConflict, payment.CodeIdempotencyConflict,
			"a transaction with this id exists with different fields", nil)
	case errors.Is(err, ErrNotFound):
		web.Abort(c, http.StatusNotFound, payment.CodeNotFound, "not found", nil)
	default:
		web.DependencyError(c, s.log, err, postgres.Unavailable)
	}
}
