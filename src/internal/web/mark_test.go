package web_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/web"
)

// TestEveryAnswerIsMarked: whatever a service answers — a result, its own 4xx, a missing route, a wrong
// method, a panic, a shed request — names the service (payment.ServiceHeader), and every error answer is
// a problem document (application/problem+json, type/title/status) holding the error code: a client can
// tell it from what a proxy or sidecar answers in its place.
func TestEveryAnswerIsMarked(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := web.NewEngine("bank", reg, slog.New(slog.DiscardHandler))
	e.GET("/ok", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"ok": true}) })
	e.POST("/json", func(c *gin.Context) {
		if web.RequireJSON(c) {
			c.Status(http.StatusNoContent)
		}
	})
	e.GET("/conflict", func(c *gin.Context) {
		web.Abort(c, http.StatusConflict, payment.CodeIdempotencyConflict, "taken", nil)
	})
	e.GET("/panic", func(*gin.Context) { panic("boom") })
	block, release := make(chan struct{}), make(chan struct{})
	e.GET("/hold", func(c *gin.Context) { close(block); <-release; c.Status(http.StatusOK) })
	srv := httptest.NewServer(web.LimitInFlight(e, 1, "bank", reg))
	defer srv.Close()
	check := func(method, path string, status int, code string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("x"))
		req.Header.Set("Content-Type", "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != status || resp.Header.Get(payment.ServiceHeader) != "bank" {
			t.Errorf("%s %s: %d %s=%q, want %d marked bank", method, path, resp.StatusCode, payment.ServiceHeader,
				resp.Header.Get(payment.ServiceHeader), status)
		}
		if code == "" {
			return
		}
		var p payment.ErrorBody
		if !payment.IsProblem(resp.Header.Get("Content-Type")) || json.Unmarshal(body, &p) != nil ||
			p.Error.Code != code || p.Status != status || p.Type != payment.ProblemTypePrefix+code ||
			p.Title != http.StatusText(status) {
			t.Errorf("%s %s: %s %s, want a problem document with code %s", method, path,
				resp.Header.Get("Content-Type"), body, code)
		}
	}

	held := make(chan struct{})
	go func() {
		defer close(held)
		if resp, err := http.Get(srv.URL + "/hold"); err == nil {
			_ = resp.Body.Close()
		}
	}()
	<-block // the one slot is taken: the next request is shed
	check("GET", "/ok", http.StatusServiceUnavailable, payment.CodeOverloaded)
	close(release)
	<-held

	for _, tt := range []struct {
		method, path string
		status       int
		code         string // "" for a success
	}{
		{"GET", "/ok", http.StatusOK, ""},
		{"POST", "/json", http.StatusUnsupportedMediaType, payment.CodeUnsupportedMediaType},
		{"GET", "/conflict", http.StatusConflict, payment.CodeIdempotencyConflict},
		{"GET", "/nowhere", http.StatusNotFound, payment.CodeNotFound},
		{"DELETE", "/ok", http.StatusMethodNotAllowed, payment.CodeMethodNotAllowed},
		{"GET", "/panic", http.StatusInternalServerError, payment.CodeInternal},
	} {
		check(tt.method, tt.path, tt.status, tt.code)
	}
}
