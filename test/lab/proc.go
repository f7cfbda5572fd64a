package lab

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one service process (a Bank or a Store) that the lab starts, kills with SIGKILL and restarts with
// the same command line and environment; its output is appended to one log file across restarts.
type proc struct {
	name, bin, log string
	args, env      []string

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	kills int
}

func newProc(name, bin, log string, args, env []string) *proc {
	return &proc{name: name, bin: bin, log: log, args: args, env: env}
}

// start runs the process unless it runs already.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		_ = cmd.Wait()
		logf.Close()
		p.mu.Lock()
		if p.cmd == cmd {
			p.cmd = nil
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// kill sends SIGKILL (a crash: no drain, no deferred cleanup) and waits for the exit. It reports whether the
// process was running.
func (p *proc) kill() bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd != nil {
		p.kills++
	}
	p.mu.Unlock()
	if cmd == nil {
		return false
	}
	_ = cmd.Process.Kill()
	<-done
	return true
}

// stop sends SIGTERM (a graceful shutdown) and waits up to timeout, then kills.
func (p *proc) stop(timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.name, timeout)
	}
}
