package stack

import (
	"context"
	"slices"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/coredns"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/localpath"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// addons installs cluster DNS, node-local storage and the CloudNativePG operator (one apply), and waits for
// them.
func (s *Stack) addons(ctx context.Context) error {
	dns, err := coredns.Objects(s.Images["coredns"].Ref, s.Cluster.DNSIP())
	if err != nil {
		return err
	}
	lpDir, err := gobuild.ModuleDir(ctx, s.cache, localpath.Component())
	if err != nil {
		return err
	}
	var paths []localpath.NodePath
	for _, n := range s.Cluster.Nodes() {
		paths = append(paths, localpath.NodePath{Node: n.Name, Path: s.Cluster.Layout().VolumesDir(n)})
	}
	lp, err := localpath.Objects(lpDir, s.Images["local-path"].Ref, s.Images["busybox"].Ref, paths)
	if err != nil {
		return err
	}
	cnpgDir, err := gobuild.ModuleDir(ctx, s.cache, cnpg.Component())
	if err != nil {
		return err
	}
	op, err := cnpg.Objects(cnpgDir, s.Images["cnpg"].Ref)
	if err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, slices.Concat(dns, lp, op)); err != nil {
		return err
	}
	for _, wait := range []func(context.Context, *manifests.Applier) error{coredns.Wait, localpath.Wait, cnpg.Wait} {
		if err := wait(ctx, s.Apply); err != nil {
			return err
		}
	}
	s.logf("add-ons ready: CoreDNS, local-path-provisioner %s (default StorageClass), CloudNativePG %s",
		localpath.Version, cnpg.Version)
	return nil
}
