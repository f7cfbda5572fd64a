package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// A tool's answer is its standard output: what it says on standard error (a client warning) is not parsed as
// part of it; a failure carries both.
func TestRunToolKeepsStderrOut(t *testing.T) {
	out, err := runTool("sh", exec.Command("sh", "-c", `echo 'E1207 websocket.go:296] Unknown stream id 1' >&2; echo 18.6`))
	if err != nil || out != "18.6\n" {
		t.Errorf("answer %q, %v; want only the standard output", out, err)
	}
	out, err = runTool("sh", exec.Command("sh", "-c", `echo partial; echo 'error: no such pod' >&2; exit 1`))
	if err == nil || !strings.Contains(out, "no such pod") || !strings.Contains(err.Error(), "no such pod") ||
		!strings.Contains(err.Error(), "sh -c") {
		t.Errorf("failure %q, %v; want both streams in the answer and the error", out, err)
	}
}
