package pglocal

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr runs a server binary as cred, in its own process group, and kills it if the caller dies, so
// that no test or `make run` leaves a PostgreSQL behind.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the backends a SIGKILLed postmaster leaves behind (they exit by themselves once they notice,
// but a new postmaster on the same data directory must not meet them).
func killGroup(_ *syscall.Credential, dataDir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.HasPrefix(filepath.Base(strings.SplitN(string(cmdline), "\x00", 2)[0]), "postgres") {
			continue
		}
		// Backends rename themselves ("postgres: user db ..."); match them by their postmaster's data dir via cwd.
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && cwd == dataDir {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
