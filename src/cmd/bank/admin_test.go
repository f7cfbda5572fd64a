package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/webtest"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// Tests of the management listener (ADMIN_ADDR) of the bank command outside a mesh: the main listener's API
// requires an allowed client certificate, kubelet probes and Prometheus present none.

// TestAdminListenerWithoutClientCertificate: a client without a certificate gets the Bank's 403 from the
// main listener's API, and gets /healthz, /readyz and the Prometheus metrics from ADMIN_ADDR, and nothing
// else there.
func TestAdminListenerWithoutClientCertificate(t *testing.T) {
	addr := webtest.FreeAddr(t)
	b := startBank(t, pgtest.NewDatabase(t), map[string]string{"ADMIN_ADDR": addr})
	admin := "http://" + addr
	trustOnly, err := bankclient.TLSConfig(b.ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	noCert := bankclient.HTTPClient(5*time.Second, 1, trustOnly)
	if r, err := webtest.Get(noCert, b.url+"/v1/accounts/ACC-000001"); err != nil || r.Status != http.StatusForbidden ||
		!strings.Contains(r.Body, `"code":"caller_not_allowed"`) {
		t.Fatalf("main listener's API, no client certificate: %v %d %s; want 403 caller_not_allowed", err, r.Status,
			r.Body)
	}
	if r, err := b.do(t, "GET", "/readyz", "", nil); err != nil || r.status != http.StatusOK {
		t.Fatalf("main /readyz with a client certificate: %v %d", err, r.status)
	}

	if r := webtest.MustGet(t, admin+"/healthz"); r.Status != http.StatusOK || r.Body != `{"status":"ok"}` {
		t.Fatalf("admin /healthz: %d %s", r.Status, r.Body)
	}
	if r := webtest.MustGet(t, admin+"/readyz"); r.Status != http.StatusOK || r.Body != `{"status":"ready"}` {
		t.Fatalf("admin /readyz: %d %s", r.Status, r.Body)
	}
	m := webtest.MustGet(t, admin+"/metrics")
	if m.Status != http.StatusOK || !strings.HasPrefix(m.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("admin /metrics: %d %v", m.Status, m.Header)
	}
	for _, want := range []string{"# TYPE bank_transactions_total counter",
		`bank_transactions_total{reason="",status="approved"} 0`, `go_sql_max_open_connections{db_name="bank"} 20`,
		`bank_http_requests_total{code="200",method="GET",route="/readyz"}`, "go_goroutines"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("admin /metrics lacks %s", want)
		}
	}

	// The API is not reachable there: no way around the caller check.
	for _, path := range []string{"/v1/accounts/ACC-000001", "/openapi.yaml"} {
		if r := webtest.MustGet(t, admin+path); r.Status != http.StatusNotFound {
			t.Fatalf("admin %s: %d %s; want 404", path, r.Status, r.Body)
		}
	}
	before := b.snapshot(t)
	body, _ := json.Marshal(tx("ACC-000001", 10))
	resp, err := webtest.Client.Post(admin+"/v1/transactions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || b.snapshot(t) != before {
		t.Fatalf("admin POST /v1/transactions: %d, database %+v → %+v; want 404 and nothing changed",
			resp.StatusCode, before, b.snapshot(t))
	}
}

// TestAdminReadinessDuringDatabaseOutage stops PostgreSQL under a Bank with ADMIN_ADDR: readiness there turns
// 503, liveness stays 200, and readiness is 200 again once PostgreSQL is back.
func TestAdminReadinessDuringDatabaseOutage(t *testing.T) {
	ctx := context.Background()
	srv, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.CreateDatabase(ctx, "bank"); err != nil {
		t.Fatal(err)
	}
	addr := webtest.FreeAddr(t)
	startBank(t, srv.DSN("bank")+"&connect_timeout=1", map[string]string{"ADMIN_ADDR": addr})
	admin := "http://" + addr
	if r := webtest.MustGet(t, admin+"/readyz"); r.Status != http.StatusOK {
		t.Fatalf("admin /readyz before the outage: %d %s", r.Status, r.Body)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	webtest.WantUnavailable(t, webtest.MustGet(t, admin+"/readyz"), "admin /readyz while the database is down")
	if r := webtest.MustGet(t, admin+"/healthz"); r.Status != http.StatusOK {
		t.Fatalf("admin /healthz must not depend on the database: %d %s", r.Status, r.Body)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := webtest.MustGet(t, admin+"/readyz")
		if r.Status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin /readyz after the database came back: %d %s", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAdminReadinessFailsBeforeTheListenerCloses runs the real binary with ADMIN_ADDR and sends SIGTERM: the
// management listener answers /readyz with 503 through the drain delay (liveness still 200), closes only
// then, and the process exits cleanly. The start-up log names the address.
func TestAdminReadinessFailsBeforeTheListenerCloses(t *testing.T) {
	bin := buildBank(t)
	env, _ := tlsEnv(t)
	env["DATABASE_URL"] = pgtest.NewDatabase(t)
	env["HTTP_ADDR"] = "127.0.0.1:0"
	env["ADMIN_ADDR"] = "127.0.0.1:0"
	env["SHUTDOWN_DRAIN_DELAY"] = "1s"
	env["SHUTDOWN_TIMEOUT"] = "10s"
	cmd := exec.Command(bin, "serve")
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	type logLine struct{ Msg, Addr, AdminAddr string }
	lines := make(chan logLine, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l struct {
				Msg, Addr string
				AdminAddr string `json:"admin_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				select { // the start-up lines fit; later ones may go
				case lines <- logLine{l.Msg, l.Addr, l.AdminAddr}:
				default:
				}
			}
		}
		close(lines)
	}()
	var admin, configured string
	for admin == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("bank exited before the management listener listened")
			}
			switch l.Msg {
			case "starting bank":
				configured = l.AdminAddr
			case "admin listening":
				admin = l.Addr
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no admin listening log line after 30s")
		}
	}
	if configured != "127.0.0.1:0" {
		t.Fatalf("the start-up log has admin_addr %q, want the configured 127.0.0.1:0", configured)
	}
	if r := webtest.MustGet(t, "http://"+admin+"/readyz"); r.Status != http.StatusOK {
		t.Fatalf("admin /readyz before SIGTERM: %d %s", r.Status, r.Body)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d := webtest.WatchDrain(t, "http://"+admin, 20*time.Second)
	if d.NotReady < 3 || d.Live == 0 || d.Closed < time.Second {
		t.Fatalf("%+v; want readiness 503s and liveness 200s for the 1s drain delay before the listener closed", d)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("bank exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("bank did not exit after SIGTERM")
	}
	t.Logf("%d readiness 503s, listener closed %v after SIGTERM", d.NotReady, d.Closed.Round(time.Millisecond))
}

// TestAdminAddrErrors: an ADMIN_ADDR equal to HTTP_ADDR or not an address is rejected at start, and a taken
// port fails the start; each error names ADMIN_ADDR.
func TestAdminAddrErrors(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db"}
	for _, tt := range []struct{ name, http, admin, want string }{
		{"equal to HTTP_ADDR", ":8443", ":8443", `ADMIN_ADDR ":8443" must differ from HTTP_ADDR`},
		{"same port, all addresses", "127.0.0.1:8443", ":8443", `ADMIN_ADDR ":8443" and HTTP_ADDR`},
		{"no port", ":8443", "9090", `ADMIN_ADDR "9090" must be [host]:port`},
		{"bad port", ":8443", ":ninety", `ADMIN_ADDR ":ninety" must be [host]:port`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{"HTTP_ADDR": tt.http, "ADMIN_ADDR": tt.admin}
			for k, v := range base {
				vars[k] = v
			}
			err := run(context.Background(), nil, envOf(vars), io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
		})
	}
	t.Run("port taken", func(t *testing.T) {
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		env, _ := tlsEnv(t)
		env["DATABASE_URL"] = pgtest.NewDatabase(t)
		env["HTTP_ADDR"] = "127.0.0.1:0"
		env["ADMIN_ADDR"] = taken.Addr().String()
		done := make(chan error, 1)
		go func() { done <- run(context.Background(), nil, envOf(env), io.Discard, nil) }()
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("bank started with its ADMIN_ADDR taken")
		}
		if err == nil || !strings.Contains(err.Error(), "listen ADMIN_ADDR "+taken.Addr().String()) ||
			!strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("got %v, want a listen error naming ADMIN_ADDR %s", err, taken.Addr())
		}
	})
}
