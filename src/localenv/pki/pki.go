// Package pki generates a throwaway certificate authority and the certificates signed by it that the local
// setups (make run, tests, the HA lab) use for mTLS between the Store and the Bank. A client certificate
// carries a SPIFFE-like URI SAN, ID(name), as an Istio workload certificate does: the Bank's caller identity.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// TrustDomain is the SPIFFE trust domain of the local client certificates.
const TrustDomain = "txmesh.local"

// ID is the SPIFFE ID of the local client named name: spiffe://txmesh.local/<name>.
func ID(name string) string { return "spiffe://" + TrustDomain + "/" + name }

// CA is a certificate authority held in memory.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte
}

// Pair is a certificate and its key, PEM encoded.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// TLS returns the pair as a tls.Certificate.
func (p Pair) TLS() (tls.Certificate, error) { return tls.X509KeyPair(p.CertPEM, p.KeyPEM) }

// NewCA creates a CA valid for a day (local setups are short-lived).
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// LoadCA reads a CA that Write wrote (Files.CA, Files.CAKey), to issue more certificates.
func LoadCA(certFile, keyFile string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: %s holds a %T, not an ECDSA key", keyFile, pair.PrivateKey)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}

// Server issues a server certificate for the given DNS names and IP addresses.
func (ca *CA) Server(name string, hosts ...string) (Pair, error) {
	return ca.issue(name, x509.ExtKeyUsageServerAuth, hosts, nil)
}

// Client issues a client certificate named name (its common name) with the URI SAN ID(name).
func (ca *CA) Client(name string) (Pair, error) {
	id, err := url.Parse(ID(name))
	if err != nil {
		return Pair{}, fmt.Errorf("pki: client name %q: %w", name, err)
	}
	return ca.issue(name, x509.ExtKeyUsageClientAuth, nil, []*url.URL{id})
}

// ClientWithoutID issues a client certificate without a URI SAN, as a CA outside SPIFFE would: its subject
// (CN=name) is all that names the caller.
func (ca *CA) ClientWithoutID(name string) (Pair, error) {
	return ca.issue(name, x509.ExtKeyUsageClientAuth, nil, nil)
}

func (ca *CA) issue(name string, usage x509.ExtKeyUsage, hosts []string, uris []*url.URL) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     ca.Cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		URIs:         uris,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Pair{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// Write writes the certificate and the key (0600) to the given files.
func (p Pair) Write(certFile, keyFile string) error {
	if err := os.WriteFile(certFile, p.CertPEM, 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.WriteFile(keyFile, p.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// Pool returns a certificate pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Files are the PEM files Write produced, and the client certificate's identity.
type Files struct {
	CA, CAKey, ServerCert, ServerKey, ClientCert, ClientKey string
	// ClientID is the client certificate's SPIFFE ID, ID(client): what the Bank's ALLOWED_CALLERS lists.
	ClientID string
}

// Write generates a CA, a server certificate for hosts and a client certificate named client (with the URI
// SAN ID(client)), and writes them under dir (keys 0600; the CA's key too, for LoadCA).
func Write(dir, client string, hosts ...string) (Files, error) {
	if len(hosts) == 0 {
		return Files{}, errors.New("pki: at least one server host is required")
	}
	ca, err := NewCA("txmesh local CA")
	if err != nil {
		return Files{}, err
	}
	srv, err := ca.Server(hosts[0], hosts...)
	if err != nil {
		return Files{}, err
	}
	cli, err := ca.Client(client)
	if err != nil {
		return Files{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return Files{}, err
	}
	f := Files{
		CA:         filepath.Join(dir, "ca.pem"),
		CAKey:      filepath.Join(dir, "ca-key.pem"),
		ClientID:   ID(client),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
	}
	for path, data := range map[string][]byte{
		f.CA: ca.PEM, f.CAKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		f.ServerCert: srv.CertPEM, f.ServerKey: srv.KeyPEM, f.ClientCert: cli.CertPEM,
		f.ClientKey: cli.KeyPEM,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return Files{}, fmt.Errorf("pki: %w", err)
		}
	}
	return f, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}
