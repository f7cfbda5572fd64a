package gobuild

import (
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A cached component is found by its key — name, version, patch key — with its binaries under their names,
// without the go command (PATH is empty) and without touching the module proxy.
func TestEnsureFindsTheCacheByKey(t *testing.T) {
	cache := t.TempDir()
	c := Component{Name: "kube-network-policies", Version: "v0.8.0", PatchKey: "xtqueue",
		Packages: []string{"sigs.k8s.io/kube-network-policies/cmd", "example.com/x/cmd/other"},
		Names:    map[string]string{"sigs.k8s.io/kube-network-policies/cmd": "netpol"}}
	if c.Key() != "kube-network-policies-v0.8.0-xtqueue" {
		t.Fatalf("key %q", c.Key())
	}
	dir := filepath.Join(cache, "bin", c.Key())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	got, err := Ensure(context.Background(), cache, c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Binaries{"netpol": filepath.Join(dir, "netpol"), "other": filepath.Join(dir, "other")}
	if !maps.Equal(got, want) {
		t.Fatalf("binaries %v, want %v", got, want)
	}
	// Without .complete (a build that died) it builds, and says what is missing to do so.
	c.Version = "v0.9.0"
	if _, err := Ensure(context.Background(), cache, c, io.Discard); err == nil || !strings.Contains(err.Error(), "go command") {
		t.Fatalf("error %v, want the missing go command named", err)
	}
}

// Two builders of one component: the second waits for the first's lock, and gets it once the first lets go.
func TestLockWaitsForTheHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.lock")
	unlock, err := lock(context.Background(), path, io.Discard, "c")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := lock(ctx, path, io.Discard, "c"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while the first is held: %v, want to wait until the deadline", err)
	}
	unlock()
	unlock2, err := lock(context.Background(), path, io.Discard, "c")
	if err != nil {
		t.Fatalf("lock after the holder let go: %v", err)
	}
	unlock2()
}
