package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/txmesh/txmesh/test/cluster/build"
	"github.com/txmesh/txmesh/test/cluster/deploy"
)

// buildPrometheus builds (or finds cached) Prometheus and promtool and images the server as build.CDImages
// says (Images["prometheus"]).
func (s *Stack) buildPrometheus(ctx context.Context) error {
	c := build.FindCD("prometheus")
	bins, err := build.Ensure(ctx, s.cache, c, s.log)
	if err != nil {
		return err
	}
	for k, v := range bins {
		s.Bin[k] = v
	}
	for _, spec := range build.CDImages() {
		if spec.Component != c.Name {
			continue
		}
		files := map[string]string{}
		for in, bin := range spec.Files {
			files[in] = bins[bin]
		}
		img, err := s.builder.Binary(ctx, spec.Ref, files, spec.Entrypoint, spec.User)
		if err != nil {
			return err
		}
		s.Images["prometheus"] = img
		return nil
	}
	return fmt.Errorf("build.CDImages has no image of %s", c.Name)
}

// deployPrometheus checks the scrape configuration with promtool, imports the image into every node, applies
// deploy.Prometheus and waits until it is available; the scrapes start while txmesh comes up.
func (s *Stack) deployPrometheus(ctx context.Context) error {
	cfg, err := deploy.PrometheusConfig()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "txmesh-prometheus-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(f, cfg, 0o644); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, s.Bin["promtool"], "check", "config", "--syntax-only", f).CombinedOutput(); err != nil {
		return fmt.Errorf("promtool check config (test/cluster/deploy/addons/prometheus-config.yaml): %w\n%s", err, out)
	}
	img := s.Images["prometheus"]
	if err := s.Cluster.ImportImage(ctx, img.Path); err != nil {
		return err
	}
	objs, err := deploy.Prometheus(img.Ref)
	if err != nil {
		return err
	}
	if err := s.Apply.Apply(ctx, objs); err != nil {
		return err
	}
	if err := s.Apply.Wait(ctx, deploy.Deployments, deploy.MonitoringNamespace, deploy.PrometheusName, 3*time.Minute,
		deploy.DeploymentAvailable); err != nil {
		return err
	}
	s.logf("Prometheus %s ready at %s (scrapes txmesh's apps and CloudNativePG instances)", build.PrometheusRelease,
		deploy.PrometheusURL)
	return nil
}
