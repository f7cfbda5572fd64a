// Package caller tells a service who is calling it and whether that caller is allowed: the identity of the
// request's verified client certificate — its SPIFFE URI SAN, else its subject — taken from the service's own
// mTLS handshake or, behind an Istio sidecar, from the X-Forwarded-Client-Cert element the sidecar set.
package caller

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// Source is where a caller's identity comes from.
type Source string

// Identity sources (CALLER_IDENTITY).
const (
	// SourceAuto is SourceTLS when the server verifies client certificates (TLS_CLIENT_CA_FILE), else SourceNone.
	SourceAuto Source = "auto"
	// SourceTLS: the client certificate the server's own mTLS handshake verified.
	SourceTLS Source = "tls"
	// SourceXFCC: the X-Forwarded-Client-Cert element an Istio sidecar set, on connections from the sidecar.
	SourceXFCC Source = "xfcc"
	// SourceNone: no identity source; every caller is Anonymous.
	SourceNone Source = "none"
)

// Anonymous is every caller's identity when no identity source is configured (SourceNone). It is never the
// identity of a certificate (those are spiffe:// URIs or subjects such as CN=store).
const Anonymous = "anonymous"

// HeaderXFCC is the header Envoy sets with the client certificate it verified.
const HeaderXFCC = "X-Forwarded-Client-Cert"

// Config is the caller part of a service's configuration, filled from the environment.
type Config struct {
	Source Source `env:"CALLER_IDENTITY" envDefault:"auto"`
	// Allowed lists the identities allowed to call, separated by ';' or newlines (a subject contains commas).
	Allowed List `env:"ALLOWED_CALLERS"`
	// TrustedProxies are the peer addresses XFCC is read from: the Istio sidecar's inbound connections to the
	// app come from 127.0.0.6 (::6 over IPv6), every other connection to the pod's port is redirected to Envoy.
	TrustedProxies []netip.Prefix `env:"XFCC_TRUSTED_PROXIES" envDefault:"127.0.0.6/32,::6/128"`
}

// List is a list of caller identities; as text, separated by ';' or newlines, blanks around each ignored.
type List []string

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *List) UnmarshalText(b []byte) error {
	*l = nil
	for _, f := range strings.FieldsFunc(string(b), func(r rune) bool { return r == ';' || r == '\n' }) {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}

// Resolve returns the source in effect: SourceAuto becomes SourceTLS when the server verifies client
// certificates (mTLS), SourceNone otherwise.
func (c Config) Resolve(mTLS bool) Source {
	if c.Source != SourceAuto {
		return c.Source
	}
	if mTLS {
		return SourceTLS
	}
	return SourceNone
}

// Validate checks the configuration against the server's TLS setting (mTLS: it verifies client certificates).
func (c Config) Validate(mTLS bool) error {
	var errs []error
	src := c.Resolve(mTLS)
	switch src {
	case SourceTLS:
		if !mTLS {
			errs = append(errs, errors.New("CALLER_IDENTITY tls needs TLS_CLIENT_CA_FILE (the server's own mTLS)"))
		}
	case SourceXFCC:
		if mTLS {
			errs = append(errs, errors.New("CALLER_IDENTITY xfcc is for a plain-HTTP app behind an Istio sidecar; "+
				"with TLS_CLIENT_CA_FILE the identity is the client certificate's (CALLER_IDENTITY tls)"))
		}
		if len(c.TrustedProxies) == 0 || slices.ContainsFunc(c.TrustedProxies, func(p netip.Prefix) bool { return !p.IsValid() }) {
			errs = append(errs, fmt.Errorf("CALLER_IDENTITY xfcc needs XFCC_TRUSTED_PROXIES, the sidecar's addresses as "+
				"CIDRs (default 127.0.0.6/32,::6/128), got %q", c.TrustedProxies))
		}
	case SourceNone:
		if mTLS {
			errs = append(errs, errors.New("CALLER_IDENTITY none with TLS_CLIENT_CA_FILE would ignore the verified "+
				"client certificate: use tls (or auto)"))
		}
	default:
		errs = append(errs, fmt.Errorf("CALLER_IDENTITY %q: want auto, tls, xfcc or none", c.Source))
	}
	if len(c.Allowed) == 0 {
		errs = append(errs, fmt.Errorf("ALLOWED_CALLERS is empty: list the identities allowed to call, separated by "+
			"';' (identity source %s)", src))
	}
	for _, id := range c.Allowed {
		if err := validIdentity(id, src); err != nil {
			errs = append(errs, fmt.Errorf("ALLOWED_CALLERS %q: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// validIdentity checks that id can be an identity of source src.
func validIdentity(id string, src Source) error {
	switch {
	case src == SourceNone && id != Anonymous:
		return fmt.Errorf("with no identity source (CALLER_IDENTITY %s) every caller is %q, the only identity "+
			"that can be allowed", src, Anonymous)
	case id == Anonymous && src != SourceNone:
		return fmt.Errorf("%q is the caller of a server without an identity source; with source %s every caller "+
			"has a verified identity", Anonymous, src)
	case id == Anonymous:
		return nil
	case strings.HasPrefix(id, "spiffe://"):
		u, err := url.Parse(id)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return errors.New("not a SPIFFE ID (spiffe://trust-domain/path)")
		}
		return nil
	case strings.Contains(id, "="):
		return nil // a subject, RFC 2253 (CN=store,O=txmesh)
	}
	return errors.New("want a SPIFFE ID (spiffe://…) or a certificate subject (CN=…)")
}

// Errors of Identify: the request carries no identity the server can trust.
var (
	ErrNoIdentity = errors.New("no verified caller identity")
	// ErrUntrustedPeer: in SourceXFCC, the connection does not come from the sidecar, so its
	// X-Forwarded-Client-Cert (if any) may have been written by the caller itself.
	ErrUntrustedPeer = errors.New("connection not from the trusted sidecar: X-Forwarded-Client-Cert ignored")
)

// Policy identifies callers and says whether each is allowed.
type Policy struct {
	source  Source
	trusted []netip.Prefix
	allowed []string
}

// New returns the Policy of a validated configuration (mTLS: the server verifies client certificates).
func New(c Config, mTLS bool) (*Policy, error) {
	if err := c.Validate(mTLS); err != nil {
		return nil, err
	}
	allowed := slices.Clone(c.Allowed)
	slices.Sort(allowed)
	return &Policy{source: c.Resolve(mTLS), trusted: slices.Clone(c.TrustedProxies),
		allowed: slices.Compact(allowed)}, nil
}

// Source is the identity source in effect.
func (p *Policy) Source() Source { return p.source }

// Allowed lists the allowed identities, sorted.
func (p *Policy) Allowed() []string { return slices.Clone(p.allowed) }

// Allows reports whether id may call.
func (p *Policy) Allows(id string) bool {
	_, ok := slices.BinarySearch(p.allowed, id)
	return ok
}

// Identify returns the identity of r's caller, or an error when r carries none the server can trust.
func (p *Policy) Identify(r *http.Request) (string, error) {
	switch p.source {
	case SourceNone:
		return Anonymous, nil
	case SourceTLS:
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
			return "", fmt.Errorf("%w: no verified client certificate", ErrNoIdentity)
		}
		return FromCertificate(r.TLS.PeerCertificates[0])
	case SourceXFCC:
		peer, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !slices.ContainsFunc(p.trusted, func(n netip.Prefix) bool { return n.Contains(peer.Addr().Unmap()) }) {
			return "", fmt.Errorf("%w (peer %s)", ErrUntrustedPeer, r.RemoteAddr)
		}
		return FromXFCC(r.Header.Values(HeaderXFCC))
	}
	return "", fmt.Errorf("%w: identity source %q", ErrNoIdentity, p.source)
}

// FromCertificate is a verified certificate's identity: its SPIFFE ID (its one spiffe:// URI SAN), else its
// subject in RFC 2253 form (CN=store).
func FromCertificate(c *x509.Certificate) (string, error) {
	var uris []string
	for _, u := range c.URIs {
		uris = append(uris, u.String())
	}
	return identity(uris, c.Subject.String())
}

// identity picks the identity among a certificate's URI SANs and its subject.
func identity(uris []string, subject string) (string, error) {
	var ids []string
	for _, u := range uris {
		if strings.HasPrefix(u, "spiffe://") {
			ids = append(ids, u)
		}
	}
	switch {
	case len(ids) == 1:
		return ids[0], nil
	case len(ids) > 1: // an SVID has exactly one; which one would be the caller is anyone's guess
		return "", fmt.Errorf("%w: the certificate has %d SPIFFE IDs", ErrNoIdentity, len(ids))
	case subject != "":
		return subject, nil
	}
	return "", fmt.Errorf("%w: the certificate has neither a SPIFFE ID nor a subject", ErrNoIdentity)
}

// FromXFCC is the identity in the last element of X-Forwarded-Client-Cert (the header's values in order):
// the element the nearest proxy — the sidecar — set for the client certificate it verified. Earlier
// elements were written by whoever sent the request and are ignored.
func FromXFCC(values []string) (string, error) {
	if len(values) == 0 {
		return "", fmt.Errorf("%w: no %s header", ErrNoIdentity, HeaderXFCC)
	}
	elems, err := parseXFCC(strings.Join(values, ","))
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrNoIdentity, HeaderXFCC, err)
	}
	var uris []string
	var subject string
	for _, kv := range elems[len(elems)-1] {
		switch kv.key {
		case "uri":
			uris = append(uris, kv.value)
		case "subject":
			subject = kv.value
		}
	}
	return identity(uris, subject)
}

type pair struct{ key, value string }

// parseXFCC splits an X-Forwarded-Client-Cert value (Envoy's format) into its elements (separated by ','),
// each a list of key=value pairs (separated by ';'; keys lowercased). A value holding ',', ';' or '=' is
// double-quoted, a '"' in it escaped as \".
func parseXFCC(h string) ([][]pair, error) {
	var elems [][]pair
	var cur []pair
	for i := 0; ; {
		eq := strings.IndexAny(h[i:], "=,;")
		if eq < 0 || h[i+eq] != '=' {
			return nil, fmt.Errorf("pair without '=' at offset %d", i)
		}
		key := strings.ToLower(strings.TrimSpace(h[i : i+eq]))
		if key == "" {
			return nil, fmt.Errorf("empty key at offset %d", i)
		}
		j := i + eq + 1
		var val strings.Builder
		if j < len(h) && h[j] == '"' {
			for j++; j < len(h) && h[j] != '"'; j++ {
				if h[j] == '\\' && j+1 < len(h) {
					j++
				}
				val.WriteByte(h[j])
			}
			if j == len(h) {
				return nil, fmt.Errorf("unterminated quoted value of %s", key)
			}
			j++
		} else {
			end := strings.IndexAny(h[j:], ",;")
			if end < 0 {
				end = len(h) - j
			}
			if strings.ContainsAny(h[j:j+end], `"=`) {
				return nil, fmt.Errorf("unquoted value of %s holds '\"' or '='", key)
			}
			val.WriteString(h[j : j+end])
			j += end
		}
		cur = append(cur, pair{key, val.String()})
		if j == len(h) {
			return append(elems, cur), nil
		}
		switch h[j] {
		case ';':
		case ',':
			elems, cur = append(elems, cur), nil
		default:
			return nil, fmt.Errorf("unexpected %q after the value of %s", h[j], key)
		}
		i = j + 1
	}
}
