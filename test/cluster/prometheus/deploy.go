package prometheus

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Where it runs (prometheus.yaml) and the in-cluster address of its HTTP API (what a Flagger -metrics-server
// or a MetricTemplate's spec.provider.address would name).
const (
	Namespace = "monitoring"
	Name      = "prometheus" // the Deployment and the Service
	URL       = "http://prometheus.monitoring:9090"
)

var (
	//go:embed config.yaml
	config []byte
	//go:embed prometheus.yaml
	manifest string
)

// Config is the throwaway cluster's prometheus.yml (config.yaml).
func Config() []byte { return config }

// Objects renders the throwaway cluster's Prometheus with the given image: namespace monitoring, its
// ServiceAccount and pod-discovery role, the configuration as ConfigMap prometheus, the Deployment (whose pod
// template carries the configuration's hash, so a changed configuration rolls it) and the Service.
func Objects(image string) ([]*unstructured.Unstructured, error) {
	cfg := Config()
	sum := sha256.Sum256(cfg)
	b := strings.NewReplacer("PROMETHEUS_IMAGE", image, "CONFIG_SHA256", hex.EncodeToString(sum[:])).Replace(manifest)
	objs, err := manifests.Decode([]byte(b))
	if err != nil {
		return nil, err
	}
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": Name, "namespace": Namespace},
		"data":     map[string]any{"prometheus.yml": string(cfg)},
	}}
	// After the Namespace, before the Deployment that mounts it.
	out := append([]*unstructured.Unstructured{}, objs[0], cm)
	return append(out, objs[1:]...), nil
}

// Check checks the scrape configuration with promtool (a binary of Component).
func Check(ctx context.Context, promtool string) error {
	dir, err := os.MkdirTemp("", "txmesh-prometheus-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(f, Config(), 0o644); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, promtool, "check", "config", "--syntax-only", f).CombinedOutput(); err != nil {
		return fmt.Errorf("promtool check config (test/cluster/prometheus/config.yaml): %w\n%s", err, out)
	}
	return nil
}

// Deploy applies Prometheus (its image must be on the nodes) and waits until it is available; the scrapes
// start while txmesh comes up.
func Deploy(ctx context.Context, a *manifests.Applier, image string) error {
	objs, err := Objects(image)
	if err != nil {
		return err
	}
	if err := a.Apply(ctx, objs); err != nil {
		return err
	}
	return a.Wait(ctx, manifests.Deployments, Namespace, Name, 3*time.Minute, manifests.DeploymentAvailable)
}
