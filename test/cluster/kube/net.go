package kube

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/txmesh/txmesh/test/cluster/host"
)

// The network: a bridge on the host (the control plane's address) with one veth per node, each node in its
// own network namespace. Node-to-node and pod-to-pod traffic crosses the bridge on direct routes; the host
// reaches pods through routes via the node addresses. Nothing is forwarded off the bridge: the nodes have no
// default route, and an nft table drops anything that would be routed between the bridge and any other
// interface (so no pod reaches an address this machine did not create, whatever ip_forward says).

// checkAddressesFree fails when the machine already routes one of the cluster's ranges (another network
// would be shadowed, or a stale cluster is left).
func checkAddressesFree(l Layout) error {
	nw := l.net()
	out, err := host.Run(host.CmdTimeout, "ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		switch dst {
		case "unicast", "local", "broadcast", "multicast", "blackhole", "unreachable", "prohibit", "throw",
			"anycast", "nat": // a route type comes before the destination
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if dst == "default" {
			continue
		}
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			a, err2 := netip.ParseAddr(dst)
			if err2 != nil {
				continue
			}
			p = netip.PrefixFrom(a, 32)
		}
		for _, mine := range []netip.Prefix{nw.NodeNet, nw.PodNet, nw.ServiceNet} {
			if p.Overlaps(mine) {
				return fmt.Errorf("this machine already routes %s (%q), which overlaps the cluster's %s: "+
					"a cluster is left over (run `make cluster-down`) or another network uses the range", p, line, mine)
			}
		}
	}
	return nil
}

func setupBridge(l Layout) error {
	nw := l.net()
	if err := host.IP("link", "add", l.Bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := host.IP("addr", "add", netip.PrefixFrom(nw.HostIP, nw.NodeNet.Bits()).String(), "dev", l.Bridge); err != nil {
		return err
	}
	if err := host.IP("link", "set", l.Bridge, "up"); err != nil {
		return err
	}
	// The Service range goes to the bridge, so host traffic to a ClusterIP that kube-proxy does not translate
	// never leaves through the machine's own uplink.
	return host.IP("route", "add", nw.ServiceNet.String(), "dev", l.Bridge, "src", nw.HostIP.String())
}

func guardRules(l Layout) string {
	return fmt.Sprintf(`table inet %[1]s {
	chain forward {
		type filter hook forward priority -300; policy accept;
		iifname "%[2]s" oifname != "%[2]s" counter drop comment "cluster traffic never leaves the bridge"
		oifname "%[2]s" iifname != "%[2]s" counter drop comment "nothing from outside is routed into it"
	}
}
`, l.guardTable(), l.Bridge)
}

func setupGuard(l Layout) error {
	f, err := os.CreateTemp("", "txmesh-guard-*.nft")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(guardRules(l)); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = host.Run(host.CmdTimeout, "nft", "-f", f.Name())
	return err
}

func setupNodeNet(l Layout, n Node, all []Node) error {
	nw := l.net()
	ns := n.Netns
	if err := host.IP("netns", "add", ns); err != nil {
		return err
	}
	if err := host.IP("link", "add", n.Veth, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
		return err
	}
	if err := host.IP("link", "set", n.Veth, "master", l.Bridge, "up"); err != nil {
		return err
	}
	steps := [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", netip.PrefixFrom(n.IP, nw.NodeNet.Bits()).String(), "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", nw.ServiceNet.String(), "dev", "eth0", "src", n.IP.String()},
	}
	for _, o := range all {
		if o.Name != n.Name {
			steps = append(steps, []string{"route", "add", o.PodNet.String(), "via", o.IP.String()})
		}
	}
	for _, s := range steps {
		if err := host.IPIn(ns, s...); err != nil {
			return err
		}
	}
	for k, v := range map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/rp_filter": "0"} {
		if err := host.NetnsSysctl(ns, k, v); err != nil {
			return err
		}
	}
	return host.IP("route", "add", n.PodNet.String(), "via", n.IP.String())
}

// CutNode takes the node's link down: it keeps running but reaches nothing and nothing reaches it.
func (c *Cluster) CutNode(name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return host.IP("link", "set", n.Veth, "down")
}

// HealNode brings a cut link back.
func (c *Cluster) HealNode(name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return host.IP("link", "set", n.Veth, "up")
}

// teardownNet removes everything the network setup made; every step tolerates its thing being absent.
func teardownNet(l Layout, nodes []Node) error {
	var errs []error
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), l.Name+"-") {
			if err := host.IP("netns", "delete", e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, n := range nodes {
		// The kernel removes a veth whose peer's namespace was deleted a moment later: gone is fine.
		if host.LinkExists(n.Veth) {
			if err := host.IP("link", "delete", n.Veth); err != nil && host.LinkExists(n.Veth) {
				errs = append(errs, err)
			}
		}
	}
	if host.LinkExists(l.Bridge) {
		if err := host.IP("link", "delete", l.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if out, err := host.Run(host.CmdTimeout, "nft", "list", "tables"); err == nil &&
		strings.Contains(out, "table inet "+l.guardTable()) {
		if _, err := host.Run(host.CmdTimeout, "nft", "delete", "table", "inet", l.guardTable()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// faultTable is the nft table of a node's injected network faults.
const faultTable = "txmesh-fault"

// BlockFromPod drops, on the node, what a pod sends from a TCP port to the given addresses (e.g. a
// PostgreSQL primary's replication stream to its standbys), as a broken link between them would.
func (c *Cluster) BlockFromPod(node, podIP string, port int, dst []string) error {
	n, err := c.node(node)
	if err != nil {
		return err
	}
	rules := fmt.Sprintf(`table inet %s {
	chain forward {
		type filter hook forward priority -300; policy accept;
		ip saddr %s tcp sport %d ip daddr { %s } counter drop
	}
}
`, faultTable, podIP, port, strings.Join(dst, ", "))
	f, err := os.CreateTemp("", "txmesh-fault-*.nft")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(rules); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = host.Run(host.CmdTimeout, host.InNetns(n.Netns, "nft", "-f", f.Name())...)
	return err
}

// UnblockFromPod removes the node's injected network faults.
func (c *Cluster) UnblockFromPod(node string) error {
	n, err := c.node(node)
	if err != nil {
		return err
	}
	_, err = host.Run(host.CmdTimeout, host.InNetns(n.Netns, "nft", "delete", "table", "inet", faultTable)...)
	return err
}
