//go:build linux

package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	_, err := startTime(pid)
	return err == nil
}

func state(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
}

// waitState waits until pid's state satisfies ok (a signal takes effect asynchronously).
func waitState(t *testing.T, pid int, ok func(string) bool, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s := state(t, pid); !ok(s); s = state(t, pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d in state %s, want %s", pid, s, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPID waits for a shell to write a pid into path.
func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing written to %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still runs", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A shell that starts a child in its own process group and waits for it: the child is what a kill of the
// shell alone would leave behind.
func withChild(pidFile string) Spec {
	return Spec{Name: "sh", Path: "/bin/sh", Args: []string{"-c", `sleep 300 & echo $! > "$0"; wait`, pidFile}}
}

// TestKillTakesTheGroup: kill -9 of a service must not leave its children running (they would hold its
// port or its files when it restarts).
func TestKillTakesTheGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	p, err := Start(withChild(pidFile))
	if err != nil {
		t.Fatal(err)
	}
	child := readPID(t, pidFile)
	if !p.Kill() {
		t.Fatal("Kill: not running")
	}
	if p.Running() || alive(p.PID()) {
		t.Fatal("the process survived Kill")
	}
	waitGone(t, "its child", child)
	if p.Kill() {
		t.Fatal("a second Kill found it running")
	}
}

// TestStopThenRestart: Stop is a graceful shutdown when the process takes it and a kill when it does not;
// Start runs it again with the same spec (and an environment changed by Setenv), appending to the same log.
func TestStopThenRestart(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	p, err := Start(Spec{Name: "obliging", Path: "/bin/sh", Log: log, Env: []string{"WORD=first"},
		Args: []string{"-c", `echo "$WORD"; trap 'echo bye; exit 0' TERM; while :; do sleep 0.05; done`}})
	if err != nil {
		t.Fatal(err)
	}
	first := p.PID()
	time.Sleep(200 * time.Millisecond)
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop of a process that exits on SIGTERM: %v", err)
	}
	p.Setenv("WORD", "second")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if p.PID() == first || !p.Running() {
		t.Fatalf("not restarted: pid %d (was %d), running %v", p.PID(), first, p.Running())
	}
	time.Sleep(200 * time.Millisecond)
	p.Kill()
	if b, _ := os.ReadFile(log); string(b) != "first\nbye\nsecond\n" {
		t.Fatalf("log across restarts: %q", b)
	}

	stubborn, err := Start(Spec{Name: "stubborn", Path: "/bin/sh",
		Args: []string{"-c", `trap '' TERM; while :; do sleep 0.05; done`}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := stubborn.Stop(300 * time.Millisecond); !errors.Is(err, ErrKilled) {
		t.Fatalf("Stop of a process that ignores SIGTERM: %v, want ErrKilled", err)
	}
	if stubborn.Running() {
		t.Fatal("still running after Stop")
	}
}

// TestPauseResume: Pause freezes the whole group (the lab's stalled peer), Resume thaws it.
func TestPauseResume(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	p, err := Start(withChild(pidFile))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	child := readPID(t, pidFile)
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{p.PID(), child} {
		waitState(t, pid, func(s string) bool { return s == "T" }, "stopped (T) after Pause")
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{p.PID(), child} {
		waitState(t, pid, func(s string) bool { return s != "T" }, "running after Resume")
	}
}

// TestWaitReady: a process that dies while starting is reported at once, with its log; one that becomes
// ready is seen to.
func TestWaitReady(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p, err := Start(Spec{Name: "crasher", Path: "/bin/sh", Args: []string{"-c", "echo 'bad config: PORT'; exit 3"},
		Log: filepath.Join(dir, "crasher.log")})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = p.WaitReady(ctx, time.Minute, func(context.Context) error { return errors.New("not yet") })
	if err == nil || !strings.Contains(err.Error(), "exited during start-up") ||
		!strings.Contains(err.Error(), "bad config: PORT") || time.Since(began) > 30*time.Second {
		t.Fatalf("WaitReady on a crashing process: %v after %s", err, time.Since(began))
	}

	flag := filepath.Join(dir, "ready")
	slow, err := Start(Spec{Name: "slow", Path: "/bin/sh", Args: []string{"-c", `sleep 0.3; : > "$0"; sleep 300`, flag}})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Kill()
	if err := slow.WaitReady(ctx, time.Minute, func(context.Context) error {
		_, err := os.Stat(flag)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	err = slow.WaitReady(ctx, 200*time.Millisecond, func(context.Context) error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "not ready after 200ms") || !strings.Contains(err.Error(), "never") {
		t.Fatalf("WaitReady past its timeout: %v", err)
	}
}

// TestRunKillsTheGroupOnCancel: a one-shot command cut short takes what it started with it.
func TestRunKillsTheGroupOnCancel(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := Run(ctx, withChild(pidFile)); done <- err }()
	child := readPID(t, pidFile)
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Run: no error after its context ended")
	}
	waitGone(t, "the child of a cancelled Run", child)

	out, err := Run(context.Background(), Spec{Name: "failing", Path: "/bin/sh", Args: []string{"-c", "echo why; exit 2"}})
	if err == nil || string(out) != "why\n" || !strings.Contains(err.Error(), "failing: exit status 2: why") {
		t.Fatalf("Run of a failing command: %q, %v", out, err)
	}
}

// TestReapAfterCrash: a caller killed with SIGKILL leaves a session; the next one kills what the
// parent-death signal did not reach (a grandchild) and removes the session, apart from a kept directory.
// A live session is left alone.
func TestReapAfterCrash(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashingCaller$", "-test.v")
	cmd.Env = append(os.Environ(), "PROC_TEST_HELPER=1", "TMPDIR="+tmp)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var shell, child int
	var scratch, kept string
	for sc.Scan() {
		if _, err := fmt.Sscan(sc.Text(), &shell, &child, &scratch, &kept); err == nil {
			break
		}
	}
	if child == 0 {
		_ = cmd.Process.Kill()
		t.Fatal("the helper reported nothing")
	}
	_ = cmd.Process.Kill() // a crash: no deferred cleanup runs
	_ = cmd.Wait()
	waitGone(t, "the helper's process (parent-death signal)", shell)
	if !alive(child) {
		t.Fatal("the grandchild died with the helper: nothing left for the reaper to prove")
	}
	root := filepath.Join(tmp, filepath.Base(Root()))
	mine, err := newSession(root) // a live session beside the dead one
	if err != nil {
		t.Fatal(err)
	}
	reap(root)
	waitGone(t, "the dead session's grandchild", child)
	if _, err := os.Stat(scratch); !os.IsNotExist(err) {
		t.Fatalf("scratch directory of the dead session: %v, want it removed", err)
	}
	if _, err := os.Stat(filepath.Join(kept, "data")); err != nil {
		t.Fatalf("kept directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mine, "lock")); err != nil {
		t.Fatalf("the live session was reaped: %v", err)
	}
}

// TestHelperCrashingCaller is TestReapAfterCrash's caller that crashes: it starts a shell with a child and
// makes a scratch and a kept directory, reports them, and waits to be killed.
func TestHelperCrashingCaller(t *testing.T) {
	if os.Getenv("PROC_TEST_HELPER") == "" {
		t.Skip("run by TestReapAfterCrash")
	}
	scratch, err := TempDir("scratch-")
	if err != nil {
		t.Fatal(err)
	}
	kept, err := TempDir("kept-")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{scratch, kept} {
		if err := os.WriteFile(filepath.Join(d, "data"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Keep(kept); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(scratch, "child")
	p, err := Start(withChild(pidFile))
	if err != nil {
		t.Fatal(err)
	}
	child := readPID(t, pidFile)
	os.Stdout.WriteString(strconv.Itoa(p.PID()) + " " + strconv.Itoa(child) + " " + scratch + " " + kept + "\n")
	_ = syscall.Pause()
}
