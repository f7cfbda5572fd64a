// Package netpol is the NetworkPolicy enforcer: SIG Network's kube-network-policies built from its module
// with one patch for this kernel (build.go), imaged, and deployed from the module's own install.yaml as a
// DaemonSet on every node (deploy.go), before anything of txmesh starts.
package netpol

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/images"
)

// Version is the pinned sigs.k8s.io/kube-network-policies release (v0.9.1 answers 403 at the module proxy;
// v0.8.0 is served).
const Version = "v0.8.0"

// Binary is the enforcer's binary name in the cache and in its image (upstream's image calls it /bin/netpol).
const Binary = "netpol"

// Component is SIG Network's kube-network-policies: a node agent that enforces NetworkPolicy by sending the
// first packet of every new connection to or from a pod (nftables) to user space over NFQUEUE and
// accepting or dropping it there. It is built patched (netpolApply).
func Component() gobuild.Component {
	const cmd = "sigs.k8s.io/kube-network-policies/cmd"
	return gobuild.Component{Name: "kube-network-policies", Module: "sigs.k8s.io/kube-network-policies",
		Version: Version, Packages: []string{cmd}, Names: map[string]string{cmd: Binary},
		GoLine: "1.23.0", Expect: 3 * time.Minute, Patch: netpolApply, PatchKey: netpolPatchKey}
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

// netpolApply patches a copy of upstream's module (dir, outside this repository and the module cache).
func netpolApply(dir string) error {
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
			"re-check the NFQUEUE patch in test/cluster/netpol/build.go", Version, n)
	}
	out := strings.ReplaceAll(src, netpolQueueUpstream, netpolQueueCompat)
	if strings.Contains(out, "expr.Queue{") || strings.Contains(out, "expr.QueueFlagBypass") {
		return "", fmt.Errorf("kube-network-policies %s: a queue expression is left in controller.go", Version)
	}
	return out, nil
}

// Image is the enforcer's image: the binary at /bin/netpol as upstream's image lays it out, no entrypoint
// (upstream's DaemonSet names the command in args), run as root (the DaemonSet is privileged: it writes the
// node's nftables).
func Image(ctx context.Context, b *images.Builder, bins gobuild.Binaries) (images.Image, error) {
	return b.Binary(ctx, "txmesh.local/kube-network-policies:"+Version, map[string]string{"/bin/" + Binary: bins[Binary]},
		nil, "")
}
