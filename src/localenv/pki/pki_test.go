package pki

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClientCertificatesCarryTheirID: Write's client certificate has the URI SAN ID(client) (the Bank's
// caller identity); the CA written beside it issues more clients, with or without an ID, that verify.
func TestClientCertificatesCarryTheirID(t *testing.T) {
	dir := t.TempDir()
	f, err := Write(dir, "store", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(f.ClientCert)
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, data)
	if f.ClientID != "spiffe://txmesh.local/store" || len(c.URIs) != 1 || c.URIs[0].String() != f.ClientID {
		t.Fatalf("client certificate URIs %v, Files.ClientID %q; want the one ID spiffe://txmesh.local/store",
			c.URIs, f.ClientID)
	}
	ca, err := LoadCA(f.CA, f.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Client("intruder")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := ca.ClientWithoutID("legacy")
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Write(filepath.Join(dir, "legacy.pem"), filepath.Join(dir, "legacy-key.pem")); err != nil {
		t.Fatal(err)
	}
	opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, p := range []Pair{other, plain} {
		c := parse(t, p.CertPEM)
		if _, err := c.Verify(opts); err != nil {
			t.Errorf("%s does not verify against the loaded CA: %v", c.Subject, err)
		}
	}
	if c := parse(t, other.CertPEM); len(c.URIs) != 1 || c.URIs[0].String() != ID("intruder") {
		t.Errorf("Client URIs %v", c.URIs)
	}
	if c := parse(t, plain.CertPEM); len(c.URIs) != 0 || c.Subject.String() != "CN=legacy" {
		t.Errorf("ClientWithoutID: URIs %v, subject %s", c.URIs, c.Subject)
	}
}
