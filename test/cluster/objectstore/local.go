package objectstore

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Local is the gateway run as a process on this machine (tests), on 127.0.0.1, over a directory.
type Local struct {
	Endpoint string // host:port
	cmd      *exec.Cmd
	exited   chan struct{}
	mu       sync.Mutex
	log      bytes.Buffer
	once     sync.Once
}

// StartLocal starts bin (the Component's versitygw) with the Deployment's Args on a free port of 127.0.0.1,
// serving dir with root keys c, and returns once GET /health answers 200. It dies with its parent (the
// test), and Stop kills it.
func StartLocal(bin, dir string, c Credentials) (*Local, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	g := &Local{Endpoint: addr, exited: make(chan struct{})}
	g.cmd = exec.Command(bin, Args(addr, dir)...)
	g.cmd.Env = append(os.Environ(), Env(c)...)
	g.cmd.Stdout, g.cmd.Stderr = g, g
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = g.cmd.Wait(); close(g.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		select {
		case <-g.exited:
			return nil, fmt.Errorf("versitygw exited before serving: %s\n%s", g.cmd.ProcessState, g.Log())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.Stop()
			return nil, fmt.Errorf("versitygw not healthy on %s after 30 s (last: %w)\n%s", addr, err, g.Log())
		}
	}
}

func (g *Local) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.Write(p)
}

// Log is what the gateway has written.
func (g *Local) Log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.String()
}

// Stop kills the gateway's process group and waits for it (safe to repeat).
func (g *Local) Stop() {
	g.once.Do(func() {
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.exited
	})
}
