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
	"sigs.k8s.io/yaml"

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

// RulesFile is the shipped PrometheusRule, relative to the repository: what the Prometheus Operator loads in
// production, and what this Prometheus evaluates in the e2e.
const RulesFile = "kustomize/components/monitoring/prometheusrules.yaml"

// Rules reads the PrometheusRule at RulesFile in repo and returns its spec as a Prometheus rule file (`groups:
// …`), as the Prometheus Operator writes it for its Prometheus.
func Rules(repo string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(repo, RulesFile))
	if err != nil {
		return nil, err
	}
	objs, err := manifests.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", RulesFile, err)
	}
	if len(objs) != 1 || objs[0].GetKind() != "PrometheusRule" {
		return nil, fmt.Errorf("%s: want exactly one PrometheusRule", RulesFile)
	}
	spec, ok, _ := unstructured.NestedMap(objs[0].Object, "spec")
	if !ok {
		return nil, fmt.Errorf("%s: PrometheusRule without a spec", RulesFile)
	}
	return yaml.Marshal(spec)
}

// Objects renders the throwaway cluster's Prometheus with the given image and rule file (Rules): namespace
// monitoring, its ServiceAccount and pod-discovery role, the configuration and the rules as ConfigMap
// prometheus, the Deployment (whose pod template carries their hash, so a change rolls it) and the Service.
func Objects(image string, rules []byte) ([]*unstructured.Unstructured, error) {
	cfg := Config()
	sum := sha256.Sum256(append(append([]byte{}, cfg...), rules...))
	b := strings.NewReplacer("PROMETHEUS_IMAGE", image, "CONFIG_SHA256", hex.EncodeToString(sum[:])).Replace(manifest)
	objs, err := manifests.Decode([]byte(b))
	if err != nil {
		return nil, err
	}
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": Name, "namespace": Namespace},
		"data":     map[string]any{"prometheus.yml": string(cfg), RuleFileName: string(rules)},
	}}
	// After the Namespace, before the Deployment that mounts it.
	out := append([]*unstructured.Unstructured{}, objs[0], cm)
	return append(out, objs[1:]...), nil
}

// RuleFileName is the rule file beside prometheus.yml (config.yaml's rule_files).
const RuleFileName = "txmesh.rules.yml"

// Check checks the scrape configuration and the rules with promtool (a binary of Component).
func Check(ctx context.Context, promtool string, rules []byte) error {
	dir, err := os.MkdirTemp("", "txmesh-prometheus-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	f, r := filepath.Join(dir, "prometheus.yml"), filepath.Join(dir, RuleFileName)
	if err := os.WriteFile(f, Config(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(r, rules, 0o644); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, promtool, "check", "config", "--syntax-only", f).CombinedOutput(); err != nil {
		return fmt.Errorf("promtool check config (test/cluster/prometheus/config.yaml): %w\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, promtool, "check", "rules", r).CombinedOutput(); err != nil {
		return fmt.Errorf("promtool check rules (%s): %w\n%s", RulesFile, err, out)
	}
	return nil
}

// Deploy applies Prometheus (its image must be on the nodes) and waits until it is available; the scrapes
// start while txmesh comes up.
func Deploy(ctx context.Context, a *manifests.Applier, image string, rules []byte) error {
	objs, err := Objects(image, rules)
	if err != nil {
		return err
	}
	if err := a.Apply(ctx, objs); err != nil {
		return err
	}
	return a.Wait(ctx, manifests.Deployments, Namespace, Name, 3*time.Minute, manifests.DeploymentAvailable)
}
