package images

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunStopsTheProcessGroupAtItsDeadline(t *testing.T) {
	start := time.Now()
	_, err := run(context.Background(), command{name: "sh", args: []string{"-c", "echo started >&2; sleep 60 & wait"}, timeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no result within 300ms") || !strings.Contains(err.Error(), "started") {
		t.Errorf("error %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %v", d)
	}
}

func TestMissingToolsAreNamedWithTheirPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	b := &Builder{Dir: t.TempDir()}
	ctx := context.Background()
	for what, call := range map[string]func() error{
		"mmdebstrap not found: apt-get install mmdebstrap": func() error { _, err := b.Postgres(ctx); return err },
		"go not found: apt-get install golang":             func() error { _, err := b.Txmesh(ctx, ".", "x"); return err },
		"go not found":                                     func() error { _, err := b.Pause(ctx); return err },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), what) {
			t.Errorf("error %v, want %q", err, what)
		}
	}
}
