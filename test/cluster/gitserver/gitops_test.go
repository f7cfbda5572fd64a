package gitserver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A commit made through GitOps lands on the served branch with the change, and its revert restores the file:
// what cd-bad-release does to the Git server Flux reads.
func TestGitOpsCommitAndRevert(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	if _, err := git(ctx, src, "init", "--quiet", "-b", "main"); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(src, "config.yaml")
	if err := os.WriteFile(file, []byte("ca: good\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := git(ctx, src, "add", "."); err != nil {
		t.Fatal(err)
	}
	if _, err := git(ctx, src, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "first"); err != nil {
		t.Fatal(err)
	}
	bare, err := InitFrom(ctx, t.TempDir(), "txmesh", src)
	if err != nil {
		t.Fatal(err)
	}
	g := &GitOps{Bare: bare, Branch: "main"}
	first, err := g.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	commit, err := g.Commit(ctx, "bad ca", func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("ca: bad\n"), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if head, _ := g.Head(ctx); head != commit || head == first {
		t.Fatalf("head %s after the commit %s (first %s)", head, commit, first)
	}
	if got, err := git(ctx, bare, "show", "main:config.yaml"); err != nil || got != "ca: bad" {
		t.Fatalf("served config.yaml %q %v, want the change", got, err)
	}
	if log, _ := g.Log(ctx, 1); log == "" || !strings.Contains(log, "txmesh e2e: bad ca") {
		t.Errorf("log %q", log)
	}
	revert, err := g.Revert(ctx, commit)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := git(ctx, bare, "show", revert+":config.yaml"); err != nil || got != "ca: good" {
		t.Fatalf("config.yaml after the revert %q %v", got, err)
	}
	if _, err := g.Commit(ctx, "nothing", func(string) error { return nil }); err == nil {
		t.Error("an empty commit was made")
	}
}
