package stack

import (
	"context"
	"time"

	"github.com/txmesh/txmesh/test/cluster/build"
	"github.com/txmesh/txmesh/test/cluster/deploy"
)

// buildNetpol builds (or finds cached) the NetworkPolicy enforcer and its image (Images["netpol"]): the
// binary at /bin/netpol as upstream's image lays it out, no entrypoint (upstream's DaemonSet names the
// command in args), run as root (the DaemonSet is privileged: it writes the node's nftables).
func (s *Stack) buildNetpol(ctx context.Context) error {
	bin, err := build.EnsureNetpol(ctx, s.cache, s.log)
	if err != nil {
		return err
	}
	s.Bin[build.NetpolBinary] = bin
	img, err := s.builder.Binary(ctx, "txmesh.local/kube-network-policies:"+build.NetpolVersion,
		map[string]string{"/bin/" + build.NetpolBinary: bin}, nil, "")
	if err != nil {
		return err
	}
	s.Images["netpol"] = img
	return nil
}

// deployNetpol imports the enforcer's image into every node, applies upstream's install.yaml (deploy.Netpol)
// and waits until an agent is ready on every node, before anything of txmesh starts: every txmesh pod is
// under its NetworkPolicies from its first packet.
func (s *Stack) deployNetpol(ctx context.Context) error {
	img := s.Images["netpol"]
	if err := s.Cluster.ImportImage(ctx, img.Path); err != nil {
		return err
	}
	dir, err := build.ModuleDir(ctx, s.cache, build.Netpol())
	if err != nil {
		return err
	}
	objs, err := deploy.Netpol(dir, img.Ref)
	if err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, objs); err != nil {
		return err
	}
	if err := s.Apply.Wait(ctx, deploy.DaemonSets, deploy.NetpolNamespace, deploy.NetpolName, 3*time.Minute,
		deploy.DaemonSetReady); err != nil {
		return err
	}
	s.logf("NetworkPolicy enforcer ready on every node: kube-network-policies %s (nftables + NFQUEUE)",
		build.NetpolVersion)
	return nil
}
