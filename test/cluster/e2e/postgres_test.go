package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The checkout's manifests ship one major version, read from the base's imageName tag.
func TestShippedMajor(t *testing.T) {
	repo, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	got, err := shippedMajor(repo)
	if err != nil || got != "18" {
		t.Fatalf("shipped major %q, %v; want 18 (kustomize/base/database/bank-db.yaml)", got, err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(shippedImage)), 0o755); err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]string{
		"spec:\n  imageName: ghcr.io/cloudnative-pg/postgresql:17.6-system-trixie\n": "17",
		"spec:\n  imageName: txmesh.local/postgresql:18-forky\n":                     "18",
		"spec:\n  instances: 3\n":               "",
		"spec:\n  imageName: postgres:latest\n": "",
	} {
		if err := os.WriteFile(filepath.Join(dir, shippedImage), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := shippedMajor(dir)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("%q: %q, %v; want %q", text, got, err, want)
		}
	}
}

// A server of another major than the manifests' is refused, naming both.
func TestCheckMajor(t *testing.T) {
	for _, ok := range []string{"18.6 (Debian 18.6-3)", "18.4", "18beta1"} {
		if err := checkMajor(ok, "18"); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"15.14 (Debian 15.14-0+deb12u1)", "1.8", "", "x18"} {
		if err := checkMajor(bad, "18"); err == nil {
			t.Errorf("%q accepted for 18", bad)
		} else if bad == "15.14 (Debian 15.14-0+deb12u1)" && !strings.Contains(err.Error(), "runs PostgreSQL 15.14") {
			t.Errorf("%q: %v, want both versions named", bad, err)
		}
	}
}
