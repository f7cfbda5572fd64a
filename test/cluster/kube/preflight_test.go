package kube

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txmesh/txmesh/test/cluster/host"
	"github.com/txmesh/txmesh/test/cluster/images"
)

// A machine without the node runtime gets told which Debian packages to install, not a hang or a stack trace.
func TestPreflightNamesMissingPackages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, as the cluster does")
	}
	t.Setenv("PATH", t.TempDir())
	err := Preflight(map[string]string{})
	if err == nil {
		t.Fatal("no error with an empty PATH")
	}
	for _, want := range []string{"apt-get install", "containerd", "etcd-server", "nftables", "iproute2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from: %v", want, err)
		}
	}
}

// A missing Kubernetes binary names the command that builds it.
func TestPreflightNamesMissingBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, as the cluster does")
	}
	err := Preflight(map[string]string{"kube-apiserver": "/nonexistent/kube-apiserver"})
	if err == nil || !strings.Contains(err.Error(), "make cluster-up") {
		t.Fatalf("want an error pointing at make cluster-up, got %v", err)
	}
}

// A state file left by a crashed cluster stops a new start with the command that removes it.
func TestStartRefusesALeftOverCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, as the cluster does")
	}
	bins, _ := artifacts(t)
	l := testLayout(t.TempDir())
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "state.json"), []byte(`{"nodes":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Options{Layout: l, Nodes: 1, Bin: bins, NoHostProxy: true})
	if err == nil || !strings.Contains(err.Error(), "make cluster-down") {
		t.Fatalf("want an error pointing at make cluster-down, got %v", err)
	}
	if left := Leftovers(l); len(left) != 1 || !strings.Contains(left[0], "directory") {
		t.Fatalf("the refused start created something: %v", left)
	}
}

// An address range the machine already routes (another network, or a cluster whose state is gone) is named.
func TestStartRefusesARoutedRange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, as the cluster does")
	}
	l := testLayout(t.TempDir())
	l.Octet = 230
	if err := host.IP("route", "add", "blackhole", "10.231.7.0/24"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.IP("route", "del", "blackhole", "10.231.7.0/24") })
	err := checkAddressesFree(l)
	if err == nil || !strings.Contains(err.Error(), "10.231.7.0/24") {
		t.Fatalf("want the overlapping route named, got %v", err)
	}
}

// Without gcc (or go) the pause image names what to install.
func TestPauseNamesMissingTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Pause(context.Background(), &images.Builder{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "go not found") {
		t.Fatalf("error %v, want the missing go named", err)
	}
}
