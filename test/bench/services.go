package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
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
	args := []string{"build", "-trimpath", "-o", dir + string(filepath.Separator)}
	for _, c := range cmds {
		args = append(args, "./src/cmd/"+c)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(cmds, " "), err, out)
	}
	return nil
}

// commandExists reports whether ./src/cmd/<name> holds Go files (the Store may not have landed yet).
func commandExists(root, name string) bool {
	m, _ := filepath.Glob(filepath.Join(root, "src", "cmd", name, "*.go"))
	return len(m) > 0
}

// service is a Bank or Store process.
type service struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startService(name, bin string, env []string, logPath string) (*service, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &service{name: name, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); logf.Close() }()
	return s, nil
}

func (s *service) pid() int { return s.cmd.Process.Pid }

// waitReady polls url until it answers 200.
func (s *service) waitReady(ctx context.Context, c *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-s.done:
			b, _ := os.ReadFile(s.log)
			return fmt.Errorf("%s exited during start-up (%w): %s", s.name, err, tail(b))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", s.name, url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits; a service that does not stop in time is killed.
func (s *service) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// kill stops the process at once (SIGKILL).
func (s *service) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}
