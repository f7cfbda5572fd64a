package store

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/web"
)

// Metrics are the Store's own metrics; the relay registers its delivery and breaker metrics itself.
type Metrics struct {
	created   *prometheus.CounterVec
	backlog   prometheus.Gauge
	oldestAge prometheus.Gauge
	dead      prometheus.Gauge
}

// NewMetrics registers the Store's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "store", Name: "purchases_created_total",
			Help: "Purchases created (replays of an idempotency key excluded), by source.",
		}, []string{"source"}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "store", Name: "outbox_backlog",
			Help: "Purchases in the outbox, not yet delivered to the Bank (all replicas).",
		}),
		oldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "store", Name: "outbox_oldest_pending_age_seconds",
			Help: "Age of the oldest purchase in the outbox (0 when empty), by the database's clock.",
		}),
		dead: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "store", Name: "dead_letters",
			Help: "Purchases the Bank rejected (status rejected), until redriven with `store redrive` (all replicas).",
		}),
	}
	reg.MustRegister(m.created, m.backlog, m.oldestAge, m.dead)
	for _, s := range []Source{SourceAPI, SourceGenerator} {
		m.created.WithLabelValues(string(s)) // export zeroes so rates exist from the start
	}
	return m
}

// SetBacklog publishes an outbox measurement.
func (m *Metrics) SetBacklog(b Backlog) {
	m.backlog.Set(float64(b.Size))
	m.oldestAge.Set(b.OldestAge.Seconds())
	m.dead.Set(float64(b.DeadLetters))
}

// Server holds the Store API's dependencies.
type Server struct {
	repo    *Repository
	metrics *Metrics
	breaker func() string
	log     *slog.Logger
}

// NewServer returns the Store's HTTP handler. breaker reports the relay's circuit breaker state (closed,
// half-open, open). The request metrics are registered on reg.
func NewServer(repo *Repository, metrics *Metrics, breaker func() string, health *web.Health,
	reg *prometheus.Registry, log *slog.Logger) http.Handler {
	s := &Server{repo: repo, metrics: metrics, breaker: breaker, log: log}
	e := web.NewEngine("store", reg, log)
	s.routes(e, health)
	return e
}

// validKey reports whether an Idempotency-Key is 1-255 printable ASCII characters.
func validKey(k string) bool {
	if len(k) < 1 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// decodePurchase reads and validates the body of POST /v1/purchases.
func decodePurchase(r io.Reader) (NewPurchase, error) {
	members, err := payment.DecodeObject(r, "account_id", "amount", "currency")
	if err != nil {
		return NewPurchase{}, err
	}
	fields := payment.Fields{}
	in := NewPurchase{
		AccountID: payment.ParseIdentifier(members, fields, "account_id"),
		Amount:    payment.ParseAmount(members, fields, "amount"),
		Currency:  payment.ParseCurrency(members, fields, "currency"),
		Source:    SourceAPI,
	}
	return in, fields.Err()
}

// PurchaseIDHeader names the purchase a POST /v1/purchases answer is about, on every answer: the purchase
// created or replayed (202), the one whose outcome is unknown (504), or the id the request was given and
// under which nothing exists nor ever will (4xx, 503).
const PurchaseIDHeader = "Purchase-Id"

type purchaseIDKey struct{}

// PurchaseIDs gives each POST /v1/purchases a new purchase id before h (and anything h wraps, such as the
// in-flight bound) answers it: in the Purchase-Id header of every answer, and to the handler, which creates
// the purchase under it.
func PurchaseIDs(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/purchases" {
			if id, err := NewID(); err == nil {
				w.Header().Set(PurchaseIDHeader, id.String())
				r = r.WithContext(context.WithValue(r.Context(), purchaseIDKey{}, id))
			}
		}
		h.ServeHTTP(w, r)
	})
}

// purchaseID is the request's purchase id (PurchaseIDs), or a new one, in the Purchase-Id header.
func purchaseID(c *gin.Context) (uuid.UUID, error) {
	if id, ok := c.Request.Context().Value(purchaseIDKey{}).(uuid.UUID); ok {
		return id, nil
	}
	id, err := NewID()
	if err == nil {
		c.Header(PurchaseIDHeader, id.String())
	}
	return id, err
}

// postPurchase handles POST /v1/purchases: 202 once the purchase and its outbox row are committed and
// durable; 504 when that cannot be known in time (see fail).
func (s *Server) postPurchase(c *gin.Context) {
	id, err := purchaseID(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	if !web.RequireJSON(c) {
		return
	}
	web.LimitBody(c)
	var key string
	if keys := c.Request.Header.Values(payment.IdempotencyHeader); len(keys) > 0 {
		if len(keys) > 1 || !validKey(keys[0]) {
			web.Abort(c, http.StatusBadRequest, payment.CodeInvalidRequest, "invalid Idempotency-Key",
				map[string]string{payment.IdempotencyHeader: "must be one value of 1-255 printable ASCII characters"})
			return
		}
		key = keys[0]
	}
	in, err := decodePurchase(c.Request.Body)
	if err != nil {
		if !web.BadInput(c, err) {
			s.fail(c, err)
		}
		return
	}
	in.IdempotencyKey, in.ID = key, id
	p, created, err := s.repo.Create(c.Request.Context(), in)
	if err != nil {
		if !web.BadInput(c, err) {
			s.fail(c, err)
		}
		return
	}
	if created {
		s.metrics.created.WithLabelValues(string(SourceAPI)).Inc()
	} else {
		c.Header("Idempotent-Replayed", "true")
	}
	c.Header(PurchaseIDHeader, p.ID.String())
	c.Header("Location", "/v1/purchases/"+p.ID.String())
	c.JSON(http.StatusAccepted, p)
}

// getPurchase handles GET /v1/purchases/:id.
func (s *Server) getPurchase(c *gin.Context) {
	id, err := payment.ParseUUID(c.Param("id"))
	if err != nil {
		web.Abort(c, http.StatusBadRequest, payment.CodeInvalidRequest, "id must be a UUID",
			map[string]string{"id": "must be a UUID"})
		return
	}
	p, err := s.repo.Get(c.Request.Context(), id)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, p)
}

// OutboxStatus is the answer of GET /v1/outbox.
type OutboxStatus struct {
	Backlog          int64   `json:"backlog"`
	OldestPendingAge float64 `json:"oldest_pending_age_seconds"`
	Breaker          string  `json:"breaker"`
	Purchases        struct {
		Pending  int64 `json:"pending"`
		Approved int64 `json:"approved"`
		Declined int64 `json:"declined"`
		Rejected int64 `json:"rejected"`
	} `json:"purchases"`
}

// getOutbox handles GET /v1/outbox: the backlog (all replicas), this replica's breaker, purchases by status.
func (s *Server) getOutbox(c *gin.Context) {
	ctx := c.Request.Context()
	b, err := s.repo.Backlog(ctx)
	if err != nil {
		s.fail(c, err)
		return
	}
	counts, err := s.repo.CountByStatus(ctx)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.metrics.SetBacklog(b)
	st := OutboxStatus{Backlog: b.Size, OldestPendingAge: b.OldestAge.Seconds(), Breaker: s.breaker()}
	st.Purchases.Pending, st.Purchases.Approved = counts[StatusPending], counts[StatusApproved]
	st.Purchases.Declined, st.Purchases.Rejected = counts[StatusDeclined], counts[StatusRejected]
	c.JSON(http.StatusOK, st)
}

// fail maps every Repository error to HTTP, in one place. A purchase that is or may be committed without
// being confirmed durable is a 504 naming it (Purchase-Id, Location): never a 503, which says that nothing
// was written.
func (s *Server) fail(c *gin.Context, err error) {
	var u *UnconfirmedError
	switch {
	case errors.As(err, &u):
		id := u.ID.String()
		s.log.Warn("purchase unconfirmed", "id", id, "committed", u.Committed, "err", err)
		c.Header(PurchaseIDHeader, id)
		c.Header("Location", "/v1/purchases/"+id)
		c.Header("Retry-After", "1")
		msg := "the outcome of purchase " + id + " is not known yet: retry with the same Idempotency-Key " +
			"(safe), or read its Location later (a 404 can still turn into 200 for a while)"
		if u.Committed {
			msg = "purchase " + id + " is stored but not yet confirmed durable: retry with the same " +
				"Idempotency-Key, or read its Location later"
		}
		web.Abort(c, http.StatusGatewayTimeout, payment.CodeOutcomeUnknown, msg, nil)
	case errors.Is(err, ErrConflict):
		web.Abort(c, http.StatusConflict, payment.CodeIdempotencyConflict,
			"this Idempotency-Key was used for a different purchase", nil)
	case errors.Is(err, ErrNotFound):
		web.Abort(c, http.StatusNotFound, payment.CodeNotFound, "not found", nil)
	default:
		web.DependencyError(c, s.log, err, postgres.Unavailable)
	}
}
