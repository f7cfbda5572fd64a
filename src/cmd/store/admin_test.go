package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/webtest"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
	"github.com/txmesh/txmesh/src/localenv/pki"
)

// Tests of the management listener (ADMIN_ADDR) of the store command outside a mesh: the main listener
// requires a client certificate, kubelet probes and Prometheus present none.

// adminVars is a Store serving mTLS on HTTP_ADDR with a management listener on admin, relay pointed at a
// Bank that is not there (the Store stays ready without it) and the generator off.
func adminVars(t *testing.T, dsn, admin string) (map[string]string, pki.Files) {
	t.Helper()
	files, err := pki.Write(t.TempDir(), "client", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://127.0.0.1:1", "GENERATOR_INTERVAL": "0",
		"TLS_CERT_FILE": files.ServerCert, "TLS_KEY_FILE": files.ServerKey, "TLS_CLIENT_CA_FILE": files.CA,
		"ADMIN_ADDR": admin}, files
}

// TestAdminListenerOutsideTheMesh: a client without a certificate is refused by the main listener and gets
// /healthz, /readyz and the metrics from ADMIN_ADDR; with PostgreSQL stopped readiness there is 503 (liveness
// 200), and 200 again once it is back.
func TestAdminListenerOutsideTheMesh(t *testing.T) {
	ctx := context.Background()
	srv, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.CreateDatabase(ctx, "store"); err != nil {
		t.Fatal(err)
	}
	addr := webtest.FreeAddr(t)
	admin := "http://" + addr
	vars, files := adminVars(t, srv.DSN("store")+"&connect_timeout=1", addr)
	s := startService(t, vars)
	mainURL := strings.Replace(s.url, "http://", "https://", 1)

	trustOnly, err := bankclient.TLSConfig(files.CA, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := webtest.Get(bankclient.HTTPClient(5*time.Second, 1, trustOnly), mainURL+"/readyz"); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("main listener, no client certificate: %v %d %s; want the TLS handshake refused", err, r.Status,
			r.Body)
	}
	withCert, err := bankclient.TLSConfig(files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := webtest.Get(bankclient.HTTPClient(5*time.Second, 1, withCert), mainURL+"/readyz"); err != nil ||
		r.Status != http.StatusOK {
		t.Fatalf("main /readyz with a client certificate: %v %d", err, r.Status)
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
	for _, want := range []string{"# TYPE store_outbox_backlog gauge", "store_breaker_state 0",
		`store_purchases_created_total{source="api"} 0`, `go_sql_max_open_connections{db_name="store"}`,
		`store_http_requests_total{code="200",method="GET",route="/readyz"}`} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("admin /metrics lacks %s", want)
		}
	}
	if r := webtest.MustGet(t, admin+"/v1/outbox"); r.Status != http.StatusNotFound {
		t.Fatalf("admin /v1/outbox: %d %s; want 404 (the API needs the main listener)", r.Status, r.Body)
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
			t.Fatalf("admin /readyz after the database came back: %d %s\n%s", r.Status, r.Body, s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAdminReadinessFailsBeforeTheListenerCloses: at shutdown the management listener answers /readyz with
// 503 through the drain delay (liveness still 200), closes only then, and the Store stops cleanly.
func TestAdminReadinessFailsBeforeTheListenerCloses(t *testing.T) {
	addr := webtest.FreeAddr(t)
	vars, _ := adminVars(t, pgtest.NewDatabase(t), addr)
	vars["SHUTDOWN_DRAIN_DELAY"] = "1s"
	s := startService(t, vars)
	if !strings.Contains(s.logs.String(), `"admin_addr":"`+addr+`"`) ||
		!strings.Contains(s.logs.String(), `"msg":"admin listening","addr":"`+addr+`"`) {
		t.Fatalf("the start-up log does not name ADMIN_ADDR %s:\n%s", addr, s.logs)
	}
	if r := webtest.MustGet(t, "http://"+addr+"/readyz"); r.Status != http.StatusOK {
		t.Fatalf("admin /readyz before shutdown: %d %s", r.Status, r.Body)
	}
	s.stop()
	d := webtest.WatchDrain(t, "http://"+addr, 20*time.Second)
	if d.NotReady < 3 || d.Live == 0 || d.Closed < time.Second {
		t.Fatalf("%+v; want readiness 503s and liveness 200s for the 1s drain delay before the listener closed", d)
	}
	if err := s.shutdown(t); err != nil {
		t.Fatalf("shutdown: %v\n%s", err, s.logs)
	}
	t.Logf("%d readiness 503s, listener closed %v after the stop", d.NotReady, d.Closed.Round(time.Millisecond))
}
