package gitserver

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func gitT(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@t", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// A clone through the server gets the source's commit, and a push through it lands in the bare repository:
// what Flux reads and image automation writes.
func TestCloneAndPushOverHTTP(t *testing.T) {
	src := t.TempDir()
	gitT(t, src, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(src, "kustomization.yaml"), []byte("resources: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, src, "add", ".")
	gitT(t, src, "commit", "-q", "-m", "first")
	head := gitT(t, src, "rev-parse", "HEAD")

	root := t.TempDir()
	bare, err := InitFrom(context.Background(), root, "txmesh", src)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := Backend()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(Handler(root, backend))
	srv.Listener, _ = net.Listen("tcp", "127.0.0.1:0")
	srv.Start()
	defer srv.Close()

	work := filepath.Join(t.TempDir(), "work")
	gitT(t, filepath.Dir(work), "clone", "-q", srv.URL+"/txmesh.git", work)
	if got := gitT(t, work, "rev-parse", "HEAD"); got != head {
		t.Fatalf("cloned %s, want %s", got, head)
	}
	if err := os.WriteFile(filepath.Join(work, "tag.txt"), []byte("1.2.4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitT(t, work, "add", ".")
	gitT(t, work, "commit", "-q", "-m", "image automation")
	pushed := gitT(t, work, "rev-parse", "HEAD")
	gitT(t, work, "push", "-q", "origin", "main")
	if got := gitT(t, bare, "rev-parse", "main"); got != pushed {
		t.Fatalf("bare repository at %s after the push, want %s", got, pushed)
	}
}
