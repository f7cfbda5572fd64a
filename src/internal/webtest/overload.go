package webtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/web"
)

// Saturated starts a server at its in-flight bound: web.LimitInFlight with HTTP_MAX_IN_FLIGHT=1 around a
// handler that holds the one slot until the test ends, so every request but the management paths is shed.
// It returns the server's URL (for a service's conformance test: the answer is the limiter's, whatever the
// route).
func Saturated(t testing.TB, ns string) string {
	t.Helper()
	entered, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(web.LimitInFlight(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		w.WriteHeader(http.StatusNoContent)
	}), 1, ns, prometheus.NewRegistry()))
	t.Cleanup(srv.Close) // runs after the release below (cleanups run last-registered first)
	t.Cleanup(func() { close(release) })
	go func() {
		if resp, err := http.Get(srv.URL + "/hold"); err == nil {
			_ = resp.Body.Close()
		}
	}()
	<-entered
	return srv.URL
}

// IsOverloaded reports whether a is the services' answer to a request shed by web.LimitInFlight: 503, a
// Retry-After of whole seconds (≥ 1), the service's marks (payment.ServiceHeader) and a problem document
// with code overloaded and a message.
func IsOverloaded(a Answer) bool {
	var e payment.ErrorBody
	secs, err := strconv.Atoi(a.Header.Get("Retry-After"))
	return a.Status == http.StatusServiceUnavailable && err == nil && secs >= 1 &&
		a.Header.Get(payment.ServiceHeader) != "" && payment.IsProblem(a.Header.Get("Content-Type")) &&
		json.Unmarshal([]byte(a.Body), &e) == nil && e.Error.Code == payment.CodeOverloaded &&
		e.Error.Message != "" && e.Status == http.StatusServiceUnavailable
}

// WantOverloaded fails the test unless a is a shed request's answer (IsOverloaded).
func WantOverloaded(t testing.TB, a Answer, what string) {
	t.Helper()
	if !IsOverloaded(a) {
		t.Fatalf("%s: %d %v %s; want 503 overloaded with Retry-After", what, a.Status, a.Header, a.Body)
	}
}

// Metric reads the value of an unlabelled metric from a Prometheus text exposition at url (a service's
// /metrics) with c.
func Metric(c *http.Client, url, name string) (float64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("GET %s: no metric %s", url, name)
}
