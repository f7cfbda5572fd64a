package proc

import (
	"errors"
	"iter"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr runs a process as cred, in its own process group (Ctrl-C reaches the caller only, which stops
// things in order; a group kill reaches what the process started), killed when the caller dies.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// stat reads the process group and the start time (clock ticks since boot) of pid from /proc/<pid>/stat;
// ok is false for a process that is gone or a zombie.
func stat(pid int) (pgrp int, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command may hold spaces and parentheses
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // f[k] is field k+3 of proc(5)
	if len(f) < 20 || f[0] == "Z" {
		return 0, 0, false
	}
	pgrp, _ = strconv.Atoi(f[2])
	start, err = strconv.ParseUint(f[19], 10, 64)
	return pgrp, start, err == nil
}

func startTime(pid int) (uint64, error) {
	if _, start, ok := stat(pid); ok {
		return start, nil
	}
	return 0, errors.New("no such process")
}

// All yields the pid of every process on the machine (from /proc).
func All() iter.Seq[int] {
	return func(yield func(int) bool) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if pid, err := strconv.Atoi(e.Name()); err == nil && !yield(pid) {
				return
			}
		}
	}
}

// members lists the live processes of process group pgid that started at or after since.
func members(pgid int, since uint64) []int {
	var pids []int
	for pid := range All() {
		if g, start, ok := stat(pid); ok && g == pgid && start >= since {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killGroup SIGKILLs what is left of process group pgid and waits (10 s at most) until it is gone.
func killGroup(pgid int) { KillAll(func() []int { return members(pgid, 0) }) }

// killRecorded kills a process a dead session started, if it still runs, and its group: the members that
// started after it (a group outlives its leader). A pid that now names another process is left alone.
func killRecorded(pid int, start uint64) {
	if now, err := startTime(pid); err == nil && now != start {
		return
	}
	KillAll(func() []int { return members(pid, start) })
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}
