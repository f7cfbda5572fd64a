// Package host is this machine's side of the throwaway cluster: daemons started detached into cgroups and
// network namespaces and recorded by PID and start time, killed by cgroup, mounts found and undone, network
// namespaces and links, short commands with a deadline, waits for a port or socket. Nothing in it knows
// Kubernetes; the cluster (package kube) is made of it, and its teardown works from what is on disk.
package host

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A cluster's processes outlive the command that started them (make cluster-up returns with the cluster
// running), so they are started detached, recorded by PID and start time, and placed in the cluster's own
// cgroups: teardown finds them there even when the state file is gone.

// Proc is one daemon as a cluster's state file records it.
type Proc struct {
	Name  string `json:"name"` // e.g. kubelet/node-1
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // /proc/<pid>/stat starttime, to tell a reused PID apart
	Log   string `json:"log"`
}

// CgroupRoots are the mounted cgroup hierarchies (v1: one per controller; v2: one).
func CgroupRoots() ([]string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[2] != "cgroup" && fields[2] != "cgroup2") {
			continue
		}
		roots = append(roots, fields[1])
	}
	if len(roots) == 0 {
		return nil, errors.New("no cgroup hierarchy is mounted under /sys/fs/cgroup")
	}
	return roots, sc.Err()
}

// makeCgroup creates rel in every hierarchy (cpuset children need cpus and mems before they take a task).
func makeCgroup(rel string) error {
	roots, err := CgroupRoots()
	if err != nil {
		return err
	}
	for _, root := range roots {
		parts := strings.Split(rel, "/")
		for i := range parts {
			dir := filepath.Join(root, filepath.Join(parts[:i+1]...))
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("cgroup %s: %w", dir, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if cur, err := os.ReadFile(filepath.Join(dir, f)); err == nil && strings.TrimSpace(string(cur)) == "" {
					parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
					if err != nil {
						return err
					}
					if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
						return fmt.Errorf("cgroup %s/%s: %w", dir, f, err)
					}
				}
			}
		}
	}
	return nil
}

// Spawn starts argv detached, in netns (when not empty) and in cgroup rel, logging to log. A shell joins the
// cgroup and then execs, so that nothing the daemon forks can start outside it.
func Spawn(name, netns, rel, log string, env []string, argv ...string) (Proc, error) {
	if err := makeCgroup(rel); err != nil {
		return Proc{}, err
	}
	if err := os.MkdirAll(filepath.Dir(log), 0o755); err != nil {
		return Proc{}, err
	}
	out, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Proc{}, err
	}
	defer out.Close()
	if netns != "" {
		argv = InNetns(netns, argv...)
	}
	script := `for f in /sys/fs/cgroup/*/"$0"/cgroup.procs /sys/fs/cgroup/"$0"/cgroup.procs; do
  [ -e "$f" ] && echo $$ > "$f"
done
exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, rel}, argv...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	// Reap it if it exits while we still run; once we exit, init does.
	go func() { _ = cmd.Wait() }()
	start, _ := procStart(pid)
	return Proc{Name: name, PID: pid, Start: start, Log: log}, nil
}

// procStart reads a process's start time (clock ticks since boot), field 22 of /proc/<pid>/stat.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("bad stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Alive reports whether the recorded process is still the one we started (and not a zombie).
func (p Proc) Alive() bool {
	st, err := procStart(p.PID)
	if err != nil || st != p.Start {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// Dead reports whether none of procs runs any more (a reused PID is not the process recorded).
func Dead(procs []Proc) bool {
	for _, p := range procs {
		if p.Alive() {
			return false
		}
	}
	return true
}

// CgroupPIDs lists every process in rel and below, in every hierarchy.
func CgroupPIDs(rel string) ([]int, error) {
	roots, err := CgroupRoots()
	if err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	var pids []int
	for _, root := range roots {
		base := filepath.Join(root, rel)
		err := filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return filepath.SkipDir
				}
				return err
			}
			if !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			if err != nil {
				return nil //nolint:nilerr // a cgroup removed while walking
			}
			for _, l := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(l); err == nil && !seen[pid] {
					seen[pid] = true
					pids = append(pids, pid)
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return pids, nil
}

// KillCgroup SIGKILLs everything in rel (thawing a frozen tree first) until it is empty.
func KillCgroup(rel string, timeout time.Duration) error {
	Thaw(rel)
	deadline := time.Now().Add(timeout)
	for {
		pids, err := CgroupPIDs(rel)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes in cgroup %s survive SIGKILL: %v (stuck in uninterruptible I/O?)", rel, pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Thaw thaws rel and everything below it in the freezer hierarchy (a frozen task ignores SIGKILL until then).
func Thaw(rel string) {
	_ = filepath.WalkDir(filepath.Join("/sys/fs/cgroup/freezer", rel), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.WriteFile(filepath.Join(path, "freezer.state"), []byte("THAWED"), 0o644)
		}
		return nil
	})
}

// RemoveCgroup removes rel and everything below it, deepest first, in every hierarchy.
func RemoveCgroup(rel string) error {
	roots, err := CgroupRoots()
	if err != nil {
		return err
	}
	var errs []error
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(root, rel), func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Run runs a short command and returns its combined output in the error.
func Run(timeout time.Duration, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return buf.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(buf.String()))
		}
		return buf.String(), nil
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return buf.String(), fmt.Errorf("%s: no answer within %s", strings.Join(argv, " "), timeout)
	}
}
