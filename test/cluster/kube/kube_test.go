package kube

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
	"github.com/txmesh/txmesh/test/cluster/registry"
)

// testLayout differs from the default in every name and range, so the test runs beside a cluster of
// make cluster-up; without the host kube-proxy, whose nft tables have one name per machine.
func testLayout(dir string) Layout {
	return Layout{Name: "txmesh-crashtest", Bridge: "txmbr9", Octet: 240, Dir: filepath.Join(dir, "cluster"),
		Run: "/run/txmesh-crashtest"}
}

func artifacts(t *testing.T) (gobuild.Binaries, images.Image) {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := gobuild.Ensure(context.Background(), cache, Component(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := gobuild.Ensure(context.Background(), cache, registry.Component(), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	bins["registry"] = reg["registry"]
	pause, err := Pause(context.Background(), &images.Builder{Dir: filepath.Join(cache, "images")})
	if err != nil {
		t.Fatal(err)
	}
	return bins, pause
}

// TestHelperStartCluster is the process the crash test starts and kills: it brings a one-node cluster up,
// pushes the pause image to the cluster's registry under a name no node holds, runs a pod of that name (so
// the node pulls it through hosts.toml), prints READY and waits to be killed.
func TestHelperStartCluster(t *testing.T) {
	dir := os.Getenv("TXMESH_CRASHTEST_DIR")
	if dir == "" {
		return // only as the crash test's child
	}
	bins, pause := artifacts(t)
	c, err := Start(context.Background(), Options{Layout: testLayout(dir), Nodes: 1, Bin: bins,
		PauseImage: pause.Ref, Images: []string{pause.Path}, NoHostProxy: true, Log: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pulled := registry.LocalName + "/pulled-pause:1"
	if _, err := c.Push(ctx, pause.Path, pulled); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pause", Image: pulled,
			ImagePullPolicy: corev1.PullIfNotPresent}}}}
	// The default ServiceAccount appears a moment after the namespace controller starts.
	var perr error
	for range 60 {
		if _, perr = cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); perr == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if perr != nil {
		t.Fatal(perr)
	}
	for range 120 {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "sleeper", metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			fmt.Println("READY")
			select {} // until killed
		}
		time.Sleep(time.Second)
	}
	t.Fatal("pod never ran")
}

// A harness killed -9 in the middle leaves its cluster running — control plane, node daemons, a container,
// mounts, namespaces, nft rules, changed sysctls. Down removes all of it, from what is on disk, and a
// second Down is a no-op.
func TestDownAfterCrashLeavesNothing(t *testing.T) {
	if os.Getenv("TXMESH_CRASHTEST_DIR") != "" {
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root: network namespaces, cgroups and mounts (run as root, as .ci/run does)")
	}
	artifacts(t) // build before the child's clock starts
	dir := t.TempDir()
	l := testLayout(dir)
	sysBefore := readSysctls()
	runBefore := absentPaths()

	child := exec.Command(os.Args[0], "-test.run=^TestHelperStartCluster$", "-test.v", "-test.timeout=10m")
	child.Env = append(os.Environ(), "TXMESH_CRASHTEST_DIR="+dir)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(l, io.Discard) })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "READY" {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = child.Wait()
			t.Fatal("the child exited before its cluster was ready")
		}
	case <-time.After(5 * time.Minute):
		_ = child.Process.Kill()
		t.Fatal("the child's cluster was not ready within 5 minutes")
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	left := Leftovers(l)
	if len(left) < 5 {
		t.Fatalf("the crashed harness should have left its cluster running, found only %v", left)
	}
	t.Logf("left by the crash: %d kinds of things, e.g. %s", len(left), left[0])

	if err := Down(l, io.Discard); err != nil {
		t.Fatalf("down after the crash: %v", err)
	}
	if left := Leftovers(l); len(left) > 0 {
		t.Fatalf("left after down: %v", left)
	}
	if after := readSysctls(); fmt.Sprint(after) != fmt.Sprint(sysBefore) {
		t.Fatalf("sysctls not restored:\nbefore %v\nafter  %v", sysBefore, after)
	}
	if after := absentPaths(); fmt.Sprint(after) != fmt.Sprint(runBefore) {
		t.Fatalf("paths outside the layout: absent before %v, absent after %v", runBefore, after)
	}
	if err := Down(l, io.Discard); err != nil {
		t.Fatalf("a second down: %v", err)
	}
}
