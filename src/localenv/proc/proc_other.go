//go:build !linux

package proc

import (
	"errors"
	"iter"
	"syscall"
)

// Without /proc and the parent-death signal: own process group, a group kill, no reaping of processes (their
// directories are still reaped).
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}

// All yields nothing: there is no /proc to list processes from.
func All() iter.Seq[int] { return func(func(int) bool) {} }

func startTime(int) (uint64, error) { return 0, errors.New("process start times need /proc") }

func killGroup(pgid int) { _ = syscall.Kill(-pgid, syscall.SIGKILL) }

func killRecorded(int, uint64) {}

func bootID() string { return "" }
