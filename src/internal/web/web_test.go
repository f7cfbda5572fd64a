package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/web"
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

type answer struct {
	status int
	header http.Header
	body   string
}

func get(c *http.Client, url string) (answer, error) {
	resp, err := c.Get(url)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}, err
}

// plain is a client without TLS and without keep-alive: each request dials, so a closed listener shows.
var plain = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func mustGet(t *testing.T, c *http.Client, url string) answer {
	t.Helper()
	a, err := get(c, url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return a
}

func wantUnavailable(t *testing.T, a answer, what string) {
	t.Helper()
	var e payment.ErrorBody
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" ||
		json.Unmarshal([]byte(a.body), &e) != nil || e.Error.Code != payment.CodeUnavailable {
		t.Fatalf("%s: %d %v %s; want 503 unavailable with Retry-After", what, a.status, a.header, a.body)
	}
}

// TestAdminListenerServesProbesWithoutClientCertificate: the main listener refuses a client without a
// certificate; the management listener answers it on /healthz, /readyz and /metrics, and nothing else.
func TestAdminListenerServesProbesWithoutClientCertificate(t *testing.T) {
	a := newApp(t)
	s := serve(t, a.tlsEnv, a)

	if r, err := get(a.noCert, s.main+"/healthz"); err == nil {
		t.Fatalf("main listener answered a client without certificate: %d %s", r.status, r.body)
	}
	if r := mustGet(t, a.clientCert, s.main+"/healthz"); r.status != http.StatusOK {
		t.Fatalf("main /healthz with a client certificate: %d %s", r.status, r.body)
	}
	if r := mustGet(t, plain, s.admin+"/healthz"); r.status != http.StatusOK || r.body != `{"status":"ok"}` {
		t.Fatalf("admin /healthz: %d %s", r.status, r.body)
	}
	if r := mustGet(t, plain, s.admin+"/readyz"); r.status != http.StatusOK || r.body != `{"status":"ready"}` {
		t.Fatalf("admin /readyz: %d %s", r.status, r.body)
	}
	m := mustGet(t, plain, s.admin+"/metrics")
	if m.status != http.StatusOK || !strings.HasPrefix(m.header.Get("Content-Type"), "text/plain") ||
		!strings.Contains(m.body, "# TYPE go_goroutines gauge") ||
		!strings.Contains(m.body, `webtest_http_requests_total{code="200",method="GET",route="/readyz"}`) {
		t.Fatalf("admin /metrics: %d %v\n%s", m.status, m.header, m.body)
	}
	// Only the management paths: the API is not reachable without a certificate through the back door.
	for _, path := range []string{"/v1/secret", "/", "/healthz/", "/metrics/x"} {
		r := mustGet(t, plain, s.admin+path)
		var e payment.ErrorBody
		if r.status != http.StatusNotFound || json.Unmarshal([]byte(r.body), &e) != nil ||
			e.Error.Code != payment.CodeNotFound {
			t.Fatalf("admin %s: %d %s; want a JSON 404", path, r.status, r.body)
		}
	}
	if n := a.apiCalls.Load(); n != 0 {
		t.Fatalf("the API handler ran %d times through the management listener", n)
	}
	// Same handlers: the main listener's 405 for a wrong method.
	resp, err := plain.Post(s.admin+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("admin POST /readyz: %d, want 405", resp.StatusCode)
	}
	// The main listener still has the routes too.
	if r := mustGet(t, a.clientCert, s.main+"/readyz"); r.status != http.StatusOK {
		t.Fatalf("main /readyz: %d %s", r.status, r.body)
	}
}

// TestAdminReadinessFollowsTheCheck: a failing readiness check is a 503 on the management listener, liveness
// stays 200 without running the check, and readiness is 200 again once the check passes.
func TestAdminReadinessFollowsTheCheck(t *testing.T) {
	a := newApp(t)
	s := serve(t, a.tlsEnv, a)
	a.failCheck(errors.New("database down"))
	r := mustGet(t, plain, s.admin+"/readyz")
	wantUnavailable(t, r, "admin /readyz with a failing check")
	if !strings.Contains(r.body, "database down") {
		t.Fatalf("admin /readyz does not say why: %s", r.body)
	}
	before := a.checks.Load()
	if r := mustGet(t, plain, s.admin+"/healthz"); r.status != http.StatusOK {
		t.Fatalf("admin /healthz with a failing check: %d %s", r.status, r.body)
	}
	if a.checks.Load() != before {
		t.Fatal("liveness ran the readiness check")
	}
	a.checkErr.Store(nil)
	if r := mustGet(t, plain, s.admin+"/readyz"); r.status != http.StatusOK {
		t.Fatalf("admin /readyz after the check passes again: %d %s", r.status, r.body)
	}
}

// TestAdminReadinessFailsDuringDrain: once the context ends, the management listener answers /readyz with
// 503 (and /healthz with 200) through the drain delay, and closes only after that.
func TestAdminReadinessFailsDuringDrain(t *testing.T) {
	a := newApp(t)
	cfg := a.tlsEnv
	cfg.DrainDelay = 700 * time.Millisecond
	s := serve(t, cfg, a)
	if r := mustGet(t, plain, s.admin+"/readyz"); r.status != http.StatusOK {
		t.Fatalf("admin /readyz before shutdown: %d", r.status)
	}
	stopped := time.Now()
	s.stop()
	var draining, live int
	for {
		r, err := get(plain, s.admin+"/readyz")
		if err != nil {
			// The listener closed: a refused dial, or a connection the kernel had queued reset with it.
			var opErr *net.OpError
			if (!errors.As(err, &opErr) || opErr.Op != "dial") && !errors.Is(err, io.EOF) &&
				!errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("admin /readyz during shutdown: %v (want 503s, then a closed listener)", err)
			}
			break
		}
		switch r.status {
		case http.StatusServiceUnavailable:
			wantUnavailable(t, r, "admin /readyz while draining")
			draining++
			if h, err := get(plain, s.admin+"/healthz"); err == nil && h.status == http.StatusOK {
				live++
			}
		case http.StatusOK:
			if draining > 0 {
				t.Fatal("admin /readyz went back to 200 while draining")
			}
		default:
			t.Fatalf("admin /readyz during shutdown: %d %s", r.status, r.body)
		}
		if time.Since(stopped) > 10*time.Second {
			t.Fatal("the management listener did not close within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	closed := time.Since(stopped)
	if draining < 5 || live == 0 || closed < cfg.DrainDelay {
		t.Fatalf("%d draining 503s and %d live 200s before the listener closed after %v; want several, through "+
			"the %v drain delay", draining, live, closed, cfg.DrainDelay)
	}
	if err := <-s.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	s.done <- nil
	if c, err := net.Dial("tcp", strings.TrimPrefix(s.admin, "http://")); err == nil {
		c.Close()
		t.Fatal("the management listener still accepts connections after Serve returned")
	}
	t.Logf("%d readiness 503s, closed %v after the stop", draining, closed.Round(time.Millisecond))
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
