package caller

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/txmesh/txmesh/src/internal/config"
)

// Unit tests of identity derivation and configuration. The Bank's tests (src/cmd/bank) prove the rules end
// to end: real HTTPS and a sidecar stand-in that sets X-Forwarded-Client-Cert.

const store = "spiffe://cluster.local/ns/txmesh/sa/store"

func TestFromXFCC(t *testing.T) {
	for _, tc := range []struct {
		name, header, want string
		err                error
	}{
		{name: "Istio sidecar (APPEND_FORWARD, one hop)",
			header: `By=spiffe://cluster.local/ns/txmesh/sa/bank;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="";URI=` + store,
			want:   store},
		{name: "the last element counts, not one the caller wrote before it",
			header: `By=spiffe://x/bank;URI=spiffe://cluster.local/ns/txmesh/sa/admin,By=spiffe://cluster.local/ns/txmesh/sa/bank;Hash=ab;URI=` + store,
			want:   store},
		{name: "Envoy's documented example: quoted subject with ',' and '='",
			header: `By=http://frontend.lyft.com;Hash=468e;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com`,
			want:   "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client"},
		{name: "subject only, RFC 2253 with an escaped quote",
			header: `By=spiffe://td/bank;Hash=ab;Subject="CN=store,O=tx \"mesh\""`, want: `CN=store,O=tx "mesh"`},
		{name: "keys are case-insensitive", header: `by=spiffe://td/bank;uri=` + store, want: store},
		{name: "DNS SANs are not identities", header: `By=spiffe://td/bank;Hash=ab;DNS=store;DNS=store.txmesh`,
			err: ErrNoIdentity},
		{name: "two SPIFFE IDs are ambiguous", header: `By=spiffe://td/bank;URI=` + store + `;URI=spiffe://td/other`,
			err: ErrNoIdentity},
		{name: "unterminated quote", header: `By=spiffe://td/bank;Subject="CN=store`, err: ErrNoIdentity},
		{name: "pair without '='", header: `By=spiffe://td/bank;URI`, err: ErrNoIdentity},
		{name: "unquoted '=' in a value", header: `URI=spiffe://td/a=b`, err: ErrNoIdentity},
		{name: "trailing comma", header: `URI=` + store + `,`, err: ErrNoIdentity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromXFCC([]string{tc.header})
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %q, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// Repeated header lines are one list (HTTP field semantics): the last line's last element counts.
	if got, err := FromXFCC([]string{`URI=spiffe://td/forged`, `By=spiffe://td/bank;URI=` + store}); err != nil || got != store {
		t.Fatalf("two header lines: got %q, %v; want %q", got, err, store)
	}
	if _, err := FromXFCC(nil); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("no header: got %v, want ErrNoIdentity", err)
	}
}

func TestFromCertificate(t *testing.T) {
	spiffe, _ := url.Parse(store)
	other, _ := url.Parse("spiffe://cluster.local/ns/txmesh/sa/other")
	web, _ := url.Parse("https://store.example")
	subject := pkix.Name{CommonName: "store", Organization: []string{"txmesh"}}
	for _, tc := range []struct {
		name string
		cert x509.Certificate
		want string
	}{
		{"SPIFFE ID", x509.Certificate{Subject: subject, URIs: []*url.URL{web, spiffe}}, store},
		{"subject when no SPIFFE ID", x509.Certificate{Subject: subject, URIs: []*url.URL{web}}, "CN=store,O=txmesh"},
		{"two SPIFFE IDs", x509.Certificate{Subject: subject, URIs: []*url.URL{spiffe, other}}, ""},
		{"nothing", x509.Certificate{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FromCertificate(&tc.cert)
			if tc.want == "" {
				if !errors.Is(err, ErrNoIdentity) {
					t.Fatalf("got %q, %v; want ErrNoIdentity", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestIdentifyXFCCOnlyFromTheSidecar(t *testing.T) {
	p, err := New(Config{Source: SourceXFCC, Allowed: List{store},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.6/32"), netip.MustParsePrefix("::6/128")}}, false)
	if err != nil {
		t.Fatal(err)
	}
	header := `By=spiffe://cluster.local/ns/txmesh/sa/bank;Hash=ab;URI=` + store
	for _, tc := range []struct {
		peer, header string
		want         string
		err          error
	}{
		{"127.0.0.6:41000", header, store, nil},
		{"[::6]:41000", header, store, nil},
		{"[::ffff:127.0.0.6]:41000", header, store, nil},
		{"127.0.0.6:41000", "", "", ErrNoIdentity},
		{"127.0.0.1:41000", header, "", ErrUntrustedPeer},  // a process in the pod, or a test client
		{"10.244.1.7:41000", header, "", ErrUntrustedPeer}, // a pod reaching the app port past the sidecar
		{"not an address", header, "", ErrUntrustedPeer},
	} {
		r := httptest.NewRequest(http.MethodPost, "/v1/transactions", nil)
		r.RemoteAddr = tc.peer
		if tc.header != "" {
			r.Header.Set(HeaderXFCC, tc.header)
		}
		got, err := p.Identify(r)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("peer %s, header %q: got %q, %v; want %q, %v", tc.peer, tc.header, got, err, tc.want, tc.err)
		}
	}
}

func TestIdentifyTLSNeedsAVerifiedCertificate(t *testing.T) {
	p, err := New(Config{Source: SourceAuto, Allowed: List{"CN=store"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "store"}}
	r := httptest.NewRequest(http.MethodPost, "/v1/transactions", nil)
	r.Header.Set(HeaderXFCC, "URI="+store) // never read in tls mode
	for _, tc := range []struct {
		name  string
		state *tls.ConnectionState
		want  string
	}{
		{"plain HTTP", nil, ""},
		{"no certificate", &tls.ConnectionState{}, ""},
		{"presented, not verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}, ""},
		{"verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert},
			VerifiedChains: [][]*x509.Certificate{{cert}}}, "CN=store"},
	} {
		r.TLS = tc.state
		got, err := p.Identify(r)
		if got != tc.want || (tc.want == "") != errors.Is(err, ErrNoIdentity) {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		mTLS bool
		want string // "" valid, else a substring of the error
		src  Source
	}{
		{"mTLS: tls by default", map[string]string{"ALLOWED_CALLERS": "spiffe://txmesh.local/store"}, true, "", SourceTLS},
		{"list on lines, subjects with commas", map[string]string{"ALLOWED_CALLERS": "CN=store,O=txmesh\n  spiffe://td/x ;CN=e2e-client\n"}, true, "", SourceTLS},
		{"mesh", map[string]string{"CALLER_IDENTITY": "xfcc", "ALLOWED_CALLERS": store}, false, "", SourceXFCC},
		{"plain HTTP: anonymous when allowed", map[string]string{"ALLOWED_CALLERS": "anonymous"}, false, "", SourceNone},
		{"empty list", nil, true, "ALLOWED_CALLERS is empty", ""},
		{"plain HTTP: only anonymous can be allowed", map[string]string{"ALLOWED_CALLERS": store}, false, "the only identity that can be allowed", ""},
		{"anonymous with a source", map[string]string{"ALLOWED_CALLERS": "anonymous"}, true, "every caller has a verified identity", ""},
		{"bare name", map[string]string{"ALLOWED_CALLERS": "store"}, true, "want a SPIFFE ID", ""},
		{"bad SPIFFE ID", map[string]string{"ALLOWED_CALLERS": "spiffe:///ns/x"}, true, "not a SPIFFE ID", ""},
		{"xfcc under the app's own mTLS", map[string]string{"CALLER_IDENTITY": "xfcc", "ALLOWED_CALLERS": store}, true, "CALLER_IDENTITY xfcc is for a plain-HTTP app", ""},
		{"tls without mTLS", map[string]string{"CALLER_IDENTITY": "tls", "ALLOWED_CALLERS": store}, false, "needs TLS_CLIENT_CA_FILE", ""},
		{"none ignoring mTLS", map[string]string{"CALLER_IDENTITY": "none", "ALLOWED_CALLERS": "anonymous"}, true, "would ignore the verified", ""},
		{"unknown source", map[string]string{"CALLER_IDENTITY": "jwt", "ALLOWED_CALLERS": store}, true, `CALLER_IDENTITY "jwt"`, ""},
		{"no trusted proxy", map[string]string{"CALLER_IDENTITY": "xfcc", "ALLOWED_CALLERS": store, "XFCC_TRUSTED_PROXIES": ","}, false, "XFCC_TRUSTED_PROXIES", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := config.Load(&c, func(k string) string { return tc.env[k] })
			if err == nil {
				var p *Policy
				if p, err = New(c, tc.mTLS); err == nil && p.Source() != tc.src {
					t.Fatalf("source %s, want %s", p.Source(), tc.src)
				}
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	var l List
	_ = l.UnmarshalText([]byte("CN=store,O=txmesh\n  spiffe://td/x ;;CN=a b"))
	if strings.Join(l, "|") != "CN=store,O=txmesh|spiffe://td/x|CN=a b" {
		t.Fatalf("list %q", l)
	}
	p, _ := New(Config{Source: SourceTLS, Allowed: l}, true)
	if !p.Allows("CN=a b") || p.Allows("CN=store") || p.Allows("") {
		t.Fatalf("Allows: %v", p.Allowed())
	}
}
