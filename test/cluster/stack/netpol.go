package stack

import (
	"context"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/netpol"
)

// buildNetpol builds (or finds cached) the NetworkPolicy enforcer and its image (Images["netpol"]).
func (s *Stack) buildNetpol(ctx context.Context) error {
	bins, err := gobuild.Ensure(ctx, s.cache, netpol.Component(), s.log)
	if err != nil {
		return err
	}
	s.Bin[netpol.Binary] = bins[netpol.Binary]
	s.Images["netpol"], err = netpol.Image(ctx, s.builder, bins)
	return err
}

// deployNetpol imports the enforcer's image into every node and deploys it, before anything of txmesh
// starts: every txmesh pod is under its NetworkPolicies from its first packet.
func (s *Stack) deployNetpol(ctx context.Context) error {
	img := s.Images["netpol"]
	if err := s.Cluster.ImportImage(ctx, img.Path); err != nil {
		return err
	}
	dir, err := gobuild.ModuleDir(ctx, s.cache, netpol.Component())
	if err != nil {
		return err
	}
	if err := netpol.Deploy(ctx, s.Apply, dir, img.Ref); err != nil {
		return err
	}
	s.logf("NetworkPolicy enforcer ready on every node: kube-network-policies %s (nftables + NFQUEUE)",
		netpol.Version)
	return nil
}
