package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/web"
	"github.com/txmesh/txmesh/src/internal/webtest"
	"github.com/txmesh/txmesh/src/localenv/pki"
)

// Tests of the serving plumbing on real listeners: web.Serve with mTLS on the main listener and the
// management listener (ADMIN_ADDR) next to it.

func TestServerConfigAdminAddr(t *testing.T) {
	tests := []struct {
		name, http, admin string
		want              string // "" = valid
	}{
		{"off by default", ":8080", "", ""},
		{"own port", ":8080", ":9090", ""},
		{"own host and port", "127.0.0.1:8443", "0.0.0.0:9090", ""},
		{"same port, other host", "10.0.0.1:8080", "127.0.0.1:8080", ""},
		{"kernel-chosen ports (tests)", "127.0.0.1:0", "127.0.0.1:0", ""},
		{"equal to HTTP_ADDR", ":8080", ":8080", "must differ from HTTP_ADDR"},
		{"same socket spelled otherwise", ":8080", "0.0.0.0:8080", "same port 8080"},
		{"same port under a wildcard HTTP_ADDR", "[::]:8080", "127.0.0.1:8080", "same port 8080"},
		{"same host and port", "127.0.0.1:8080", "127.0.0.1:8080", "must differ from HTTP_ADDR"},
		{"no port", ":8080", "9090", "must be [host]:port"},
		{"named port", ":8080", ":http", "is not a number"},
		{"port out of range", ":8080", ":65536", "is not a number"},
		{"garbage", ":8080", "a:b:c", "must be [host]:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := web.ServerConfig{Addr: tt.http, AdminAddr: tt.admin, ShutdownTimeout: time.Second}
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("HTTP_ADDR=%q ADMIN_ADDR=%q: %v", tt.http, tt.admin, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "ADMIN_ADDR") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("HTTP_ADDR=%q ADMIN_ADDR=%q: got %v, want an error naming ADMIN_ADDR with %q", tt.http,
					tt.admin, err, tt.want)
			}
		})
	}
}

// syncBuffer collects the JSON log lines of a running server.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// addr returns the addr attribute of the first log line with message msg.
func (s *syncBuffer) addr(msg string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range strings.Split(s.b.String(), "\n") {
		var e struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == msg {
			return e.Addr
		}
	}
	return ""
}

// app is a service-like handler: the shared engine and health routes, one API route that counts its calls,
// and a readiness check the test switches.
type app struct {
	handler    http.Handler
	health     *web.Health
	checkErr   atomic.Pointer[error]
	checks     atomic.Int64
	apiCalls   atomic.Int64
	clientCert *http.Client // trusts the server and presents a client certificate
	noCert     *http.Client // trusts the server, presents no certificate
	tlsEnv     web.ServerConfig
}

func newApp(t *testing.T) *app {
	t.Helper()
	a := &app{}
	a.health = web.NewHealth(func(context.Context) error {
		a.checks.Add(1)
		if err := a.checkErr.Load(); err != nil {
			return *err
		}
		return nil
	})
	log := slog.New(slog.DiscardHandler)
	e := web.NewEngine("webtest", prometheus.NewRegistry(), log)
	web.HealthRoutes(e, a.health, log)
	e.GET("/v1/secret", func(c *gin.Context) { a.apiCalls.Add(1); c.String(http.StatusOK, "secret") })
	a.handler = e

	files, err := pki.Write(t.TempDir(), "client", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	withCert, err := bankclient.TLSConfig(files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	withoutCert, err := bankclient.TLSConfig(files.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	a.clientCert = bankclient.HTTPClient(5*time.Second, 4, withCert)
	a.noCert = bankclient.HTTPClient(5*time.Second, 4, withoutCert)
	a.tlsEnv = web.ServerConfig{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", TLSCertFile: files.ServerCert,
		TLSKeyFile: files.ServerKey, TLSClientCAFile: files.CA, ShutdownTimeout: 5 * time.Second}
	return a
}

func (a *app) failCheck(err error) { a.checkErr.Store(&err) }

// running is a web.Serve in progress.
type running struct {
	main, admin string // https://…, http://…
	stop        context.CancelFunc
	done        chan error
}

func serve(t *testing.T, cfg web.ServerConfig, a *app) *running {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{stop: cancel, done: make(chan error, 1)}
	ready := make(chan net.Addr, 1)
	go func() { r.done <- web.Serve(ctx, cfg, a.handler, a.health, log, ready) }()
	select {
	case addr := <-ready:
		r.main = "https://" + addr.String()
	case err := <-r.done:
		cancel()
		t.Fatalf("Serve: %v", err)
	}
	if cfg.AdminAddr != "" {
		r.admin = "http://" + logs.addr("admin listening")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Serve returned %v", err)
		}
		r.done <- nil
	})
	return r
}

// mustGet is webtest.Get with c, failing the test on a transport error.
func mustGet(t *testing.T, c *http.Client, url string) webtest.Answer {
	t.Helper()
	a, err := webtest.Get(c, url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return a
}

// TestAdminListenerServesProbesWithoutClientCertificate: the main listener refuses a client without a
// certificate; the management listener answers it on /healthz, /readyz and /metrics, and nothing else.
func TestAdminListenerServesProbesWithoutClientCertificate(t *testing.T) {
	a := newApp(t)
	s := serve(t, a.tlsEnv, a)

	if r, err := webtest.Get(a.noCert, s.main+"/healthz"); err == nil {
		t.Fatalf("main listener answered a client without certificate: %d %s", r.Status, r.Body)
	}
	if r := mustGet(t, a.clientCert, s.main+"/healthz"); r.Status != http.StatusOK {
		t.Fatalf("main /healthz with a client certificate: %d %s", r.Status, r.Body)
	}
	if r := webtest.MustGet(t, s.admin+"/healthz"); r.Status != http.StatusOK || r.Body != `{"status":"ok"}` {
		t.Fatalf("admin /healthz: %d %s", r.Status, r.Body)
	}
	if r := webtest.MustGet(t, s.admin+"/readyz"); r.Status != http.StatusOK || r.Body != `{"status":"ready"}` {
		t.Fatalf("admin /readyz: %d %s", r.Status, r.Body)
	}
	m := webtest.MustGet(t, s.admin+"/metrics")
	if m.Status != http.StatusOK || !strings.HasPrefix(m.Header.Get("Content-Type"), "text/plain") ||
		!strings.Contains(m.Body, "# TYPE go_goroutines gauge") ||
		!strings.Contains(m.Body, `webtest_http_requests_total{code="200",method="GET",route="/readyz"}`) {
		t.Fatalf("admin /metrics: %d %v\n%s", m.Status, m.Header, m.Body)
	}
	// Only the management paths: the API is not reachable without a certificate through the back door.
	for _, path := range []string{"/v1/secret", "/", "/healthz/", "/metrics/x"} {
		r := webtest.MustGet(t, s.admin+path)
		var e payment.ErrorBody
		if r.Status != http.StatusNotFound || json.Unmarshal([]byte(r.Body), &e) != nil ||
			e.Error.Code != payment.CodeNotFound {
			t.Fatalf("admin %s: %d %s; want a JSON 404", path, r.Status, r.Body)
		}
	}
	if n := a.apiCalls.Load(); n != 0 {
		t.Fatalf("the API handler ran %d times through the management listener", n)
	}
	// Same handlers: the main listener's 405 for a wrong method.
	resp, err := webtest.Client.Post(s.admin+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("admin POST /readyz: %d, want 405", resp.StatusCode)
	}
	// The main listener still has the routes too.
	if r := mustGet(t, a.clientCert, s.main+"/readyz"); r.Status != http.StatusOK {
		t.Fatalf("main /readyz: %d %s", r.Status, r.Body)
	}
}

// TestAdminReadinessFollowsTheCheck: a failing readiness check is a 503 on the management listener that
// discloses nothing of the check's error (host names, users, the driver's words: the log has them), liveness
// stays 200 without running the check, and readiness is 200 again once the check passes.
func TestAdminReadinessFollowsTheCheck(t *testing.T) {
	a := newApp(t)
	s := serve(t, a.tlsEnv, a)
	a.failCheck(errors.New("database: failed to connect to `user=app database=store`: " +
		"store-db-rw.txmesh.svc:5432 (10.96.4.7): dial error: connect: connection refused"))
	r := webtest.MustGet(t, s.admin+"/readyz")
	webtest.WantUnavailable(t, r, "admin /readyz with a failing check")
	for _, secret := range []string{"store-db-rw", "10.96.4.7", "user=app", "dial error", "refused"} {
		if strings.Contains(r.Body, secret) {
			t.Fatalf("admin /readyz discloses %q: %s", secret, r.Body)
		}
	}
	before := a.checks.Load()
	if r := webtest.MustGet(t, s.admin+"/healthz"); r.Status != http.StatusOK {
		t.Fatalf("admin /healthz with a failing check: %d %s", r.Status, r.Body)
	}
	if a.checks.Load() != before {
		t.Fatal("liveness ran the readiness check")
	}
	a.checkErr.Store(nil)
	if r := webtest.MustGet(t, s.admin+"/readyz"); r.Status != http.StatusOK {
		t.Fatalf("admin /readyz after the check passes again: %d %s", r.Status, r.Body)
	}
}

// TestAdminReadinessFailsDuringDrain: once the context ends, the management listener answers /readyz with
// 503 (and /healthz with 200) through the drain delay, and closes only after that.
func TestAdminReadinessFailsDuringDrain(t *testing.T) {
	a := newApp(t)
	cfg := a.tlsEnv
	cfg.DrainDelay = 700 * time.Millisecond
	s := serve(t, cfg, a)
	if r := webtest.MustGet(t, s.admin+"/readyz"); r.Status != http.StatusOK {
		t.Fatalf("admin /readyz before shutdown: %d", r.Status)
	}
	s.stop()
	d := webtest.WatchDrain(t, s.admin, 10*time.Second)
	if d.NotReady < 3 || d.Live == 0 || d.Closed < cfg.DrainDelay {
		t.Fatalf("%+v before the listener closed; want several readiness 503s and live 200s, through the %v "+
			"drain delay", d, cfg.DrainDelay)
	}
	if err := <-s.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	s.done <- nil
	webtest.Refuses(t, strings.TrimPrefix(s.admin, "http://"))
	t.Logf("%d readiness 503s, closed %v after the stop", d.NotReady, d.Closed.Round(time.Millisecond))
}

// TestAdminAddrInUse: a taken management port is a start-up error naming ADMIN_ADDR, and the main listener
// it had opened is released.
func TestAdminAddrInUse(t *testing.T) {
	a := newApp(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mainAddr := free.Addr().String()
	free.Close()
	cfg := a.tlsEnv
	cfg.Addr, cfg.AdminAddr = mainAddr, taken.Addr().String()
	done := make(chan error, 1)
	go func() {
		done <- web.Serve(context.Background(), cfg, a.handler, a.health, slog.New(slog.DiscardHandler), nil)
	}()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve started on a taken ADMIN_ADDR")
	}
	if err == nil || !strings.Contains(err.Error(), "ADMIN_ADDR "+cfg.AdminAddr) ||
		!strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("got %v, want an error naming ADMIN_ADDR %s", err, cfg.AdminAddr)
	}
	again, err := net.Listen("tcp", mainAddr)
	if err != nil {
		t.Fatalf("HTTP_ADDR %s still held after the failed start: %v", mainAddr, err)
	}
	again.Close()
}

// TestNoAdminListenerByDefault: without ADMIN_ADDR only the main listener exists.
func TestNoAdminListenerByDefault(t *testing.T) {
	a := newApp(t)
	cfg := a.tlsEnv
	cfg.AdminAddr = ""
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- web.Serve(ctx, cfg, a.handler, a.health, slog.New(slog.NewJSONHandler(logs, nil)), ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if logs.addr("listening") == "" || logs.addr("admin listening") != "" {
		t.Fatalf("want the main listener only:\n%s", logs.b.String())
	}
}
