package images_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// containerd is a throwaway containerd (Debian's 1.6) with its own root, state and sockets under a test
// directory, the CRI plugin and unused snapshotters off, images and containers in namespace k8s.io.
type containerd struct {
	t       *testing.T
	dir     string
	address string
	cgroup  string // parent of the containers' cgroups
	cmd     *exec.Cmd
	ids     []string // containers created, for the shim sockets they leave
}

const containerdNamespace = "k8s.io"

// startContainerd starts containerd and stops it at the end of the test: containers, daemon, shims (by
// PID, found through this daemon's socket), mounts under its directories, cgroups, and the shim sockets
// containerd 1.6 always puts under /run/containerd/s.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("containerd needs root (it mounts overlays and runs runc)")
	}
	for tool, pkg := range map[string]string{"containerd": "containerd", "ctr": "containerd",
		"containerd-shim-runc-v2": "containerd", "runc": "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install %s (.ci/run installs it)", tool, pkg)
		}
	}
	dir := t.TempDir()
	c := &containerd{t: t, dir: dir, address: filepath.Join(dir, "containerd.sock"),
		cgroup: fmt.Sprintf("txmesh-images-test-%d", os.Getpid())}
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.native",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""

[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.address, c.address+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	_, runDirErr := os.Stat("/run/containerd")
	c.cmd = exec.Command("containerd", "--config", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() { c.stop(exited, os.IsNotExist(runDirErr)) })

	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.ctrErr("version"); err == nil {
			return c
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("containerd exited: %v\n%s", err, c.log())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not answering on %s after 30 s\n%s", c.address, c.log())
		}
	}
}

// ctr runs ctr against this containerd and fails the test on an error.
func (c *containerd) ctr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.ctrErr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c *containerd) ctrErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.address, "--namespace", containerdNamespace}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// runArgs are the `ctr run` options that keep runc's state, the IO fifos and the cgroups under this
// test's names.
func (c *containerd) runArgs(id string) []string {
	c.ids = append(c.ids, id)
	return []string{"--runc-root", filepath.Join(c.dir, "runc"), "--fifo-dir", filepath.Join(c.dir, "fifo"),
		"--cgroup", "/" + c.cgroup + "/" + id}
}

// run runs a container to completion (`ctr run --rm`) and returns its output.
func (c *containerd) run(ref, id string, extra []string, args ...string) (string, error) {
	a := append(append([]string{"run", "--rm"}, c.runArgs(id)...), extra...)
	return c.ctrErr(append(append(a, ref, id), args...)...)
}

// start starts a detached container logging to a file, and returns its host PID and log path.
func (c *containerd) start(t *testing.T, ref, id string, extra []string, args ...string) (int, string) {
	t.Helper()
	logPath := filepath.Join(c.dir, id+".log")
	a := append(append([]string{"run", "-d", "--log-uri", "file://" + logPath}, c.runArgs(id)...), extra...)
	c.ctr(t, append(append(a, ref, id), args...)...)
	for _, line := range strings.Split(c.ctr(t, "tasks", "ls"), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("task %s: %q", id, line)
			}
			return pid, logPath
		}
	}
	t.Fatalf("task %s not listed", id)
	return 0, ""
}

// stopTask sends SIGTERM, waits for the task to stop and deletes it and its container.
func (c *containerd) stopTask(t *testing.T, id string) {
	t.Helper()
	c.ctr(t, "tasks", "kill", "--signal", "SIGTERM", id)
	deadline := time.Now().Add(30 * time.Second)
	for !c.taskStopped(t, id) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still running 30 s after SIGTERM", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.ctr(t, "tasks", "delete", id)
	c.ctr(t, "containers", "delete", id)
}

func (c *containerd) taskStopped(t *testing.T, id string) bool {
	for _, line := range strings.Split(c.ctr(t, "tasks", "ls"), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == id {
			return f[2] == "STOPPED"
		}
	}
	return true
}

func (c *containerd) log() string {
	raw, _ := os.ReadFile(filepath.Join(c.dir, "containerd.log"))
	if len(raw) > 4000 {
		raw = append([]byte("…"), raw[len(raw)-4000:]...)
	}
	return strings.TrimSpace(string(raw))
}

func (c *containerd) stop(exited chan error, removeRunDir bool) {
	t := c.t
	if t.Failed() {
		t.Logf("containerd log:\n%s", c.log())
	}
	// Containers first, while the daemon still answers.
	if out, err := c.ctrErr("containers", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = c.ctrErr("tasks", "kill", "--signal", "SIGKILL", id)
			_, _ = c.ctrErr("tasks", "delete", "--force", id)
			_, _ = c.ctrErr("containers", "delete", id)
		}
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	for _, pid := range shimPIDs(c.address) {
		t.Logf("killing leftover shim %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	unmountUnder(t, c.dir)
	for _, id := range c.ids {
		// containerd 1.6 derives a shim's socket from daemon address, namespace and container ID.
		sock := fmt.Sprintf("/run/containerd/s/%x", sha256.Sum256([]byte(filepath.Join(c.address, containerdNamespace, id))))
		if err := os.Remove(sock); err == nil {
			t.Logf("removed leftover %s", sock)
		}
	}
	if removeRunDir { // only empty directories, in case another containerd started meanwhile
		for _, d := range []string{"/run/containerd/s", "/run/containerd/fifo", "/run/containerd/runc/" + containerdNamespace, "/run/containerd/runc", "/run/containerd"} {
			_ = os.Remove(d)
		}
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/" + c.cgroup)
	for _, d := range cgroups {
		subs, _ := filepath.Glob(filepath.Join(d, "*", "cgroup.procs"))
		for _, s := range subs {
			_ = os.Remove(filepath.Dir(s))
		}
		if err := os.Remove(d); err != nil {
			t.Errorf("cgroup %s left: %v", d, err)
		}
	}
}

// shimPIDs lists the shims serving the daemon at address.
func shimPIDs(address string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(raw), "\x00")
		if len(args) > 0 && strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && strings.Contains(string(raw), "\x00"+address+"\x00") {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		t.Logf("unmounting leftover %s", p)
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", p, err)
		}
	}
}

// procIDs returns a process's real uid and gid and its command line.
func procIDs(t *testing.T, pid int) (uid, gid string, args []string) {
	t.Helper()
	// A task just started may still be in runc's init or inside its execve (an empty cmdline): read it once
	// it runs the image's program.
	var cmdline []byte
	for deadline := time.Now().Add(5 * time.Second); ; {
		cmdline, _ = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if (len(cmdline) > 0 && !strings.HasPrefix(string(cmdline), "runc")) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "Uid:" {
			uid = f[1]
		}
		if len(f) > 1 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	return uid, gid, strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
}
