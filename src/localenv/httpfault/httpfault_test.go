package httpfault_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/txmesh/txmesh/src/localenv/httpfault"
	"github.com/txmesh/txmesh/src/localenv/pki"
)

// TestProxyAnswersInTheServersPlace: the proxy takes plain HTTP and forwards over mTLS with the client's
// certificate; without faults the server's answer passes unchanged (status, headers, body); each fault
// answers as a sidecar or the network would, handled by the server or not, and without its headers.
func TestProxyAnswersInTheServersPlace(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	server, _ := ca.Server("bank", "127.0.0.1")
	client, _ := ca.Client("store")
	serverCert, _ := server.TLS()
	clientCert, _ := client.TLS()
	var handled atomic.Int64
	var lastBody atomic.Value
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "store" {
			t.Errorf("the server saw no client certificate of the store: %+v", r.TLS.PeerCertificates)
		}
		body, _ := io.ReadAll(r.Body)
		lastBody.Store(string(body))
		handled.Add(1)
		w.Header().Set("Txmesh-Service", "bank")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()
	p, err := httpfault.StartProxy(srv.URL, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	post := func() (int, http.Header, string, error) {
		resp, err := http.Post(p.URL+"/v1/x", "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			return 0, nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b), nil
	}
	for _, tt := range []struct {
		name    string
		faults  httpfault.Faults
		status  int
		body    string
		handled bool
		marked  bool
		reset   bool
		garbled bool
	}{
		{name: "no fault", status: 201, body: `{"ok":true}`, handled: true, marked: true},
		{name: "deny", faults: httpfault.Faults{Deny: 1}, status: 403, body: "RBAC: access denied"},
		{name: "no route", faults: httpfault.Faults{NoRoute: 1}, status: 404},
		{name: "unavailable", faults: httpfault.Faults{Unavailable: 1}, status: 503,
			body: `{"error":{"code":"unavailable","message":"injected fault"}}`},
		{name: "deny after", faults: httpfault.Faults{DenyAfter: 1}, status: 403, body: "RBAC: access denied",
			handled: true},
		{name: "reset before", faults: httpfault.Faults{ResetBefore: 1}, reset: true},
		{name: "reset after", faults: httpfault.Faults{ResetAfter: 1}, reset: true, handled: true},
		{name: "corrupt", faults: httpfault.Faults{Corrupt: 1}, status: 201, body: `{"ok":true}`, handled: true,
			marked: true, garbled: true},
	} {
		p.Set(tt.faults)
		before := handled.Load()
		status, hdr, body, err := post()
		switch {
		case tt.reset && err == nil:
			t.Errorf("%s: answered %d, want a broken connection", tt.name, status)
		case !tt.reset && (err != nil || status != tt.status || body != tt.body ||
			(hdr.Get("Txmesh-Service") == "bank") != tt.marked):
			t.Errorf("%s: %d %v %q (%v), want %d %q marked %v", tt.name, status, hdr, body, err, tt.status, tt.body,
				tt.marked)
		}
		if got := handled.Load() > before; got != tt.handled {
			t.Errorf("%s: handled by the server %v, want %v", tt.name, got, tt.handled)
		}
		if tt.garbled && lastBody.Load() == `{"a":1}` {
			t.Errorf("%s: the body reached the server intact", tt.name)
		}
	}
	if st := p.Stats(); st.Requests != 8 || st.Foreign != 4 || st.Resets != 2 || st.Corrupted != 1 {
		t.Errorf("stats %+v", st)
	}
}
