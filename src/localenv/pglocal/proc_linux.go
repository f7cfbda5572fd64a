package pglocal

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr runs a server binary as cred, in its own process group, and kills it if the caller dies, so
// that no test or `make run` leaves a PostgreSQL behind.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the backends a SIGKILLed postmaster leaves behind (they exit by themselves once they notice,
// but a new postmaster on the same data directory must not meet them).
// It waits (up to 10 s) until they are gone: a process killed but not yet exited still holds the shared
// memory a new postmaster refuses to start beside.
func killGroup(_ *syscall.Credential, dataDir string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := serverProcesses(dataDir)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serverProcesses lists the PostgreSQL processes working on dataDir: backends rename themselves, so they are
// matched to their postmaster's data directory by their working directory.
func serverProcesses(dataDir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !isServerProcess(cmdline) {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && cwd == dataDir {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isServerProcess reports whether cmdline (/proc/<pid>/cmdline) is a PostgreSQL server process: a postmaster
// or single-user postgres (argv[0] is the postgres binary) or a child that renamed itself ("postgres:
// walsender postgres 127.0.0.1(41234) streaming 0/3018060"; the title may hold a '/', so it is matched as a
// prefix, not as a path).
func isServerProcess(cmdline []byte) bool {
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	return strings.HasPrefix(argv0, "postgres:") || filepath.Base(argv0) == "postgres"
}
