// Package proc starts throwaway processes — the Bank and the Store, pgbench, PostgreSQL's server binaries, the
// go command — for the tests, `make run`, the benchmark and the HA lab, breaks them (kill -9, SIGTERM,
// SIGSTOP) and cleans up after them even when the caller crashes: each runs in its own process group and,
// on Linux, is killed when the caller dies; their scratch directories live in a per-process session
// directory that the next caller reaps when its owner died without removing it (see TempDir).
//
// It uses the standard library only, so that a module with other dependencies (test/cluster) can adopt it.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec describes a process.
type Spec struct {
	Name string   // for errors and logs, e.g. "bank-1"
	Path string   // the binary (looked up in PATH when it has no separator)
	Args []string // arguments after the binary
	Env  []string // added to the caller's environment, later entries winning
	Dir  string   // working directory; the caller's when empty
	// Log receives stdout and stderr, appended across restarts. When empty, they go to Stdout and Stderr
	// (discarded when nil), and Run returns them.
	Log            string
	Stdout, Stderr io.Writer
	Cred           *syscall.Credential // run as another user (PostgreSQL when the caller is root)
	StopSignal     syscall.Signal      // what Stop sends first; SIGTERM when 0 (PostgreSQL: SIGINT)
}

// ErrKilled is wrapped by Stop's error when the process had to be killed.
var ErrKilled = errors.New("killed")

// Process is a long-running process that can be started again with the same Spec after it was killed or
// stopped.
type Process struct {
	mu   sync.Mutex
	spec Spec
	cmd  *exec.Cmd     // nil when not running
	pid  int           // of the current or last run
	done chan struct{} // closed when the current (or last) run exits
	err  error         // the last run's exit status
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// New returns a Process that has not started.
func New(spec Spec) *Process { return &Process{spec: spec, done: closed} }

// Start starts a new Process.
func Start(spec Spec) (*Process, error) {
	p := New(spec)
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Process) command(ctx context.Context) (*exec.Cmd, *os.File, error) {
	cmd := exec.CommandContext(ctx, p.spec.Path, p.spec.Args...)
	cmd.Dir = p.spec.Dir
	cmd.Env = append(os.Environ(), p.spec.Env...)
	cmd.SysProcAttr = sysProcAttr(p.spec.Cred)
	cmd.Stdout, cmd.Stderr = p.spec.Stdout, p.spec.Stderr
	if p.spec.Log == "" {
		return cmd, nil, nil
	}
	logf, err := os.OpenFile(p.spec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	return cmd, logf, nil
}

// Start starts the process unless it runs already.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	cmd, logf, err := p.command(context.Background())
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return fmt.Errorf("start %s: %w", p.spec.Name, err)
	}
	record(cmd.Process.Pid)
	done := make(chan struct{})
	p.cmd, p.pid, p.done = cmd, cmd.Process.Pid, done
	go func() {
		err := cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		p.mu.Lock()
		p.cmd, p.err = nil, err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// current is the running command (nil when none) and the channel its exit closes.
func (p *Process) current() (*exec.Cmd, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// Name is Spec.Name.
func (p *Process) Name() string { return p.spec.Name }

// Log is Spec.Log.
func (p *Process) Log() string { return p.spec.Log }

// PID is the process id of the current run, or of the last one once it exited (0 before the first start).
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Running reports whether the process runs.
func (p *Process) Running() bool {
	cmd, _ := p.current()
	return cmd != nil
}

// Done is closed when the current run exits (already closed when the process does not run).
func (p *Process) Done() <-chan struct{} {
	_, done := p.current()
	return done
}

// Err is the exit status of the last run that ended (nil for a clean exit).
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Setenv changes one variable of Spec.Env for the next Start.
func (p *Process) Setenv(name, value string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	env := make([]string, 0, len(p.spec.Env)+1)
	for _, e := range p.spec.Env {
		if !strings.HasPrefix(e, name+"=") {
			env = append(env, e)
		}
	}
	p.spec.Env = append(env, name+"="+value)
}

// Kill sends SIGKILL (a crash: no shutdown, no cleanup), waits for the exit, then kills whatever is left in
// the process group. It reports whether the process was running.
func (p *Process) Kill() bool {
	cmd, done := p.current()
	if cmd == nil {
		return false
	}
	_ = cmd.Process.Kill()
	<-done
	killGroup(cmd.Process.Pid)
	return true
}

// Stop asks the process to shut down (Spec.StopSignal) and waits up to timeout, then kills it. The error
// wraps ErrKilled when it had to be killed, or is the exit status of an unclean exit; nil when the process
// exited cleanly or was not running.
func (p *Process) Stop(timeout time.Duration) error {
	cmd, done := p.current()
	if cmd == nil {
		return nil
	}
	sig := p.spec.StopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	_ = cmd.Process.Signal(sig)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT) // a paused process would not act on it
	select {
	case <-done:
		return p.Err()
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s after %s: %w", p.spec.Name, timeout, sig, ErrKilled)
	}
}

// KillAll SIGKILLs the processes find lists until it lists none (10 s at most): a process killed but not yet
// gone may still hold what its successor needs (a port, PostgreSQL's shared memory).
func KillAll(find func() []int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := find()
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Pause stops the process group (SIGSTOP): alive, connections open, answering nothing, as a frozen machine.
func (p *Process) Pause() error { return p.signalGroup(syscall.SIGSTOP) }

// Resume ends Pause (SIGCONT).
func (p *Process) Resume() error { return p.signalGroup(syscall.SIGCONT) }

func (p *Process) signalGroup(sig syscall.Signal) error {
	cmd, _ := p.current()
	if cmd == nil {
		return fmt.Errorf("%s is not running", p.spec.Name)
	}
	return syscall.Kill(-cmd.Process.Pid, sig)
}

// WaitReady calls ready every 50 ms until it returns nil. It fails at once when the process exits (quoting
// the end of its log), when timeout has passed (quoting ready's last error), or when ctx ends.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, done := p.current()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited during start-up (%w): %s", p.spec.Name, p.Err(), p.Tail())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w (last: %w)%s", p.spec.Name, timeout, ctx.Err(), err,
				p.see())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *Process) see() string {
	if p.spec.Log == "" {
		return ""
	}
	return "; see " + p.spec.Log
}

// Tail is the end of the log (the last 2,000 bytes), "" without one.
func (p *Process) Tail() string {
	if p.spec.Log == "" {
		return ""
	}
	b, _ := os.ReadFile(p.spec.Log)
	return tail(b)
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// HTTPReady is a WaitReady check: GET url answers 200.
func HTTPReady(c *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// Run runs a command to completion in its own process group; when ctx ends (or the caller dies) the group is
// killed. Without Log, Stdout and Stderr, the output is returned and its end quoted in the error. Whatever
// the command left running in its group is killed when it exits.
func Run(ctx context.Context, spec Spec) ([]byte, error) {
	p := New(spec)
	cmd, logf, err := p.command(ctx)
	if err != nil {
		return nil, err
	}
	if logf != nil {
		defer logf.Close()
	}
	var out bytes.Buffer
	capture := spec.Log == "" && spec.Stdout == nil && spec.Stderr == nil
	if capture {
		cmd.Stdout, cmd.Stderr = &out, &out
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	record(cmd.Process.Pid)
	err = cmd.Wait()
	killGroup(cmd.Process.Pid)
	if err != nil {
		if capture {
			return out.Bytes(), fmt.Errorf("%s: %w: %s", spec.Name, err, tail(out.Bytes()))
		}
		return out.Bytes(), fmt.Errorf("%s: %w", spec.Name, err)
	}
	return out.Bytes(), nil
}

// Build compiles Go packages into the directory out: `go build -o out/ args...` run in dir, with env added
// to the environment. With no env it shares the build cache with go test, which has compiled the same
// packages with the same settings.
func Build(ctx context.Context, dir, out string, env []string, args ...string) error {
	_, err := Run(ctx, Spec{Name: "go build", Path: "go", Dir: dir, Env: env,
		Args: append([]string{"build", "-o", out + string(filepath.Separator)}, args...)})
	return err
}

// WithBuild is a TestMain body: it builds pkgs into a BuildDir, sets *bin to it, calls run (m.Run) and
// removes the directory; it returns run's exit code, or 1 when the build failed (saying why).
func WithBuild(bin *string, run func() int, dir string, pkgs ...string) int {
	var err error
	if *bin, err = BuildDir(dir, pkgs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(*bin)
	return run()
}

// BuildDir builds Go packages (`go build` in dir, the go command's own settings) into a new TempDir and
// returns it; the caller removes it. It is for TestMain, before m.Run starts go test's -timeout clock:
// compiling is the go command's work, which go test does not time for the test binary either, and on a cold
// build cache with other work on two cores it takes minutes (14 min measured for the Bank and the Store).
func BuildDir(dir string, pkgs ...string) (string, error) {
	out, err := TempDir("bin-")
	if err != nil {
		return "", err
	}
	if err := Build(context.Background(), dir, out, nil, pkgs...); err != nil {
		_ = os.RemoveAll(out)
		return "", err
	}
	return out, nil
}
