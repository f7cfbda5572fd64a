// Package kube starts and stops a throwaway Kubernetes on this machine from upstream binaries: etcd (Debian),
// kube-apiserver, kube-controller-manager and kube-scheduler on the host, and nodes that are each a network
// namespace with their own containerd, kubelet and kube-proxy, so that a node can be killed (every process of
// it, containers included) or cut off (its link down) like a machine. It is shaped like pglocal: a small API
// to start, break and stop the thing, and a teardown (Down) that works from what is on disk after a crash.
package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/txmesh/txmesh/test/cluster/certs"
	"github.com/txmesh/txmesh/test/cluster/host"
	"github.com/txmesh/txmesh/test/cluster/registry"
)

// Options configure Start.
type Options struct {
	Layout Layout
	Nodes  int               // 3 unless set
	Bin    map[string]string // binary name → path: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
	// PauseImage is the sandbox image reference; Images are docker-archive tarballs imported into every
	// node's containerd before its kubelet starts (PauseImage's among them).
	PauseImage string
	Images     []string
	// NoHostProxy leaves out the host's kube-proxy (its nft tables have a fixed name: one per machine).
	NoHostProxy bool
	Log         io.Writer
}

// Cluster is a running cluster.
type Cluster struct {
	layout Layout
	bin    map[string]string
	pause  string
	log    io.Writer

	hostProxy bool

	mu sync.Mutex
	st *state
}

// Debian packages holding the commands the cluster runs.
var hostCommands = map[string]string{
	"etcd": "etcd-server", "containerd": "containerd", "ctr": "containerd", "runc": "runc", "nft": "nftables",
	"ip": "iproute2", "nsenter": "util-linux", "conntrack": "conntrack", "iptables": "iptables",
}

// Preflight names every missing prerequisite and how to install it.
func Preflight(bin map[string]string) error {
	if os.Geteuid() != 0 {
		return errors.New("the cluster needs root (network namespaces, cgroups, mounts): run as root")
	}
	var missing []string
	pkgs := map[string]bool{}
	for c, pkg := range hostCommands {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
			pkgs[pkg] = true
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			missing = append(missing, "/usr/lib/cni/"+p)
			pkgs["containernetworking-plugins"] = true
		}
	}
	if len(missing) > 0 {
		var list []string
		for p := range pkgs {
			list = append(list, p)
		}
		return fmt.Errorf("missing %s: apt-get install %s (.ci/run installs them)", strings.Join(missing, ", "),
			strings.Join(list, " "))
	}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		if _, err := os.Stat(bin[b]); err != nil {
			return fmt.Errorf("binary %s missing (%q): build it first (`make cluster-up` builds and caches it)", b, bin[b])
		}
	}
	return nil
}

// Start brings a cluster up. It fails, naming the cause, when one is already running or left over.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes > len(zones)*3 {
		return nil, fmt.Errorf("at most %d nodes", len(zones)*3)
	}
	if err := Preflight(o.Bin); err != nil {
		return nil, err
	}
	l := o.Layout
	if _, err := os.Stat(l.state()); err == nil {
		return nil, fmt.Errorf("a cluster already exists (%s): use it, or remove it with `make cluster-down`", l.state())
	}
	if host.LinkExists(l.Bridge) {
		return nil, fmt.Errorf("network device %s exists without a cluster state: a crashed cluster is left over, "+
			"run `make cluster-down`", l.Bridge)
	}
	if err := checkAddressesFree(l); err != nil {
		return nil, err
	}
	ports, err := host.FreePorts(2)
	if err != nil {
		return nil, err
	}
	st := &state{Sysctls: readSysctls(), NewPaths: absentPaths(), EtcdPorts: [2]int{ports[0], ports[1]}}
	for i := 1; i <= o.Nodes; i++ {
		st.Nodes = append(st.Nodes, l.newNode(i))
	}
	if err := os.MkdirAll(l.Run, 0o755); err != nil {
		return nil, err
	}
	if err := writeState(l, st); err != nil {
		return nil, err
	}
	c := &Cluster{layout: l, bin: o.Bin, pause: o.PauseImage, log: o.Log, st: st, hostProxy: !o.NoHostProxy}
	if err := c.start(ctx, o.Images); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Cluster) logf(format string, a ...any) {
	if c.log != nil {
		fmt.Fprintf(c.log, "cluster: "+format+"\n", a...)
	}
}

func (c *Cluster) start(ctx context.Context, images []string) error {
	l := c.layout
	t0 := time.Now()
	if err := c.writePKI(); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := setupBridge(l); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if err := setupGuard(l); err != nil {
		return fmt.Errorf("egress guard: %w", err)
	}
	for _, n := range c.st.Nodes {
		if err := setupNodeNet(l, n, c.st.Nodes); err != nil {
			return fmt.Errorf("network of %s: %w", n.Name, err)
		}
	}
	c.logf("network ready: bridge %s %s, %d node namespaces, egress guard (nft table inet %s)",
		l.Bridge, l.net().HostIP, len(c.st.Nodes), l.guardTable())
	if c.bin["registry"] != "" {
		if err := c.startRegistry(ctx); err != nil {
			return err
		}
	}

	// Nodes boot (containerd + image import) while the control plane starts.
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range c.st.Nodes {
		g.Go(func() error { return c.bootRuntime(gctx, n, images) })
	}
	if err := c.startControlPlane(ctx); err != nil {
		_ = g.Wait()
		return err
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, n := range c.st.Nodes {
		if err := c.startKubelet(n); err != nil {
			return err
		}
	}
	if err := c.waitNodesReady(ctx, 3*time.Minute); err != nil {
		return err
	}
	c.logf("control plane and %d nodes ready in %s (kubeconfig %s)", len(c.st.Nodes),
		time.Since(t0).Round(100*time.Millisecond), l.Kubeconfig())
	return nil
}

func (c *Cluster) record(p host.Proc) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept := c.st.Procs[:0]
	for _, q := range c.st.Procs {
		if q.Name != p.Name {
			kept = append(kept, q)
		}
	}
	c.st.Procs = append(kept, p)
	return writeState(c.layout, c.st)
}

func (c *Cluster) proc(name string) (host.Proc, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.st.Procs {
		if p.Name == name {
			return p, true
		}
	}
	return host.Proc{}, false
}

func (c *Cluster) spawn(name, netns, cg string, env []string, argv ...string) error {
	p, err := host.Spawn(name, netns, cg, filepath.Join(c.layout.logs(), strings.ReplaceAll(name, "/", "-")+".log"), env, argv...)
	if err != nil {
		return err
	}
	return c.record(p)
}

func (c *Cluster) writePKI() error {
	l := c.layout
	p, err := certs.NewCA(l.pki(), "txmesh-cluster-ca")
	if err != nil {
		return err
	}
	nw := l.net()
	server := fmt.Sprintf("https://%s:%d", nw.HostIP, apiPort)
	if _, _, err := p.Issue(certs.Spec{Name: "apiserver", CN: "kube-apiserver", Server: true,
		DNS: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs: []net.IP{net.ParseIP(nw.HostIP.String()), net.ParseIP(nw.APIService.String()), net.ParseIP("127.0.0.1")}}); err != nil {
		return err
	}
	if _, _, err := p.Issue(certs.Spec{Name: "apiserver-kubelet-client", CN: "kube-apiserver-kubelet-client",
		Orgs: []string{"system:masters"}, Client: true}); err != nil {
		return err
	}
	if _, _, err := p.ServiceAccountKey(); err != nil {
		return err
	}
	if err := os.MkdirAll(l.control(), 0o755); err != nil {
		return err
	}
	clients := []struct{ file, cn, org string }{
		{l.Kubeconfig(), "txmesh-admin", "system:masters"},
		{filepath.Join(l.control(), "controller-manager.kubeconfig"), "system:kube-controller-manager", ""},
		{filepath.Join(l.control(), "scheduler.kubeconfig"), "system:kube-scheduler", ""},
		{filepath.Join(l.control(), "kube-proxy.kubeconfig"), "system:kube-proxy", ""},
	}
	for _, n := range c.st.Nodes {
		clients = append(clients, struct{ file, cn, org string }{
			filepath.Join(l.node(n), "kubelet.kubeconfig"), "system:node:" + n.Name, "system:nodes"})
		if _, _, err := p.Issue(certs.Spec{Name: n.Name + "-serving", CN: "system:node:" + n.Name,
			Orgs: []string{"system:nodes"}, Server: true, DNS: []string{n.Name},
			IPs: []net.IP{net.ParseIP(n.IP.String())}}); err != nil {
			return err
		}
	}
	for _, cl := range clients {
		var orgs []string
		if cl.org != "" {
			orgs = []string{cl.org}
		}
		name := strings.NewReplacer(":", "-").Replace(cl.cn)
		crt, key, err := p.Issue(certs.Spec{Name: name, CN: cl.cn, Orgs: orgs, Client: true})
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(cl.file), 0o755); err != nil {
			return err
		}
		if err := p.Kubeconfig(cl.file, clusterName, server, crt, key); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startControlPlane(ctx context.Context) error {
	l := c.layout
	etcd, _ := exec.LookPath("etcd")
	cg := l.Name + "/control-plane"
	if err := os.MkdirAll(l.etcd(), 0o700); err != nil {
		return err
	}
	// etcd 3.4 on amd64 needs no ETCD_UNSUPPORTED_ARCH; its default heartbeat suits a loaded machine.
	if err := c.spawn("etcd", "", cg, nil, etcdArgs(etcd, l, c.st.EtcdPorts[0], c.st.EtcdPorts[1])...); err != nil {
		return err
	}
	if err := host.WaitTCP(ctx, fmt.Sprintf("127.0.0.1:%d", c.st.EtcdPorts[0]), 30*time.Second, c.tail("etcd")); err != nil {
		return fmt.Errorf("etcd did not start: %w", err)
	}
	if err := c.spawn("kube-apiserver", "", cg, nil, apiserverArgs(c.bin["kube-apiserver"], l, c.st.EtcdPorts[0])...); err != nil {
		return err
	}
	if err := c.waitAPIServer(ctx, 90*time.Second); err != nil {
		return err
	}
	c.logf("kube-apiserver ready at https://%s:%d", l.net().HostIP, apiPort)
	if err := c.spawn("kube-controller-manager", "", cg, nil, controllerManagerArgs(c.bin["kube-controller-manager"], l)...); err != nil {
		return err
	}
	if err := c.spawn("kube-scheduler", "", cg, nil, schedulerArgs(c.bin["kube-scheduler"], l)...); err != nil {
		return err
	}
	// The control-plane host runs kube-proxy as well (as kubeadm's control-plane nodes do), so the API server
	// reaches webhook Services and the e2e driver reaches the Store's Service by ClusterIP.
	if !c.hostProxy {
		return nil
	}
	cfg := filepath.Join(l.control(), "kube-proxy.yaml")
	host := l.net().HostIP.String()
	if err := os.WriteFile(cfg, []byte(kubeProxyConfig(l, filepath.Join(l.control(), "kube-proxy.kubeconfig"),
		"control-plane", host, host+"/32")), 0o644); err != nil {
		return err
	}
	c.mu.Lock()
	c.st.HostProxy = true
	c.mu.Unlock()
	return c.spawn("kube-proxy/control-plane", "", cg, nil, c.bin["kube-proxy"], "--config="+cfg, "--v=1")
}

// bootRuntime starts a node's containerd (on a fresh runtime directory, as after a reboot) and imports the
// images into it.
func (c *Cluster) bootRuntime(ctx context.Context, n Node, images []string) error {
	l := c.layout
	for _, d := range []string{l.node(n), filepath.Join(l.node(n), "cni", "net.d"), l.nodeRun(n),
		filepath.Join(l.certsDir(n), registry.LocalName)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		filepath.Join(l.node(n), "containerd.toml"):                    containerdConfig(l, n, c.pause),
		filepath.Join(l.node(n), "cni", "net.d", "10-txmesh.conflist"): cniConfig(l, n),
		filepath.Join(l.node(n), "kubelet.yaml"):                       kubeletConfig(l, n, l.pki()),
		filepath.Join(l.node(n), "resolv.conf"):                        "# pods resolve cluster names only (CoreDNS has no upstream)\n",
		filepath.Join(l.node(n), "kube-proxy.yaml"): kubeProxyConfig(l, filepath.Join(l.control(), "kube-proxy.kubeconfig"),
			n.Name, n.IP.String(), l.net().NodeNet.String()),
		filepath.Join(l.certsDir(n), registry.LocalName, "hosts.toml"): registry.HostsTOML(l.registryAddr()),
	}
	for p, body := range files {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	containerd, _ := exec.LookPath("containerd")
	if err := c.spawn("containerd/"+n.Name, n.Netns, n.Cgroup+"/system", nil,
		containerd, "--config", filepath.Join(l.node(n), "containerd.toml")); err != nil {
		return err
	}
	if err := host.WaitUnix(ctx, l.containerdSock(n), 30*time.Second, c.tail("containerd/"+n.Name)); err != nil {
		return fmt.Errorf("containerd on %s: %w", n.Name, err)
	}
	for _, img := range images {
		if err := c.importImage(ctx, n, img); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) importImage(ctx context.Context, n Node, tarball string) error {
	cmd := exec.CommandContext(ctx, "ctr", "--address", c.layout.containerdSock(n), "-n", "k8s.io",
		"images", "import", "--no-unpack=false", tarball)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("import %s into %s: %w: %s", filepath.Base(tarball), n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ImportImage imports an image tarball into every running node (e.g. a new release for a rolling update).
func (c *Cluster) ImportImage(ctx context.Context, tarball string) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, n := range c.Nodes() {
		g.Go(func() error { return c.importImage(gctx, n, tarball) })
	}
	return g.Wait()
}

func (c *Cluster) startKubelet(n Node) error {
	l := c.layout
	if err := c.spawn("kubelet/"+n.Name, n.Netns, n.Cgroup+"/system", nil, kubeletArgs(c.bin["kubelet"], l, n)...); err != nil {
		return err
	}
	return c.spawn("kube-proxy/"+n.Name, n.Netns, n.Cgroup+"/system", nil,
		c.bin["kube-proxy"], "--config="+filepath.Join(l.node(n), "kube-proxy.yaml"), "--v=1")
}

// Nodes lists the cluster's nodes.
func (c *Cluster) Nodes() []Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Node(nil), c.st.Nodes...)
}

func (c *Cluster) node(name string) (Node, error) {
	for _, n := range c.Nodes() {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("no node %q", name)
}

// Kubeconfig is the admin kubeconfig's absolute path.
func (c *Cluster) Kubeconfig() string { return c.layout.Kubeconfig() }

// DNSIP is the address the kubelets give pods as their resolver (the kube-dns Service).
func (c *Cluster) DNSIP() string { return c.layout.net().DNSService.String() }

// Layout is where the cluster keeps its files.
func (c *Cluster) Layout() Layout { return c.layout }

// KillNode kills every process of the node at once — containerd, kubelet, kube-proxy, the shims and every
// container — as a power loss would. Its disk (images, volumes) stays.
func (c *Cluster) KillNode(name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return host.KillCgroup(n.Cgroup, 30*time.Second)
}

// RebootNode kills the node if it still runs, clears what a reboot clears (its runtime directory and every
// mount of it) and boots it again: containerd, kubelet, kube-proxy.
func (c *Cluster) RebootNode(ctx context.Context, name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	if err := host.KillCgroup(n.Cgroup, 30*time.Second); err != nil {
		return err
	}
	if err := host.Unmount(c.layout.nodeRun(n), filepath.Join(c.layout.node(n), "kubelet")); err != nil {
		return err
	}
	for _, d := range []string{c.layout.nodeRun(n), filepath.Join(c.layout.node(n), "cni", "ipam")} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	if err := c.bootRuntime(ctx, n, nil); err != nil {
		return err
	}
	return c.startKubelet(n)
}

// NodeAlive reports whether the node's kubelet process runs.
func (c *Cluster) NodeAlive(name string) bool {
	p, ok := c.proc("kubelet/" + name)
	return ok && p.Alive()
}

// tail returns a function reading the end of a daemon's log, for error messages.
func (c *Cluster) tail(name string) func() string {
	return func() string {
		p, ok := c.proc(name)
		if !ok {
			return ""
		}
		b, err := os.ReadFile(p.Log)
		if err != nil {
			return ""
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		return fmt.Sprintf("\n--- last lines of %s:\n%s", p.Log, strings.Join(lines, "\n"))
	}
}

// ContainerPIDs lists the processes of a container (its ID as in containerStatuses, without the
// containerd:// prefix) on a node: the kubelet's cgroupfs layout ends every container's cgroup in its ID.
func (c *Cluster) ContainerPIDs(node, containerID string) ([]int, error) {
	n, err := c.node(node)
	if err != nil {
		return nil, err
	}
	roots, err := host.CgroupRoots()
	if err != nil {
		return nil, err
	}
	var dir string
	_ = filepath.WalkDir(filepath.Join(roots[0], n.Cgroup), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == containerID {
			dir = path
			return filepath.SkipAll
		}
		return nil
	})
	if dir == "" {
		return nil, fmt.Errorf("no cgroup of container %s on %s", containerID, node)
	}
	rel, err := filepath.Rel(roots[0], dir)
	if err != nil {
		return nil, err
	}
	return host.CgroupPIDs(rel)
}

// Processes lists every process of the cluster — control plane, node daemons, containers — with the cgroup
// (relative to the cluster's) it runs in.
func (c *Cluster) Processes() (map[int]string, error) {
	roots, err := host.CgroupRoots()
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	base := filepath.Join(roots[0], c.layout.Name)
	err = filepath.WalkDir(base, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil //nolint:nilerr // a cgroup removed while walking
		}
		b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
		if err != nil {
			return nil //nolint:nilerr // idem
		}
		rel, _ := filepath.Rel(base, path)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out[pid] = rel
			}
		}
		return nil
	})
	return out, err
}
