package netpol

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// The NFQUEUE patch applies to exactly the pinned upstream source and leaves no native queue expression.
func TestNetpolPatchAppliesToPinnedUpstream(t *testing.T) {
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := gobuild.ModuleDir(context.Background(), cache, Component())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(mod, "pkg", "networkpolicy", "controller.go"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := netpolPatch(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "txmeshNFQueueTarget("); n != 2 {
		t.Fatalf("%d compat queue targets, want 2", n)
	}
	// A source this patch was not written for is refused, not half-patched.
	if _, err := netpolPatch(strings.Replace(string(b), netpolQueueUpstream, "", 1)); err == nil {
		t.Fatal("a changed upstream was patched silently")
	}
}
