// Package gitserver serves Git repositories over smart HTTP with Git's own git-http-backend (through Go's
// CGI handler): what Flux's source-controller clones and image-automation-controller pushes to in the
// throwaway cluster. Pushes are allowed (http.receivepack) and anonymous: the server listens on the
// cluster's private bridge address only.
package gitserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Backend finds git-http-backend (Debian: /usr/lib/git-core, package git).
func Backend() (string, error) {
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return "", fmt.Errorf("git not found (apt-get install git): %w", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("git-http-backend missing at %s (apt-get install git): %w", p, err)
	}
	return p, nil
}

// Handler serves every bare repository under root at /<name>.git.
func Handler(root, backend string) http.Handler {
	return &cgi.Handler{
		Path: backend,
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			// Anonymous pushes: without a REMOTE_USER git-http-backend refuses receive-pack unless the
			// repository's http.receivepack says yes, which InitFrom sets.
		},
	}
}

// Serve listens on addr until ctx ends.
func Serve(ctx context.Context, addr, root string) error {
	backend, err := Backend()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("git server on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: Handler(root, backend), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// InitFrom makes root/<name>.git a bare clone of the repository at src (its current HEAD commit, without
// the working tree's uncommitted changes), accepting anonymous pushes, and returns its path.
func InitFrom(ctx context.Context, root, name, src string) (string, error) {
	dst := filepath.Join(root, name+".git")
	if err := os.RemoveAll(dst); err != nil {
		return "", err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	for _, args := range [][]string{
		{"clone", "--bare", "--quiet", "--no-hardlinks", src, dst},
		{"-C", dst, "config", "http.receivepack", "true"},
		{"-C", dst, "config", "receive.denyNonFastForwards", "false"},
	} {
		cmd := exec.CommandContext(ctx, "git", args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return dst, nil
}
