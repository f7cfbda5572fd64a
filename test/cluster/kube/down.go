package kube

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/txmesh/txmesh/test/cluster/host"
)

// Open attaches to the cluster described by the layout's state file.
func Open(l Layout, bin map[string]string, pauseImage string, log io.Writer) (*Cluster, error) {
	st, err := readState(l)
	if err != nil {
		return nil, err
	}
	return &Cluster{layout: l, bin: bin, pause: pauseImage, log: log, st: st}, nil
}

// Healthy reports whether every daemon of the cluster still runs.
func (c *Cluster) Healthy() error {
	c.mu.Lock()
	procs := append([]host.Proc(nil), c.st.Procs...)
	c.mu.Unlock()
	var dead []string
	for _, p := range procs {
		if !p.Alive() {
			dead = append(dead, p.Name)
		}
	}
	if len(dead) > 0 {
		return fmt.Errorf("not running: %s", strings.Join(dead, ", "))
	}
	return nil
}

// Abandoned reports whether none of the cluster's daemons runs: the remains of a run that was killed or of
// a machine that rebooted, which nobody can be using.
func (c *Cluster) Abandoned() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return host.Dead(c.st.Procs)
}

// Down removes everything a cluster made: its processes (by cgroup, by recorded PID, and by any process
// whose command line names the cluster's directories), mounts, network namespaces, the bridge, nft tables,
// changed sysctls, cgroups, directories, and the paths the daemons create outside them. It works without a
// state file (after a crash before the first write, or a second time) and reports what it could not undo.
func Down(l Layout, log io.Writer) error {
	st, err := readState(l)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(log, "cluster down: %v (continuing without it)\n", err)
	}
	if st == nil {
		st = &state{}
	}
	var errs []error
	step := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	step("kill processes", killAll(l, st))
	step("unmount", host.Unmount(l.Dir, l.Run))
	nodes := st.Nodes
	if len(nodes) == 0 {
		for i := 1; i <= 9; i++ {
			nodes = append(nodes, l.newNode(i))
		}
	}
	step("network", teardownNet(l, nodes))
	step("kube-proxy tables", deleteProxyTables(l, st.HostProxy))
	step("sysctls", restoreSysctls(st.Sysctls))
	step("cgroups", host.RemoveCgroup(l.Name))
	for _, p := range st.NewPaths {
		// /run/netns, for one, is a mount point of its own once `ip netns add` made it.
		step("unmount "+p, host.Unmount(p))
		step("remove "+p, os.RemoveAll(p))
	}
	step("container log links", removeLinksInto("/var/log/containers", l.Dir))
	step("remove "+l.Run, os.RemoveAll(l.Run))
	step("remove "+l.Dir, os.RemoveAll(l.Dir))
	if left := Leftovers(l); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(left, "; ")))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fmt.Fprintln(log, "cluster down: nothing of the cluster is left")
	return nil
}

// Leftovers lists what of a cluster exists on the machine: processes naming its directories or in its
// cgroups, its cgroups, network namespaces, links, nft table, mounts and directories. Empty after Down.
func Leftovers(l Layout) []string {
	var out []string
	if pids, _ := host.CgroupPIDs(l.Name); len(pids) > 0 {
		out = append(out, fmt.Sprintf("processes in cgroup %s: %v", l.Name, pids))
	}
	if pids := host.PIDsNaming(l.Dir, l.Run); len(pids) > 0 {
		out = append(out, fmt.Sprintf("processes naming %s or %s: %v", l.Dir, l.Run, pids))
	}
	if roots, err := host.CgroupRoots(); err == nil {
		for _, r := range roots {
			if _, err := os.Stat(filepath.Join(r, l.Name)); err == nil {
				out = append(out, "cgroup "+filepath.Join(r, l.Name))
			}
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), l.Name+"-") {
			out = append(out, "network namespace "+e.Name())
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, e := range links {
		if strings.HasPrefix(e.Name(), l.Bridge) {
			out = append(out, "link "+e.Name())
		}
	}
	if tables, err := host.Run(host.CmdTimeout, "nft", "list", "tables"); err == nil && strings.Contains(tables, l.guardTable()) {
		out = append(out, "nft table "+l.guardTable())
	}
	if m, _ := host.Mounts(l.Dir, l.Run); len(m) > 0 {
		out = append(out, fmt.Sprintf("mounts %v", m))
	}
	for _, d := range []string{l.Dir, l.Run} {
		if _, err := os.Stat(d); err == nil {
			out = append(out, "directory "+d)
		}
	}
	return out
}

func killAll(l Layout, st *state) error {
	host.Thaw(l.Name)
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids, err := host.CgroupPIDs(l.Name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, p := range st.Procs {
			if p.Alive() {
				pids = append(pids, p.PID)
			}
		}
		pids = append(pids, host.PIDsNaming(l.Dir, l.Run)...)
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			if pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes survive SIGKILL: %v", pids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deleteProxyTables removes the nft tables of the host's kube-proxy. Without a state file it removes them
// only when they translate the cluster's Service range (they are then ours).
func deleteProxyTables(l Layout, known bool) error {
	if !known {
		out, err := host.Run(host.CmdTimeout, "nft", "list", "table", "ip", "kube-proxy")
		if err != nil || !strings.Contains(out, fmt.Sprintf("10.%d.", l.Octet+2)) {
			return nil //nolint:nilerr // absent, or another cluster's
		}
	}
	var errs []error
	for _, fam := range []string{"ip", "ip6"} {
		if _, err := host.Run(host.CmdTimeout, "nft", "list", "table", fam, "kube-proxy"); err != nil {
			continue // absent
		}
		if _, err := host.Run(host.CmdTimeout, "nft", "delete", "table", fam, "kube-proxy"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeLinksInto(dir, target string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil //nolint:nilerr // nothing to clean
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, target+"/") {
			if err := os.Remove(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
