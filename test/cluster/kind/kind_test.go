package kind

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// fake records the docker command lines and answers inspect with an address.
func fake(ip string) (*Nodes, *[]string) {
	var calls []string
	n := New("/kubeconfig", "kind", nil)
	n.docker = func(_ context.Context, args ...string) (string, error) {
		calls = append(calls, strings.Join(args, " "))
		if args[0] == "inspect" {
			return ip + "\n", nil
		}
		return "", nil
	}
	return n, &calls
}

func TestKillAndReboot(t *testing.T) {
	n, calls := fake("")
	if err := n.KillNode("txmesh-worker2"); err != nil {
		t.Fatal(err)
	}
	if err := n.RebootNode(context.Background(), "txmesh-worker2"); err != nil {
		t.Fatal(err)
	}
	want := []string{"kill --signal KILL txmesh-worker2", "start txmesh-worker2"}
	if !slices.Equal(*calls, want) {
		t.Fatalf("docker calls %q, want %q", *calls, want)
	}
}

// A cut node reconnects with the address it had.
func TestCutAndHeal(t *testing.T) {
	n, calls := fake("172.30.0.4")
	if err := n.HealNode("txmesh-worker"); err == nil {
		t.Fatal("healing a node that was not cut: no error")
	}
	if err := n.CutNode("txmesh-worker"); err != nil {
		t.Fatal(err)
	}
	if err := n.HealNode("txmesh-worker"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`inspect --format {{(index .NetworkSettings.Networks "kind").IPAddress}} txmesh-worker`,
		"network disconnect kind txmesh-worker",
		"network connect --ip 172.30.0.4 kind txmesh-worker",
	}
	if !slices.Equal(*calls, want) {
		t.Fatalf("docker calls:\n%s\nwant:\n%s", strings.Join(*calls, "\n"), strings.Join(want, "\n"))
	}
	if err := n.HealNode("txmesh-worker"); err == nil {
		t.Fatal("healing twice: no error")
	}
}

// A node without an address on the network is not disconnected (it would never get one back).
func TestCutWithoutAddress(t *testing.T) {
	n, calls := fake("<no value>")
	if err := n.CutNode("txmesh-worker3"); err == nil || !strings.Contains(err.Error(), "no address on docker network kind") {
		t.Fatalf("error %v, want no address", err)
	}
	if len(*calls) != 1 {
		t.Fatalf("docker calls %q: only the inspect expected", *calls)
	}
}

func TestBlockAndUnblock(t *testing.T) {
	n, calls := fake("")
	if err := n.UnblockFromPod("txmesh-worker"); err == nil {
		t.Fatal("unblocking a node with no block: no error")
	}
	if err := n.BlockFromPod("txmesh-worker", "10.244.1.5", 5432, []string{"10.244.2.7", "10.244.3.9"}); err != nil {
		t.Fatal(err)
	}
	if err := n.UnblockFromPod("txmesh-worker"); err != nil {
		t.Fatal(err)
	}
	rule := "FORWARD -s 10.244.1.5 -d 10.244.2.7,10.244.3.9 -p tcp --sport 5432 -m comment --comment txmesh-fault -j DROP"
	want := []string{"exec txmesh-worker iptables -w -I " + rule, "exec txmesh-worker iptables -w -D " + rule}
	if !slices.Equal(*calls, want) {
		t.Fatalf("docker calls:\n%s\nwant:\n%s", strings.Join(*calls, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range [][]string{nil, {}} {
		if err := n.BlockFromPod("txmesh-worker", "10.244.1.5", 5432, bad); err == nil {
			t.Fatalf("block towards %v: no error", bad)
		}
	}
}

// A failed block is not remembered: the unblock after it must not pretend to remove a rule.
func TestBlockFailure(t *testing.T) {
	n, _ := fake("")
	n.docker = func(context.Context, ...string) (string, error) { return "", errors.New("exit status 4") }
	if err := n.BlockFromPod("txmesh-worker", "10.244.1.5", 5432, []string{"10.244.2.7"}); err == nil {
		t.Fatal("no error from a failing iptables")
	}
	if err := n.UnblockFromPod("txmesh-worker"); err == nil || !strings.Contains(err.Error(), "nothing blocked") {
		t.Fatalf("unblock after a failed block: %v", err)
	}
}
