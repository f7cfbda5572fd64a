package deploy

import (
	"crypto/sha256"
	"encoding/hex"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The throwaway cluster's Prometheus (addons/prometheus.yaml): where it runs and the in-cluster address of its
// HTTP API (what a Flagger -metrics-server or a MetricTemplate's spec.provider.address would name).
const (
	MonitoringNamespace = "monitoring"
	PrometheusName      = "prometheus" // the Deployment and the Service
	PrometheusURL       = "http://prometheus.monitoring:9090"
)

// PrometheusConfig is the throwaway cluster's prometheus.yml (addons/prometheus-config.yaml).
func PrometheusConfig() ([]byte, error) { return addon("prometheus-config.yaml") }

// Prometheus renders the throwaway cluster's Prometheus with the given image: namespace monitoring, its
// ServiceAccount and pod-discovery role, the configuration as ConfigMap prometheus, the Deployment (whose pod
// template carries the configuration's hash, so a changed configuration rolls it) and the Service.
func Prometheus(image string) ([]*unstructured.Unstructured, error) {
	cfg, err := PrometheusConfig()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cfg)
	b, err := addon("prometheus.yaml", "PROMETHEUS_IMAGE", image, "CONFIG_SHA256", hex.EncodeToString(sum[:]))
	if err != nil {
		return nil, err
	}
	objs, err := Decode(b)
	if err != nil {
		return nil, err
	}
	cm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": PrometheusName, "namespace": MonitoringNamespace},
		"data":     map[string]any{"prometheus.yml": string(cfg)},
	}}
	// After the Namespace, before the Deployment that mounts it.
	out := append([]*unstructured.Unstructured{}, objs[0], cm)
	return append(out, objs[1:]...), nil
}
