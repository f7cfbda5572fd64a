// Package kind injects make e2e's node faults into a kind cluster with docker, where each node is a
// container on a docker network: kill is `docker kill`, boot `docker start`, a cut is the node's container
// disconnected from the network, a blocked replication stream an iptables rule in the node.
package kind

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/txmesh/txmesh/test/cluster/kube"
)

// faultComment marks the iptables rules BlockFromPod adds.
const faultComment = "txmesh-fault"

// Nodes are a kind cluster's node containers.
type Nodes struct {
	kubeconfig string
	network    string
	cs         kubernetes.Interface
	docker     func(ctx context.Context, args ...string) (string, error)

	mu      sync.Mutex
	ips     map[string]string   // a cut node's address, given back when it reconnects
	blocked map[string][]string // a node's BlockFromPod rule, for UnblockFromPod
}

// New returns the nodes of the kind cluster behind kubeconfig, on the docker network (kind's is "kind").
func New(kubeconfig, network string, cs kubernetes.Interface) *Nodes {
	return &Nodes{kubeconfig: kubeconfig, network: network, cs: cs, docker: docker,
		ips: map[string]string{}, blocked: map[string][]string{}}
}

func docker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Kubeconfig is the cluster's admin kubeconfig.
func (n *Nodes) Kubeconfig() string { return n.kubeconfig }

// KillNode kills every process of the node's container at once, as a power loss would; its disk stays.
func (n *Nodes) KillNode(name string) error {
	_, err := n.docker(context.Background(), "kill", "--signal", "KILL", name)
	return err
}

// RebootNode boots a killed node's container again (kind's entrypoint starts containerd and the kubelet).
func (n *Nodes) RebootNode(ctx context.Context, name string) error {
	_, err := n.docker(ctx, "start", name)
	return err
}

// CutNode disconnects the node from the network: it keeps running but reaches nothing and nothing reaches it.
func (n *Nodes) CutNode(name string) error {
	ctx := context.Background()
	out, err := n.docker(ctx, "inspect", "--format", `{{(index .NetworkSettings.Networks "`+n.network+`").IPAddress}}`, name)
	if err != nil {
		return err
	}
	ip := strings.TrimSpace(out)
	if ip == "" || ip == "<no value>" {
		return fmt.Errorf("node %s has no address on docker network %s", name, n.network)
	}
	n.mu.Lock()
	n.ips[name] = ip
	n.mu.Unlock()
	_, err = n.docker(ctx, "network", "disconnect", n.network, name)
	return err
}

// HealNode reconnects a cut node with the address it had: the API server, the other nodes' routes to its
// pods and its certificates all name it (docker takes --ip only on a network created with a subnet).
func (n *Nodes) HealNode(name string) error {
	n.mu.Lock()
	ip, ok := n.ips[name]
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("node %s was not cut", name)
	}
	if _, err := n.docker(context.Background(), "network", "connect", "--ip", ip, n.network, name); err != nil {
		return err
	}
	n.mu.Lock()
	delete(n.ips, name)
	n.mu.Unlock()
	return nil
}

// WaitNodeReady waits until the named node reports Ready (or, with ready false, NotReady/Unknown).
func (n *Nodes) WaitNodeReady(ctx context.Context, name string, ready bool, d time.Duration) error {
	return kube.WaitNodeReady(ctx, n.cs, name, ready, d)
}

// BlockFromPod drops, on the node, what a pod sends from a TCP port to the given addresses (a PostgreSQL
// primary's replication stream to its standbys on other nodes: forwarded by the node).
func (n *Nodes) BlockFromPod(node, podIP string, port int, dst []string) error {
	if podIP == "" || port <= 0 || len(dst) == 0 {
		return fmt.Errorf("block on %s: pod address, port and destinations are required", node)
	}
	rule := []string{"FORWARD", "-s", podIP, "-d", strings.Join(dst, ","), "-p", "tcp", "--sport", strconv.Itoa(port),
		"-m", "comment", "--comment", faultComment, "-j", "DROP"}
	if _, err := n.docker(context.Background(), iptables(node, "-I", rule)...); err != nil {
		return err
	}
	n.mu.Lock()
	n.blocked[node] = rule
	n.mu.Unlock()
	return nil
}

// UnblockFromPod removes the node's BlockFromPod rule.
func (n *Nodes) UnblockFromPod(node string) error {
	n.mu.Lock()
	rule, ok := n.blocked[node]
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("nothing blocked on %s", node)
	}
	if _, err := n.docker(context.Background(), iptables(node, "-D", rule)...); err != nil {
		return err
	}
	n.mu.Lock()
	delete(n.blocked, node)
	n.mu.Unlock()
	return nil
}

// iptables is the docker command line running iptables op rule in the node's container.
func iptables(node, op string, rule []string) []string {
	return append([]string{"exec", node, "iptables", "-w", op}, rule...)
}
