package images

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunStopsTheProcessGroupAtItsDeadline(t *testing.T) {
	start := time.Now()
	_, err := Run(context.Background(), Command{Name: "sh", Args: []string{"-c", "echo started >&2; sleep 60 & wait"}, Timeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no result within 300ms") || !strings.Contains(err.Error(), "started") {
		t.Errorf("error %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %v", d)
	}
}

func TestMissingToolsAreNamedWithTheirPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := Need("mmdebstrap", "mmdebstrap"); err == nil || !strings.Contains(err.Error(), "mmdebstrap not found: apt-get install mmdebstrap") {
		t.Errorf("error %v, want the tool and its package named", err)
	}
}
