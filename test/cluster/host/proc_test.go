package host

import (
	"os/exec"
	"testing"
)

// TestDead: a running process is alive; once it exits, or when its PID is taken by another process (a
// different start time), it is dead.
func TestDead(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	start, err := procStart(pid)
	if err != nil {
		t.Fatal(err)
	}
	running := Proc{Name: "sleep", PID: pid, Start: start}
	reused := Proc{Name: "older", PID: pid, Start: start - 1}
	if Dead([]Proc{reused, running}) {
		t.Error("Dead: true while one process runs")
	}
	if !Dead([]Proc{reused}) {
		t.Error("Dead: false for a PID another process has taken")
	}
	if !Dead(nil) {
		t.Error("Dead: false with no process recorded")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !Dead([]Proc{running}) {
		t.Error("Dead: false after the process exited")
	}
}
