package web

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// LimitInFlight returns h bounded to limit requests in its handlers at once (HTTP_MAX_IN_FLIGHT). A request
// beyond the bound is answered at once with 503, Retry-After and the JSON error body (code overloaded),
// without reaching h: nothing of it is read, nothing is written, so the client's retry is always safe. It
// does not wait for a slot either — a queue would hold the request's memory and add its wait to every
// answer, which is what the bound is there to prevent. The management paths (AdminPaths: /healthz, /readyz,
// /metrics) are never limited: probes and scrapes are answered while the API sheds. limit 0 returns h as it
// is.
//
// Metrics (namespace ns): <ns>_http_requests_in_flight (requests in h now, at most the limit),
// <ns>_http_max_requests_in_flight (the limit) and <ns>_http_requests_shed_total.
func LimitInFlight(h http.Handler, limit int, ns string, reg prometheus.Registerer) http.Handler {
	if limit <= 0 {
		return h
	}
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "http_requests_in_flight",
		Help: "Requests being handled now, of those HTTP_MAX_IN_FLIGHT bounds (all but /healthz, /readyz, /metrics)."})
	bound := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "http_max_requests_in_flight",
		Help: "HTTP_MAX_IN_FLIGHT: requests handled at once before the next is shed."})
	shed := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "http_requests_shed_total",
		Help: "Requests answered 503 overloaded without being handled, because HTTP_MAX_IN_FLIGHT were in flight."})
	reg.MustRegister(inFlight, bound, shed)
	bound.Set(float64(limit))
	// The body of every shed answer, encoded once: shedding must stay cheap when it is all the server does.
	body, _ := json.Marshal(ErrorBody(payment.CodeOverloaded,
		"overloaded: "+strconv.Itoa(limit)+" requests in flight; retry after the Retry-After header's seconds", nil))
	body = append(body, '\n')
	slots := make(chan struct{}, limit)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(AdminPaths, r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			shed.Inc()
			hdr := w.Header()
			hdr.Set("Retry-After", "1")
			hdr.Set("Content-Type", "application/json; charset=utf-8")
			hdr.Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write(body)
			return
		}
		inFlight.Inc()
		defer func() {
			inFlight.Dec()
			<-slots
		}()
		h.ServeHTTP(w, r)
	})
}
