package gitserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// GitOps is the Git side of continuous delivery in the throwaway cluster (issue 11): a Git server on the
// cluster's bridge holding a clone of the checkout, which Flux reconciles flux/clusters/e2e from and image
// automation pushes to, and commits made on it as an engineer's pushes would be.
type GitOps struct {
	URL    string // what Flux clones and image automation pushes to
	Bare   string // the served bare repository
	Branch string
	done   chan error
}

// Port is the Git server's port on the host's bridge address.
const Port = 5001

// Start serves a clone of the checkout repo at http://<hostIP>:5001/txmesh.git until ctx ends: its HEAD
// commit plus, as one more commit, the working tree's uncommitted changes to tracked files (so Flux applies
// what the run built; files git does not track yet are not in it), on branch main. The server runs inside
// the calling process and its repository under dir (the cluster's), so neither outlives a crash or `make
// cluster-down`.
func Start(ctx context.Context, dir, hostIP, repo string, log io.Writer) (*GitOps, error) {
	root := filepath.Join(dir, "git")
	bare, err := InitFrom(ctx, root, "txmesh", repo)
	if err != nil {
		return nil, err
	}
	// An identity of its own: the commit is made where none may be configured (a fresh runner).
	rev, err := git(ctx, repo, "-c", "user.name=txmesh e2e", "-c", "user.email=e2e@txmesh.invalid",
		"stash", "create", "e2e: the working tree's changes")
	if err != nil {
		return nil, err
	}
	if rev == "" {
		if rev, err = git(ctx, repo, "rev-parse", "HEAD"); err != nil {
			return nil, err
		}
	}
	if _, err := git(ctx, repo, "push", "--quiet", "--force", bare, rev+":refs/heads/main"); err != nil {
		return nil, err
	}
	if _, err := git(ctx, bare, "symbolic-ref", "HEAD", "refs/heads/main"); err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(hostIP, fmt.Sprint(Port))
	g := &GitOps{URL: "http://" + addr + "/txmesh.git", Bare: bare, Branch: "main", done: make(chan error, 1)}
	go func() { g.done <- Serve(ctx, addr, root) }()
	for start := time.Now(); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			break
		}
		select {
		case err := <-g.done:
			if err == nil {
				err = errors.New("stopped before it listened")
			}
			return nil, fmt.Errorf("git server: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 10*time.Second {
			return nil, fmt.Errorf("git server not listening on %s", addr)
		}
	}
	fmt.Fprintf(log, "deploy: git server at %s: %s as main\n", g.URL, rev[:12])
	return g, nil
}

// Head is the commit of the served branch.
func (g *GitOps) Head(ctx context.Context) (string, error) {
	return git(ctx, g.Bare, "rev-parse", g.Branch)
}

// Files lists the files under dir in the served branch's head (git ls-tree -r --name-only).
func (g *GitOps) Files(ctx context.Context, dir string) ([]string, error) {
	out, err := git(ctx, g.Bare, "ls-tree", "-r", "--name-only", g.Branch, "--", dir)
	if err != nil || out == "" {
		return nil, err
	}
	return strings.Split(out, "\n"), nil
}

// Log is the served branch's last n commits, one line each.
func (g *GitOps) Log(ctx context.Context, n int) (string, error) {
	return git(ctx, g.Bare, "log", "--format=%h %an: %s", fmt.Sprintf("-%d", n), g.Branch)
}

// Commit makes one commit on the served branch, as an engineer's push would: change edits a fresh clone
// (its directory), the commit is made with msg and pushed; it returns the new commit. A push that loses
// the race with image automation's is made again on the new head.
func (g *GitOps) Commit(ctx context.Context, msg string, change func(dir string) error) (string, error) {
	return g.push(ctx, func(dir string) error {
		if err := change(dir); err != nil {
			return err
		}
		_, err := git(ctx, dir, "-c", "user.name=txmesh e2e", "-c", "user.email=e2e@txmesh.invalid",
			"commit", "--quiet", "-a", "-m", msg)
		return err
	})
}

// Revert commits the revert of commit on the served branch and returns the new commit.
func (g *GitOps) Revert(ctx context.Context, commit string) (string, error) {
	return g.push(ctx, func(dir string) error {
		_, err := git(ctx, dir, "-c", "user.name=txmesh e2e", "-c", "user.email=e2e@txmesh.invalid",
			"revert", "--no-edit", commit)
		return err
	})
}

func (g *GitOps) push(ctx context.Context, commit func(dir string) error) (string, error) {
	var err error
	for range 3 {
		var dir string
		if dir, err = os.MkdirTemp("", "txmesh-git-*"); err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		if _, err = git(ctx, dir, "clone", "--quiet", "--branch", g.Branch, g.Bare, "."); err != nil {
			return "", err
		}
		if err = commit(dir); err != nil {
			return "", err
		}
		if _, err = git(ctx, dir, "push", "--quiet", "origin", "HEAD:"+g.Branch); err == nil {
			return git(ctx, dir, "rev-parse", "HEAD")
		}
	}
	return "", err
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}
