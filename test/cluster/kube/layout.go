package kube

import (
	"fmt"
	"net/netip"
	"path/filepath"
)

// Net is a cluster's addressing, derived from Layout.Octet: private ranges chosen to be unlikely on a
// developer machine; Start refuses to run when the machine already routes any of them.
type Net struct {
	HostIP     netip.Addr   // the control plane, on the host side of the node bridge (10.O.0.1)
	NodeNet    netip.Prefix // 10.O.0.0/24: the nodes' addresses
	PodNet     netip.Prefix // 10.O+1.0.0/16: a /24 per node
	ServiceNet netip.Prefix // 10.O+2.0.0/16
	APIService netip.Addr   // the `kubernetes` Service, first of the range
	DNSService netip.Addr   // CoreDNS
}

func (l Layout) net() Net {
	o := l.Octet
	return Net{
		HostIP:     netip.AddrFrom4([4]byte{10, o, 0, 1}),
		NodeNet:    netip.PrefixFrom(netip.AddrFrom4([4]byte{10, o, 0, 0}), 24),
		PodNet:     netip.PrefixFrom(netip.AddrFrom4([4]byte{10, o + 1, 0, 0}), 16),
		ServiceNet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, o + 2, 0, 0}), 16),
		APIService: netip.AddrFrom4([4]byte{10, o + 2, 0, 1}),
		DNSService: netip.AddrFrom4([4]byte{10, o + 2, 0, 10}),
	}
}

const (
	apiPort     = 6443
	clusterName = "txmesh"
)

// Zones the nodes are spread over (topology.kubernetes.io/zone), one per node for three nodes.
var zones = []string{"zone-a", "zone-b", "zone-c"}

// Node is one simulated machine: its own network namespace, containerd, kubelet and kube-proxy.
type Node struct {
	Name   string // Kubernetes node name and hostname label, e.g. node-1
	Index  int    // 1-based
	Zone   string
	IP     netip.Addr
	PodNet netip.Prefix
	Netns  string // its network namespace (under /run/netns)
	Veth   string // the host end of its link, on the bridge: cutting the node = setting it down
	Cgroup string // its daemons and, below kubepods, its containers: killing the node kills all of it
}

func (l Layout) newNode(i int) Node {
	o := l.Octet
	name := fmt.Sprintf("node-%d", i)
	return Node{
		Name:   name,
		Index:  i,
		Zone:   zones[(i-1)%len(zones)],
		IP:     netip.AddrFrom4([4]byte{10, o, 0, byte(10 + i)}),
		PodNet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, o + 1, byte(i), 0}), 24),
		Netns:  l.Name + "-" + name,
		Veth:   fmt.Sprintf("%sn%d", l.Bridge, i),
		Cgroup: l.Name + "/" + name,
	}
}

// Layout names a cluster's things: Name (its cgroup, the prefix of its network namespaces and nft tables),
// Bridge (its host bridge; the nodes' links are named after it), Octet (its address ranges, see Net), Dir
// for what persists while it runs (etcd, kubelet and containerd roots, volumes, logs, kubeconfig) and Run for
// runtime state that a reboot clears. Two layouts that differ in all of them can run side by side.
type Layout struct {
	Name   string
	Bridge string
	Octet  byte
	Dir    string
	Run    string
}

// DefaultLayout is the cluster of make cluster-up and make e2e.
func DefaultLayout() Layout {
	return Layout{Name: "txmesh-cluster", Bridge: "txmbr0", Octet: 250, Dir: "/var/lib/txmesh-cluster",
		Run: "/run/txmesh-cluster"}
}

func (l Layout) guardTable() string { return l.Name + "-guard" }

func (l Layout) state() string      { return filepath.Join(l.Dir, "state.json") }
func (l Layout) Kubeconfig() string { return filepath.Join(l.Dir, "kubeconfig") }
func (l Layout) pki() string        { return filepath.Join(l.Dir, "pki") }
func (l Layout) logs() string       { return filepath.Join(l.Dir, "logs") }
func (l Layout) etcd() string       { return filepath.Join(l.Dir, "etcd") }
func (l Layout) control() string    { return filepath.Join(l.Dir, "control-plane") }
func (l Layout) node(n Node) string { return filepath.Join(l.Dir, n.Name) }
func (l Layout) nodeRun(n Node) string {
	return filepath.Join(l.Run, n.Name)
}
func (l Layout) containerdSock(n Node) string {
	return filepath.Join(l.nodeRun(n), "containerd.sock")
}

// VolumesDir is where the local-path provisioner keeps a node's volumes.
func (l Layout) VolumesDir(n Node) string { return filepath.Join(l.node(n), "volumes") }
