package pglocal

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/txmesh/txmesh/src/localenv/proc"
)

// Backends leave the postmaster's process group (each calls setsid): a group kill or SIGSTOP misses them, so
// they are found through /proc (on Linux; elsewhere nothing is found and a SIGKILLed postmaster's backends
// exit by themselves once they notice).

// killBackends kills the backends a SIGKILLed postmaster leaves behind (they exit by themselves once they
// notice, but a new postmaster on the same data directory must not meet them) and waits until they are gone:
// a process killed but not yet exited still holds the shared memory a new postmaster refuses to start beside.
func killBackends(dataDir string) { proc.KillAll(func() []int { return serverProcesses(dataDir) }) }

// serverProcesses lists the PostgreSQL processes working on dataDir: backends rename themselves, so they are
// matched to their postmaster's data directory by their working directory.
func serverProcesses(dataDir string) []int {
	var pids []int
	for pid := range proc.All() {
		dir := filepath.Join("/proc", strconv.Itoa(pid))
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || !isServerProcess(cmdline) {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join(dir, "cwd")); err == nil && cwd == dataDir {
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
