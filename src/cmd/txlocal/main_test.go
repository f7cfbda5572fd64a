package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/localenv/proc"
)

// binDir holds the bank, store, txaudit and txlocal commands TestMain built.
var binDir string

// TestMain builds the commands before m.Run starts go test's -timeout clock (see proc.BuildDir).
func TestMain(m *testing.M) {
	os.Exit(proc.WithBuild(&binDir, m.Run, ".", "../bank", "../store", "../txaudit", "."))
}

// TestMakeRunEndToEnd is `make run` for a few seconds: the real binaries, a real PostgreSQL, mTLS between
// Store and Bank, the generator on. It checks the progress lines show deliveries and that the shutdown audit
// is clean (exit status 0).
func TestMakeRunEndToEnd(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, err := run(ctx, []string{"--bin", binDir, "--dir", filepath.Join(t.TempDir(), "run"), "--duration", "6s",
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
	for _, want := range []string{"curl -s -X POST", "services stopped cleanly",
		"allowed caller: the client certificate spiffe://txmesh.local/store",
		"txaudit: bank by caller: spiffe://txmesh.local/store "} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}
