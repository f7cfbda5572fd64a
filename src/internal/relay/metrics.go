package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// The answers StoreRelayForeignRefusals and StoreBankRefusesRelay are for, exported as zeroes from the start,
// as the Bank does its refusals: the series exist before the first one (make e2e checks every alert's input
// series and labels), and `increase` counts the first refusal (it sees nothing of a series born at 1).
var (
	foreignCodes = []string{"403", "404"} // the mesh's RBAC: access denied, and no route
	refusalCodes = []string{payment.CodeCallerNotAllowed, payment.CodeNotFound}
)

type metrics struct {
	deliveries   *prometheus.CounterVec
	attempts     prometheus.Histogram
	breakerState prometheus.Gauge
	transitions  *prometheus.CounterVec
	latency      prometheus.Histogram
	batchSize    prometheus.Histogram
	foreign      *prometheus.CounterVec
	refusals     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "store", Name: "deliveries_total",
			Help: "Sends to the Bank by outcome: approved, declined, rejected (dead letter), retry (failed, resent later).",
		}, []string{"outcome"}),
		attempts: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "store", Name: "delivery_attempts",
			Help:    "Sends a purchase needed until the Bank decided or rejected it.",
			Buckets: []float64{1, 2, 3, 5, 8, 13, 21, 50, 100},
		}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "store", Name: "breaker_state",
			Help: "The Bank circuit breaker of this replica: 0 closed, 1 half-open, 2 open.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "store", Name: "breaker_transitions_total",
			Help: "Circuit breaker state changes.",
		}, []string{"from", "to"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "store", Name: "bank_request_duration_seconds",
			Help:    "Duration of requests to the Bank (one purchase, or one batch), failed ones included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "store", Name: "bank_batch_size",
			Help:    "Purchases per batch request to the Bank (RELAY_MODE=batch).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		foreign: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "store", Name: "relay_foreign_answers_total",
			Help: "Answers to the relay without the Bank's marks (a sidecar, a proxy, a route in between), by HTTP status code; retried, never a dead letter.",
		}, []string{"code"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "store", Name: "relay_bank_refusals_total",
			Help: "The Bank's own 4xx answers that no purchase is at fault for (e.g. caller_not_allowed, not_found), by error code; retried.",
		}, []string{"code"}),
	}
	reg.MustRegister(m.deliveries, m.attempts, m.breakerState, m.transitions, m.latency, m.batchSize, m.foreign,
		m.refusals)
	for _, o := range []string{"approved", "declined", "rejected", "retry"} {
		m.deliveries.WithLabelValues(o) // export zeroes so rates exist from the start
	}
	for _, c := range foreignCodes {
		m.foreign.WithLabelValues(c)
	}
	for _, c := range refusalCodes {
		m.refusals.WithLabelValues(c)
	}
	return m
}
