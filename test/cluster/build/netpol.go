package build

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NetpolVersion is the pinned sigs.k8s.io/kube-network-policies release (v0.9.1 answers 403 at the module
// proxy; v0.8.0 is served).
const NetpolVersion = "v0.8.0"

// NetpolBinary is the enforcer's binary name in the cache and in its image (upstream's image calls it
// /bin/netpol).
const NetpolBinary = "netpol"

// Netpol is SIG Network's kube-network-policies: a node agent that enforces NetworkPolicy by sending the
// first packet of every new connection to or from a pod (nftables) to user space over NFQUEUE and
// accepting or dropping it there.
func Netpol() Component {
	return Component{Name: "kube-network-policies", Module: "sigs.k8s.io/kube-network-policies",
		Version: NetpolVersion, Packages: []string{"sigs.k8s.io/kube-network-policies/cmd"},
		GoLine: "1.23.0", Expect: 3 * time.Minute}
}

// The one change to upstream's source, applied at build time to a copy of the downloaded module in the build
// cache (nothing of upstream is copied into this repository): this kernel is built without CONFIG_NFT_QUEUE,
// so nftables' native `queue` expression is refused ("Could not process rule: No such file or directory"),
// while the x_tables NFQUEUE target through nft_compat (CONFIG_NFT_COMPAT, CONFIG_NETFILTER_XT_TARGET_NFQUEUE)
// is built in and works in an inet table. The verdict path (nfnetlink_queue, the agent's policy evaluation) is
// upstream's unchanged; only the expression that hands the packet to the queue differs. (dnsagent.go's queue
// serves AdminNetworkPolicy domain rules only, which stay off.) The binary is cached under the suffix
// netpolPatchKey: change it with the patch.
const netpolQueueUpstream = `	queue := &expr.Queue{Num: uint16(c.config.QueueID)}
	if c.config.FailOpen {
		queue.Flag = expr.QueueFlagBypass
	}
`

const netpolPatchKey = "xtqueue"

const netpolQueueCompat = `	queue := txmeshNFQueueTarget(uint16(c.config.QueueID), c.config.FailOpen)
`

// struct xt_NFQ_info_v3 {u16 queuenum; u16 queues_total; u16 flags}, host byte order, padded to 8 bytes.
const netpolCompatFile = `package networkpolicy

import (
	"encoding/binary"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

// txmeshNFQueueTarget is "queue num N [bypass]" as the x_tables NFQUEUE target (revision 3) through
// nft_compat, for kernels without nft_queue.
func txmeshNFQueueTarget(num uint16, bypass bool) *expr.Target {
	info := make(xt.Unknown, 8)
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], 1)
	if bypass {
		binary.NativeEndian.PutUint16(info[4:], 1)
	}
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}
}
`

// netpolSource copies upstream's module out of the module cache (whose files must stay as downloaded) into
// dir, outside this repository, and applies the patch there; the wrapper module replaces the module with it.
func netpolSource(moduleDir, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	err := filepath.WalkDir(moduleDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(moduleDir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
	if err != nil {
		return err
	}
	pkg := filepath.Join(dir, "pkg", "networkpolicy")
	orig, err := os.ReadFile(filepath.Join(pkg, "controller.go"))
	if err != nil {
		return err
	}
	patched, err := netpolPatch(string(orig))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(pkg, "controller.go"), []byte(patched), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(pkg, "zz_txmesh_nfqueue_xt.go"), []byte(netpolCompatFile), 0o644)
}

// netpolPatch swaps both queue expressions of upstream's controller.go; it fails when upstream's text is not
// exactly the one this patch was written for (a new version must be looked at again).
func netpolPatch(src string) (string, error) {
	if n := strings.Count(src, netpolQueueUpstream); n != 2 {
		return "", fmt.Errorf("kube-network-policies %s: expected 2 nftables queue expressions in controller.go, found %d: "+
			"re-check the NFQUEUE patch in test/cluster/build/netpol.go", NetpolVersion, n)
	}
	out := strings.ReplaceAll(src, netpolQueueUpstream, netpolQueueCompat)
	if strings.Contains(out, "expr.Queue{") || strings.Contains(out, "expr.QueueFlagBypass") {
		return "", fmt.Errorf("kube-network-policies %s: a queue expression is left in controller.go", NetpolVersion)
	}
	return out, nil
}

// EnsureNetpol returns the enforcer's binary, building it (with the overlay) when the cache lacks it.
func EnsureNetpol(ctx context.Context, cache string, log io.Writer) (string, error) {
	c := Netpol()
	dir := filepath.Join(cache, "bin", c.Name+"-"+c.Version+"-"+netpolPatchKey)
	bin := filepath.Join(dir, NetpolBinary)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return bin, nil
	}
	start := time.Now()
	fmt.Fprintf(log, "build: %s %s — not cached, building from the module proxy (about %s cold on 2 cores)\n",
		c.Name, c.Version, c.Expect)
	mod, err := ModuleDir(ctx, cache, c)
	if err != nil {
		return "", err
	}
	src := filepath.Join(cache, "src", c.Name+"-"+c.Version)
	if err := netpolSource(mod, filepath.Join(src, "upstream")); err != nil {
		return "", err
	}
	c.Replace = map[string]string{c.Module: "./upstream"}
	if err := writeWrapper(src, c); err != nil {
		return "", err
	}
	if err := goCmd(ctx, src, log, nil, "mod", "tidy"); err != nil {
		return "", moduleError(c, err)
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	stop := ticker(log, c.Name, start)
	err = goCmd(ctx, src, log, []string{"CGO_ENABLED=0"}, "build", "-trimpath",
		"-ldflags", "-s -w", "-o", filepath.Join(tmp, NetpolBinary), c.Packages[0])
	stop()
	if err != nil {
		return "", fmt.Errorf("build %s %s: %w", c.Name, c.Version, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "build: %s %s done in %s\n", c.Name, c.Version, time.Since(start).Round(time.Second))
	return bin, nil
}
