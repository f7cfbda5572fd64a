package e2e

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/txmesh/txmesh/test/cluster/kube"
)

// memoryBudget: the running cluster with txmesh deployed stays under 4 GiB resident in all.
const memoryBudget = 4 << 30

// memory is the cluster's resident memory: PSS (shared pages — PostgreSQL's shared buffers, the binaries —
// counted once across the processes sharing them) and the plain RSS sum (counting them in every process).
type memory struct {
	PSSBytes  int64            `json:"pss_bytes"`
	RSSBytes  int64            `json:"rss_bytes"`
	Processes int              `json:"processes"`
	ByGroup   map[string]int64 `json:"pss_by_group"` // control plane, node daemons, databases, apps, add-ons
	Budget    int64            `json:"budget_bytes"`
}

func measureMemory(c *kube.Cluster) *memory {
	procs, err := c.Processes()
	if err != nil {
		return nil
	}
	m := &memory{ByGroup: map[string]int64{}, Budget: memoryBudget}
	for pid, cg := range procs {
		pss, rss, comm, ok := readMem(pid)
		if !ok {
			continue
		}
		m.Processes++
		m.PSSBytes += pss
		m.RSSBytes += rss
		m.ByGroup[group(cg, comm)] += pss
	}
	return m
}

func group(cg, comm string) string {
	switch {
	case strings.HasPrefix(cg, "control-plane"):
		return "control plane (etcd, apiserver, controller-manager, scheduler, kube-proxy)"
	case strings.Contains(cg, "/system"):
		return "node daemons (containerd, shims, kubelet, kube-proxy)"
	case comm == "postgres" || comm == "manager":
		return "PostgreSQL instances (6, with their instance managers and the Barman Cloud plugin's)"
	case comm == "bank" || comm == "store":
		return "bank and store pods"
	case comm == "prometheus":
		return "Prometheus"
	default:
		return "add-ons and other pods (CoreDNS, local-path, CloudNativePG operator, pause)"
	}
}

// readMem reads a process's PSS and RSS (kB in smaps_rollup) and its command name.
func readMem(pid int) (pss, rss int64, comm string, ok bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, 0, "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "Pss:":
			pss = v << 10
		case "Rss:":
			rss = v << 10
		}
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return pss, rss, strings.TrimSpace(string(b)), true
}

func (m *memory) String() string {
	var groups []string
	for g, v := range m.ByGroup {
		groups = append(groups, fmt.Sprintf("%s %d MiB", g, v>>20))
	}
	sort.Strings(groups)
	return fmt.Sprintf("PSS %d MiB (RSS sum %d MiB) over %d processes, budget %d MiB: %s", m.PSSBytes>>20,
		m.RSSBytes>>20, m.Processes, m.Budget>>20, strings.Join(groups, "; "))
}
