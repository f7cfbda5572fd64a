package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestMakeRunEndToEnd is `make run` for a few seconds: the real binaries, a real PostgreSQL, mTLS between
// Store and Bank, the generator on. It checks the progress lines show deliveries and that the shutdown audit
// is clean (exit status 0).
func TestMakeRunEndToEnd(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../bank", "../store", "../txaudit", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, err := run(ctx, []string{"--bin", bin, "--dir", filepath.Join(t.TempDir(), "run"), "--duration", "6s",
		"--interval", "20ms", "--bank-addr", "127.0.0.1:0", "--store-addr", "127.0.0.1:0", "--accounts", "10"}, &out)
	if err != nil || code != 0 {
		t.Fatalf("txlocal: code %d, err %v\n%s", code, err, out.String())
	}
	// The last progress line must show delivered purchases.
	lines := regexp.MustCompile(`delivered (\d+) `).FindAllStringSubmatch(out.String(), -1)
	if len(lines) == 0 {
		t.Fatalf("no progress line:\n%s", out.String())
	}
	if n, _ := strconv.Atoi(lines[len(lines)-1][1]); n < 10 {
		t.Fatalf("only %d purchases delivered in 6s at one per 20ms:\n%s", n, out.String())
	}
	for _, want := range []string{"curl -s -X POST", "services stopped cleanly"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}
