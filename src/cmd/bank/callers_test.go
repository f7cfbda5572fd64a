package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/caller"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/localenv/pki"
)

// Integration tests of the Bank knowing its caller: the real program on a real PostgreSQL, real HTTPS with
// client certificates of a pki CA (the Bank's own mTLS), and, for the mesh, a stand-in for the Bank's Istio
// sidecar between real sockets.

// clientFor issues a client certificate from the Bank's CA (with the URI SAN pki.ID(name), or only the
// subject CN=name) and returns a client presenting it, and its identity.
func clientFor(t *testing.T, b bankUnderTest, name string, withID bool) (*http.Client, string) {
	t.Helper()
	ca, err := pki.LoadCA(b.certs.CA, b.certs.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	issue, id := ca.Client, pki.ID(name)
	if !withID {
		issue, id = ca.ClientWithoutID, "CN="+name
	}
	pair, err := issue(name)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := pair.Write(cert, key); err != nil {
		t.Fatal(err)
	}
	cfg, err := bankclient.TLSConfig(b.certs.CA, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return bankclient.HTTPClient(10*time.Second, 4, cfg), id
}

// as is b with another client (another caller).
func (b bankUnderTest) as(c *http.Client) bankUnderTest { b.client = c; return b }

// callerOf is the caller recorded with transaction id ("-" when there is no such row).
func (b bankUnderTest) callerOf(t *testing.T, id uuid.UUID) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	who := "-"
	if err := conn.QueryRow(ctx, `SELECT caller FROM transactions WHERE id = $1`, id).Scan(&who); err != nil &&
		!errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return who
}

// refused sends every kind of API request as b's client (with header, e.g. a forged XFCC) and wants each
// answered the Bank's own (marked) 403 caller_not_allowed.
func (b bankUnderTest) refused(t *testing.T, who string, header ...string) {
	t.Helper()
	fresh, _ := json.Marshal(tx("ACC-000001", 1))
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/transactions", string(fresh)},
		{"POST", "/v1/transactions/batch", `{"transactions":[` + string(fresh) + `]}`},
		{"GET", "/v1/transactions/" + uuid.NewString(), ""},
		{"GET", "/v1/accounts/ACC-000001", ""},
	} {
		req, err := http.NewRequest(r.method, b.url+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		resp, err := b.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %s %s: %v", who, r.method, r.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e payment.ErrorBody
		if resp.StatusCode != http.StatusForbidden || json.Unmarshal(body, &e) != nil ||
			e.Error.Code != payment.CodeCallerNotAllowed || resp.Header.Get(payment.ServiceHeader) != payment.ServiceBank ||
			!payment.IsProblem(resp.Header.Get("Content-Type")) {
			t.Errorf("%s: %s %s: %d %v %s; want the Bank's 403 caller_not_allowed", who, r.method, r.path,
				resp.StatusCode, resp.Header, body)
		}
	}
}

// TestCallersOfTheBanksOwnMTLS: with TLS_CLIENT_CA_FILE, the caller is the verified client certificate's
// SPIFFE ID (else its subject). An allowed caller is served and recorded with each transaction; a
// certificate of the same CA not on ALLOWED_CALLERS, and no certificate at all, get the Bank's 403 on every
// API route, change nothing and are counted; another allowed caller cannot replay or read the first
// caller's transaction (403 caller_not_allowed for the replay, the lookup and the batch's item, none telling
// anything of it), changes nothing and is counted.
func TestCallersOfTheBanksOwnMTLS(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	env, _, files := certEnv(t)
	b := startBank(t, dsn, map[string]string{"ALLOWED_CALLERS": files.ClientID + ";CN=legacy\n" + pki.ID("peer"),
		"TLS_CERT_FILE": env["TLS_CERT_FILE"], "TLS_KEY_FILE": env["TLS_KEY_FILE"],
		"TLS_CLIENT_CA_FILE": env["TLS_CLIENT_CA_FILE"]})
	b.certs, b.ca = files, files.CA
	store, storeID := clientFor(t, b, "store", true)
	legacy, legacyID := clientFor(t, b, "legacy", false)
	peer, _ := clientFor(t, b, "peer", true)
	intruder, _ := clientFor(t, b, "intruder", true)
	trustOnly, err := bankclient.TLSConfig(b.ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	noCert := bankclient.HTTPClient(5*time.Second, 1, trustOnly)

	mine, theirs := tx("ACC-000001", 100), tx("ACC-000002", 200)
	for _, c := range []struct {
		client *http.Client
		tx     payment.Transaction
		id     string
	}{{store, mine, storeID}, {legacy, theirs, legacyID}} {
		if r, err := b.as(c.client).post(t, c.tx); err != nil || r.status != http.StatusCreated {
			t.Fatalf("%s: %v %d %s", c.id, err, r.status, r.body)
		}
		if got := b.callerOf(t, c.tx.ID); got != c.id {
			t.Fatalf("transaction recorded for %q, want %q", got, c.id)
		}
	}
	if storeID != "spiffe://txmesh.local/store" || legacyID != "CN=legacy" {
		t.Fatalf("identities %q, %q", storeID, legacyID)
	}

	before := b.snapshot(t)
	b.as(intruder).refused(t, "a certificate not on ALLOWED_CALLERS")
	b.as(noCert).refused(t, "no client certificate")
	// Another allowed caller, on the first one's id: its replay (same fields or not), its lookup and its
	// batch's item are refused alike, disclosing nothing of the transaction.
	changed := mine
	changed.Amount++
	var answers []string
	for _, replay := range []payment.Transaction{mine, changed} {
		r, err := b.as(peer).post(t, replay)
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, fmt.Sprintf("%d %s", r.status, r.body))
	}
	r, err := b.as(peer).do(t, "GET", "/v1/transactions/"+mine.ID.String(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	answers = append(answers, fmt.Sprintf("%d %s", r.status, r.body))
	const refusal = `403 {"type":"urn:txmesh:error:caller_not_allowed","title":"Forbidden","status":403,` +
		`"error":{"code":"caller_not_allowed","message":"this transaction id belongs to another caller"}}`
	for i, a := range answers {
		if a != refusal {
			t.Errorf("another caller's %s: %s; want %s", []string{"replay", "changed replay", "lookup"}[i], a, refusal)
		}
	}
	body, _ := json.Marshal(map[string]any{"transactions": []payment.Transaction{mine}})
	if r, err := b.as(peer).do(t, "POST", "/v1/transactions/batch", "application/json", body); err != nil ||
		r.status != http.StatusOK || !strings.Contains(string(r.body), `{"status":403,"body":{"type":"urn:txmesh:error:caller_not_allowed"`) {
		t.Errorf("another caller's batch: %v %d %s; want its item 403 caller_not_allowed", err, r.status, r.body)
	}
	if after := b.snapshot(t); after != before {
		t.Fatalf("refused requests changed the database: %+v → %+v", before, after)
	}
	if got := b.callerOf(t, mine.ID); got != storeID {
		t.Fatalf("transaction now recorded for %q", got)
	}
	// The owner still replays and reads it.
	if r, err := b.as(store).post(t, mine); err != nil || r.status != http.StatusOK {
		t.Errorf("the owner's replay: %v %d %s", err, r.status, r.body)
	}
	if r, err := b.as(store).do(t, "GET", "/v1/transactions/"+mine.ID.String(), "", nil); err != nil ||
		r.status != http.StatusOK {
		t.Errorf("the owner's lookup: %v %d %s", err, r.status, r.body)
	}
	for sample, want := range map[string]float64{`bank_callers_refused_total{reason="not_allowed"}`: 4,
		`bank_callers_refused_total{reason="no_identity"}`: 4, `bank_callers_refused_total{reason="untrusted_peer"}`: 0,
		`bank_callers_refused_total{reason="not_owner"}`: 4} {
		if got := b.as(store).metric(t, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
}

// sidecar stands in for the Bank's Istio sidecar on the inbound path, as Istio configures it: it terminates
// mTLS (a client certificate required: PeerAuthentication STRICT), appends the element of the certificate
// it verified to the X-Forwarded-Client-Cert the caller sent (Istio's default for sidecar inbound:
// APPEND_FORWARD with Subject, URI and DNS; Envoy's format), and forwards to the app over plain HTTP from
// 127.0.0.6, the source address Istio binds its inbound clusters to (so that iptables does not send the
// connection back to Envoy).
func sidecar(t *testing.T, app string, files pki.Files) string {
	t.Helper()
	target, err := url.Parse(app)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.6")}, Timeout: 5 * time.Second}
	proxy := &httputil.ReverseProxy{
		Transport: &http.Transport{DialContext: dialer.DialContext},
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			leaf := pr.In.TLS.PeerCertificates[0]
			elem := fmt.Sprintf(`By=spiffe://cluster.local/ns/txmesh/sa/bank;Hash=%x;Subject="%s"`,
				sha256.Sum256(leaf.Raw), strings.ReplaceAll(leaf.Subject.String(), `"`, `\"`))
			for _, u := range leaf.URIs {
				elem += ";URI=" + u.String()
			}
			for _, d := range leaf.DNSNames {
				elem += ";DNS=" + d
			}
			pr.Out.Header.Set(caller.HeaderXFCC, strings.Join(append(pr.In.Header.Values(caller.HeaderXFCC), elem), ","))
		},
	}
	cert, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(files.CA, files.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCallersBehindTheSidecar: a Bank serving plain HTTP in the mesh's shape (CALLER_IDENTITY=xfcc) serves
// a caller whose allowed certificate the sidecar verified, and records its SPIFFE ID. It refuses, changing
// nothing, a forged X-Forwarded-Client-Cert naming the allowed caller from a client that reached the app's
// port past the sidecar, and the same forgery sent through the sidecar by another certificate's holder (the
// element the sidecar appended, the last one, is the only one read).
func TestCallersBehindTheSidecar(t *testing.T) {
	_, _, files := certEnv(t)
	b := startBank(t, pgtest.NewDatabase(t), map[string]string{"TLS_CERT_FILE": "", "TLS_KEY_FILE": "",
		"TLS_CLIENT_CA_FILE": "", "CALLER_IDENTITY": "xfcc", "ALLOWED_CALLERS": files.ClientID})
	b.certs, b.ca = files, files.CA
	direct := b.as(&http.Client{Timeout: 10 * time.Second})
	meshed := b
	meshed.url = sidecar(t, b.url, files)
	store, storeID := clientFor(t, b, "store", true)
	intruder, _ := clientFor(t, b, "intruder", true)

	mine := tx("ACC-000001", 100)
	if r, err := meshed.as(store).post(t, mine); err != nil || r.status != http.StatusCreated {
		t.Fatalf("through the sidecar: %v %d %s", err, r.status, r.body)
	}
	if got := b.callerOf(t, mine.ID); got != storeID {
		t.Fatalf("transaction recorded for %q, want %q", got, storeID)
	}
	if r, err := meshed.as(store).do(t, "GET", "/v1/transactions/"+mine.ID.String(), "", nil); err != nil ||
		r.status != http.StatusOK {
		t.Fatalf("lookup through the sidecar: %v %d %s", err, r.status, r.body)
	}

	before := b.snapshot(t)
	forged := "By=spiffe://cluster.local/ns/txmesh/sa/bank;Hash=00;Subject=\"\";URI=" + storeID
	direct.refused(t, "a forged header past the sidecar", caller.HeaderXFCC, forged)
	direct.refused(t, "no header past the sidecar")
	meshed.as(intruder).refused(t, "a forged header through the sidecar", caller.HeaderXFCC, forged)
	if after := b.snapshot(t); after != before {
		t.Fatalf("refused requests changed the database: %+v → %+v", before, after)
	}
	for sample, want := range map[string]float64{`bank_callers_refused_total{reason="untrusted_peer"}`: 8,
		`bank_callers_refused_total{reason="not_allowed"}`: 4} {
		if got := direct.metric(t, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
}

// TestAnonymousCallers: a Bank without an identity source (plain HTTP, no mesh) takes every caller for
// "anonymous" and serves it only because ALLOWED_CALLERS says so; the transactions are recorded for it.
func TestAnonymousCallers(t *testing.T) {
	b := startBank(t, pgtest.NewDatabase(t), map[string]string{"TLS_CERT_FILE": "", "TLS_KEY_FILE": "",
		"TLS_CLIENT_CA_FILE": "", "ALLOWED_CALLERS": "anonymous"})
	b = b.as(&http.Client{Timeout: 10 * time.Second})
	one := tx("ACC-000001", 1)
	if r, err := b.post(t, one); err != nil || r.status != http.StatusCreated {
		t.Fatalf("%v %d %s", err, r.status, r.body)
	}
	if got := b.callerOf(t, one.ID); got != caller.Anonymous {
		t.Fatalf("recorded for %q, want anonymous", got)
	}
}

// TestCallerSettingsCheckedAtStart: serve refuses to start without ALLOWED_CALLERS, or with identities its
// identity source cannot produce, naming the variable; migrate and seed, which answer no one, need none.
func TestCallerSettingsCheckedAtStart(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	env, _ := tlsEnv(t)
	env["DATABASE_URL"] = dsn
	env["HTTP_ADDR"] = "127.0.0.1:0"
	for _, tc := range []struct{ allowed, source, want string }{
		{"", "", "ALLOWED_CALLERS is empty"},
		{"store", "", `ALLOWED_CALLERS "store": want a SPIFFE ID`},
		{"anonymous", "", "every caller has a verified identity"},
		{"spiffe://txmesh.local/store", "xfcc", "CALLER_IDENTITY xfcc is for a plain-HTTP app"},
	} {
		env["ALLOWED_CALLERS"], env["CALLER_IDENTITY"] = tc.allowed, tc.source
		err := run(context.Background(), []string{"serve"}, envOf(env), io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ALLOWED_CALLERS %q, CALLER_IDENTITY %q: %v; want an error with %q", tc.allowed, tc.source,
				err, tc.want)
		}
	}
	env["ALLOWED_CALLERS"], env["CALLER_IDENTITY"] = "", ""
	if err := run(context.Background(), []string{"migrate"}, envOf(env), io.Discard, nil); err != nil {
		t.Errorf("migrate without caller settings: %v", err)
	}
	if err := run(context.Background(), []string{"seed", "--accounts", "1"}, envOf(env), io.Discard, nil); err != nil {
		t.Errorf("seed without caller settings: %v", err)
	}
}
