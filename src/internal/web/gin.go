package web

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/txmesh/txmesh/src/internal/payment"
)

func init() { gin.SetMode(gin.ReleaseMode) }

// NewEngine returns a gin engine for the service namespace (bank, store): every response marked with its
// name (payment.ServiceHeader), problem-document 404/405/500 answers, and request metrics
// (`<ns>_http_requests_total{method,route,code}`, `<ns>_http_request_duration_seconds{method,route}`).
func NewEngine(namespace string, reg *prometheus.Registry, log *slog.Logger) *gin.Engine {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "http_requests_total", Help: "HTTP requests by method, route and status code.",
	}, []string{"method", "route", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "http_request_duration_seconds", Help: "HTTP request latency.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"method", "route"})
	reg.MustRegister(requests, duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(markService(namespace))
	e.Use(func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		requests.WithLabelValues(c.Request.Method, route, strconv.Itoa(c.Writer.Status())).Inc()
		duration.WithLabelValues(c.Request.Method, route).Observe(time.Since(start).Seconds())
	})
	e.Use(gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, v any) {
		log.Error("panic serving request", "path", c.Request.URL.Path, "panic", v)
		Abort(c, http.StatusInternalServerError, payment.CodeInternal, "internal error", nil)
	}))
	e.NoRoute(func(c *gin.Context) {
		Abort(c, http.StatusNotFound, payment.CodeNotFound, "no such route", nil)
	})
	e.NoMethod(func(c *gin.Context) {
		Abort(c, http.StatusMethodNotAllowed, payment.CodeMethodNotAllowed, "method not allowed", nil)
	})
	e.GET(PathMetrics, gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	return e
}

// HealthRoutes adds /healthz (the process answers) and /readyz (h.Ready).
func HealthRoutes(e *gin.Engine, h *Health, log *slog.Logger) {
	e.GET(PathHealthz, func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	e.GET(PathReadyz, func(c *gin.Context) {
		if err := h.Ready(c.Request.Context()); err != nil {
			// The check's error names hosts and drivers' messages: the log gets it, the answer does not.
			msg := "not ready: a dependency is unavailable"
			if errors.Is(err, errDraining) {
				msg = "not ready: draining"
				log.Debug("not ready", "err", err)
			} else {
				log.Warn("not ready", "err", err)
			}
			c.Header("Retry-After", "1")
			Abort(c, http.StatusServiceUnavailable, payment.CodeUnavailable, msg, nil)
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	})
}

// Abort answers with the error body (WriteError).
func Abort(c *gin.Context, status int, code, msg string, fields map[string]string) {
	WriteError(c, status, ErrorBody(code, msg, fields))
}

// Unavailable answers 503 with Retry-After: a dependency failed, the client should retry.
func Unavailable(c *gin.Context, msg string) {
	c.Header("Retry-After", "1")
	Abort(c, http.StatusServiceUnavailable, payment.CodeUnavailable, msg, nil)
}

// RequireJSON answers 415 unless the request declares a JSON body.
func RequireJSON(c *gin.Context) bool {
	ct := c.ContentType()
	if !strings.EqualFold(ct, "application/json") {
		Abort(c, http.StatusUnsupportedMediaType, payment.CodeUnsupportedMediaType,
			"Content-Type must be application/json", map[string]string{"Content-Type": "must be application/json"})
		return false
	}
	return true
}

// LimitBody caps the body at payment.MaxBodyBytes.
func LimitBody(c *gin.Context) {
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, payment.MaxBodyBytes)
}

// BadInput answers a decoding error: 413 for an oversized body, 400 with fields for invalid input. It
// returns false when err is neither (the caller handles it).
func BadInput(c *gin.Context, err error) bool {
	status, body, ok := InputError(err)
	if ok {
		WriteError(c, status, body)
	}
	return ok
}

// DependencyError answers an error that is not the caller's domain error: 503 + Retry-After when the database
// is unavailable (the client retries; nothing was lost), otherwise 500 (a bug, logged).
func DependencyError(c *gin.Context, log *slog.Logger, err error, unavailable func(error) bool) {
	if unavailable(err) {
		log.Warn("database unavailable", "path", c.FullPath(), "err", err)
		Unavailable(c, "database unavailable, retry later")
		return
	}
	log.Error("request failed", "path", c.FullPath(), "err", err)
	Abort(c, http.StatusInternalServerError, payment.CodeInternal, "internal error", nil)
}
