package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

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
	body, _ := json.Marshal(payment.Problem(http.StatusServiceUnavailable, ErrorBody(payment.CodeOverloaded,
		"overloaded: "+strconv.Itoa(limit)+" requests in flight; retry after the Retry-After header's seconds", nil)))
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
			hdr.Set(payment.ServiceHeader, ns)
			hdr.Set("Content-Type", payment.ProblemContentType)
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

// maxBuffered is the largest body any route accepts (the Bank's batch): Bounded answers 413 beyond it.
const maxBuffered = payment.MaxBatchBytes

// Bounded reads each request's body before h sees the request — within cfg.ReadBodyTimeout of its headers,
// at most maxBuffered bytes, into memory — then hands h the request with a context that ends
// cfg.RequestTimeout later. A client that stalls mid-body is answered 408 (code request_timeout) and never
// reaches h: h's resources, LimitInFlight's slots first, go only to requests whose body is in, so stalled
// clients cannot starve the others (each holds a connection and a goroutine until its body deadline). Serve
// wraps every handler in it. Its own answers are marked with cfg.Service (payment.ServiceHeader) when set.
func Bounded(h http.Handler, cfg ServerConfig) http.Handler {
	cfg = cfg.Timeouts()
	timeout := problem(http.StatusRequestTimeout, payment.CodeRequestTimeout,
		"the request body did not arrive within "+cfg.ReadBodyTimeout.String()+" (HTTP_READ_BODY_TIMEOUT)")
	unreadable := problem(http.StatusBadRequest, payment.CodeInvalidRequest, "the request body could not be read")
	tooLarge := problem(http.StatusRequestEntityTooLarge, payment.CodePayloadTooLarge,
		"request body larger than "+strconv.Itoa(maxBuffered)+" bytes")
	writeClosing := func(w http.ResponseWriter, status int, body []byte) {
		hdr := w.Header()
		if cfg.Service != "" {
			hdr.Set(payment.ServiceHeader, cfg.Service)
		}
		hdr.Set("Connection", "close") // what is left of the request is unread
		hdr.Set("Content-Type", payment.ProblemContentType)
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Now().Add(cfg.ReadBodyTimeout))
			body, err := io.ReadAll(io.LimitReader(r.Body, maxBuffered+1))
			if err != nil || len(body) > maxBuffered {
				// What is left is not read: net/http would wait for it to reuse the connection, which closes.
				_ = rc.SetReadDeadline(time.Now())
			} else {
				// The deadline must go: net/http's read in the background (a client that goes away cancels
				// the request's context) would take it for one.
				_ = rc.SetReadDeadline(time.Time{})
			}
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				writeClosing(w, http.StatusRequestTimeout, timeout)
				return
			case err != nil:
				writeClosing(w, http.StatusBadRequest, unreadable)
				return
			case len(body) > maxBuffered:
				writeClosing(w, http.StatusRequestEntityTooLarge, tooLarge)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		ctx, cancel := context.WithTimeout(r.Context(), cfg.RequestTimeout)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// problem is the error body of an answer with status, code and msg, encoded once.
func problem(status int, code, msg string) []byte {
	b, _ := json.Marshal(payment.Problem(status, ErrorBody(code, msg, nil)))
	return b
}
