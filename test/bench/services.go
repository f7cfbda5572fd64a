package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/txmesh/txmesh/src/localenv/proc"
)

// moduleRoot is the directory of the main module's go.mod (the bench builds the real commands from it).
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the txmesh module")
	}
	return filepath.Dir(mod), nil
}

// build compiles the given commands (e.g. "bank", "store") into dir, as `make build` does.
func build(ctx context.Context, root, dir string, cmds ...string) error {
	args := []string{"-trimpath"}
	for _, c := range cmds {
		args = append(args, "./src/cmd/"+c)
	}
	return proc.Build(ctx, root, dir, []string{"CGO_ENABLED=0"}, args...)
}

// commandExists reports whether ./src/cmd/<name> holds Go files (the Store may not have landed yet).
func commandExists(root, name string) bool {
	m, _ := filepath.Glob(filepath.Join(root, "src", "cmd", name, "*.go"))
	return len(m) > 0
}

// startService runs a Bank or Store (`<bin> serve` with env), logging to logPath, and waits until readyURL
// answers 200 through c.
func startService(ctx context.Context, name, bin string, env []string, logPath string, c *http.Client,
	readyURL string) (*proc.Process, error) {
	p, err := proc.Start(proc.Spec{Name: name, Path: bin, Args: []string{"serve"}, Env: env, Log: logPath})
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(ctx, 60*time.Second, proc.HTTPReady(c, readyURL)); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// stop shuts a service down gracefully (SIGTERM; killed after 30 s).
func stop(p *proc.Process) { _ = p.Stop(30 * time.Second) }
