package stack

import (
	"context"
	"maps"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

// buildPrometheus builds (or finds cached) Prometheus and promtool and the server's image
// (Images["prometheus"]).
func (s *Stack) buildPrometheus(ctx context.Context) error {
	bins, err := gobuild.Ensure(ctx, s.cache, prometheus.Component(), s.log)
	if err != nil {
		return err
	}
	maps.Copy(s.Bin, bins)
	s.Images["prometheus"], err = prometheus.Image(ctx, s.builder, bins)
	return err
}

// deployPrometheus checks the scrape configuration and the shipped rules (prometheus.Rules) with promtool, imports the image into every node and
// deploys it.
func (s *Stack) deployPrometheus(ctx context.Context) error {
	rules, err := prometheus.Rules(s.Repo)
	if err != nil {
		return err
	}
	if err := prometheus.Check(ctx, s.Bin["promtool"], rules); err != nil {
		return err
	}
	img := s.Images["prometheus"]
	if err := s.Cluster.ImportImage(ctx, img.Path); err != nil {
		return err
	}
	if err := prometheus.Deploy(ctx, s.Apply, img.Ref, rules); err != nil {
		return err
	}
	s.logf("Prometheus %s ready at %s (scrapes txmesh's apps and CloudNativePG instances, evaluates %s)",
		prometheus.Release, prometheus.URL, prometheus.RulesFile)
	return nil
}
