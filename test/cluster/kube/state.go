package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/txmesh/txmesh/test/cluster/host"
)

// state is what teardown needs to undo a cluster, written before each thing it records is created.
type state struct {
	Nodes     []Node            `json:"nodes"`
	Procs     []host.Proc       `json:"procs"`
	Sysctls   map[string]string `json:"sysctls"`    // the machine's values before the cluster started
	NewPaths  []string          `json:"new_paths"`  // paths outside the layout the daemons create, absent before
	EtcdPorts [2]int            `json:"etcd_ports"` // client, peer (loopback)
	HostProxy bool              `json:"host_proxy"` // a kube-proxy ran in the host's namespace (nft tables)
}

func readState(l Layout) (*state, error) {
	b, err := os.ReadFile(l.state())
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("cluster state %s: %w", l.state(), err)
	}
	return &s, nil
}

func writeState(l Layout, s *state) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(l.state()), 0o755); err != nil {
		return err
	}
	tmp := l.state() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, l.state())
}

// hostSysctls are the machine-wide settings the daemons change (the kubelet's kernel tunables among them);
// teardown restores each one that differs from the value recorded at start.
var hostSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet", "net/bridge/bridge-nf-call-iptables",
	"net/netfilter/nf_conntrack_max",
}

func readSysctls() map[string]string {
	out := map[string]string{}
	for _, k := range hostSysctls {
		if b, err := os.ReadFile("/proc/sys/" + k); err == nil {
			out[k] = strings.TrimSpace(string(b))
		}
	}
	return out
}

func restoreSysctls(orig map[string]string) error {
	var errs []error
	for k, v := range orig {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err != nil || strings.TrimSpace(string(b)) == v {
			continue
		}
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", k, v, err))
		}
	}
	return errors.Join(errs...)
}

// foreignPaths are created by containerd, runc, the CNI plugins or the kubelet outside the directories they
// are configured with; teardown removes those that did not exist before the cluster started.
var foreignPaths = []string{
	"/run/containerd", "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/var/lib/kubelet",
	"/usr/libexec/kubernetes", "/etc/cni", "/opt/cni", "/run/netns",
}

func absentPaths() []string {
	var out []string
	for _, p := range foreignPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			out = append(out, p)
		}
	}
	return out
}
