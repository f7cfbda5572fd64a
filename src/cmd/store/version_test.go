package main

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestVersionStamped: the binary built with -X main.version=… (as the Dockerfile and make build do) answers
// --version with that version, without any configuration.
func TestVersionStamped(t *testing.T) {
	const want = "store 9.8.7-stamped\n"
	bin := filepath.Join(t.TempDir(), "store")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=9.8.7-stamped", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, flag := range []string{"--version", "-version"} {
		cmd := exec.Command(bin, flag)
		cmd.Env = []string{} // no DATABASE_URL or anything else: --version needs none
		out, err := cmd.Output()
		if err != nil || string(out) != want {
			t.Errorf("store %s: %q (%v), want %q", flag, out, err, want)
		}
	}
}
