package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A session is one caller process's directory under Root(): a lock file the caller holds (flock) for as long
// as it lives, the processes it started (pid and start time), and the scratch directories TempDir made. A
// session whose lock is free belongs to a caller that died: the next session to start (the first TempDir,
// Start or Run of any later caller) kills what is left of its processes and removes it, apart from the
// directories Keep marked.
var (
	sessionOnce sync.Once
	sessionDir  string
	sessionErr  error
	sessionMu   sync.Mutex // appends to the session's files
)

// Root is the directory holding every caller's session (one per user: a server running as another user must
// traverse it, so it is world-readable).
func Root() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("txmesh-localenv-%d", os.Geteuid()))
}

func session() (string, error) {
	sessionOnce.Do(func() { sessionDir, sessionErr = newSession(Root()) })
	return sessionDir, sessionErr
}

func newSession(root string) (string, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	fi, err := os.Lstat(root)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() || !ownedByMe(fi) {
		return "", fmt.Errorf("%s is not a directory of this user", root)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return "", err
	}
	reap(root)
	dir, err := os.MkdirTemp(root, strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	// The lock is taken under another name and then renamed, so that a "lock" file is always held by a live
	// owner or by nobody (its owner died); the descriptor stays open (and not inherited) until we exit.
	f, err := os.OpenFile(filepath.Join(dir, "lock.new"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return "", fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if _, err := f.WriteString(bootID()); err != nil {
		f.Close()
		return "", err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, "lock")); err != nil {
		f.Close()
		return "", err
	}
	sessions = append(sessions, f) // never closed: the lock lives as long as this process
	return dir, nil
}

var sessions []*os.File

// TempDir creates a new scratch directory (mode 0755: a server running as another user may work below it)
// in this process's session. Remove it when done; after a crash the next session removes it, unless Keep
// marked it.
func TempDir(prefix string) (string, error) {
	s, err := session()
	if err != nil {
		return "", fmt.Errorf("session directory: %w", err)
	}
	dir, err := os.MkdirTemp(s, prefix)
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o755)
}

func ownedByMe(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// Keep marks a directory made by TempDir to survive the reaping of its session (data and logs a user asked
// to keep). Other directories are left alone anyway: it does nothing for them.
func Keep(dir string) error {
	s, err := session()
	if err != nil || filepath.Dir(dir) != s {
		return err
	}
	return appendLine(filepath.Join(s, "kept"), filepath.Base(dir))
}

// record notes a process this session started, for the reaper. Best effort: without a session directory
// the parent-death signal alone cleans up.
func record(pid int) {
	s, err := session()
	if err != nil {
		return
	}
	if start, err := startTime(pid); err == nil {
		_ = appendLine(filepath.Join(s, "procs"), fmt.Sprintf("%d %d", pid, start))
	}
}

func appendLine(path, line string) error {
	sessionMu.Lock()
	defer sessionMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	return errors.Join(err, f.Close())
}

// reap removes the sessions under root whose owner died: it kills their processes that still run (and what
// is left in their process groups), then removes everything but the kept directories.
func reap(root string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.IsDir() {
			reapSession(filepath.Join(root, e.Name()))
		}
	}
}

func reapSession(dir string) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err != nil {
		// No lock yet: a session being created, or one whose owner died before it had one.
		if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) > time.Minute {
			_ = os.RemoveAll(dir)
		}
		return
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return // its owner lives
	}
	boot, _ := os.ReadFile(f.Name())
	if string(boot) == bootID() { // after a reboot the pids mean nothing
		procs, _ := os.ReadFile(filepath.Join(dir, "procs"))
		for _, line := range strings.Split(string(procs), "\n") {
			var pid int
			var start uint64
			if _, err := fmt.Sscan(line, &pid, &start); err == nil {
				killRecorded(pid, start)
			}
		}
	}
	// Everything but the kept directories goes first, then the session itself if none is left.
	kept := map[string]bool{"lock": true, "kept": true}
	if b, err := os.ReadFile(filepath.Join(dir, "kept")); err == nil {
		for _, k := range strings.Fields(string(b)) {
			kept[k] = true
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !kept[e.Name()] {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	entries, _ = os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "lock" && e.Name() != "kept" {
			return // the lock and the list stay with them, for the next reaper
		}
	}
	_ = os.RemoveAll(dir)
}
