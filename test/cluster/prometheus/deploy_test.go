package prometheus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// The throwaway cluster's Prometheus: in namespace monitoring under restricted Pod Security, the configuration
// mounted from the ConfigMap whose hash rolls the pod, an emptyDir TSDB, and a scrape configuration limited
// to namespace txmesh with the apps' and CloudNativePG's jobs.
func TestPrometheusRenders(t *testing.T) {
	objs, err := Objects("txmesh.local/prometheus:v0.316.0")
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetKind() != "Namespace" || objs[0].GetName() != Namespace ||
		objs[0].GetLabels()["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Fatalf("first object %s %s %v, want the restricted Namespace monitoring", objs[0].GetKind(),
			objs[0].GetName(), objs[0].GetLabels())
	}
	d := manifests.Find(objs, "Deployment", Name)
	cm := manifests.Find(objs, "ConfigMap", Name)
	svc := manifests.Find(objs, "Service", Name)
	if d == nil || cm == nil || svc == nil {
		t.Fatal("no Deployment, ConfigMap or Service prometheus")
	}
	cfg, _, _ := unstructured.NestedString(cm.Object, "data", "prometheus.yml")
	sum := sha256.Sum256([]byte(cfg))
	if got := d.GetAnnotations(); got != nil {
		t.Fatalf("Deployment annotations %v", got)
	}
	ann, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "annotations")
	if ann["txmesh.local/config-sha256"] != hex.EncodeToString(sum[:]) {
		t.Errorf("pod template config hash %q, want the ConfigMap's", ann["txmesh.local/config-sha256"])
	}
	c := manifests.FirstContainer(d)
	if c["image"] != "txmesh.local/prometheus:v0.316.0" {
		t.Errorf("image %v", c["image"])
	}
	sc, _ := c["securityContext"].(map[string]any)
	if sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true {
		t.Errorf("container securityContext %v", sc)
	}
	psc, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec", "securityContext")
	if psc["runAsNonRoot"] != true {
		t.Errorf("pod securityContext %v", psc)
	}
	vols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes")
	hasEmpty := false
	for _, v := range vols {
		if _, ok := v.(map[string]any)["emptyDir"]; ok {
			hasEmpty = true
		}
	}
	if !hasEmpty {
		t.Error("no emptyDir volume for the TSDB")
	}
	var pc struct {
		ScrapeConfigs []struct {
			JobName string `json:"job_name"`
			SD      []struct {
				Role       string `json:"role"`
				Namespaces struct {
					Names []string `json:"names"`
				} `json:"namespaces"`
			} `json:"kubernetes_sd_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(cfg), &pc); err != nil {
		t.Fatal(err)
	}
	var jobs []string
	for _, j := range pc.ScrapeConfigs {
		jobs = append(jobs, j.JobName)
		if len(j.SD) != 1 || j.SD[0].Role != "pod" || strings.Join(j.SD[0].Namespaces.Names, ",") != "txmesh" {
			t.Errorf("job %s discovers %+v, want pods in txmesh only", j.JobName, j.SD)
		}
	}
	if strings.Join(jobs, ",") != "txmesh-apps,cnpg-instances" {
		t.Errorf("scrape jobs %v", jobs)
	}
}

// promtool checks the cluster Prometheus's scrape configuration: built into the cache when it is not there
// (minutes, once; the cluster's Prometheus needs the same build).
func TestPrometheusConfigIsValid(t *testing.T) {
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := gobuild.Ensure(context.Background(), cache, Component(), io.Discard)
	if err != nil {
		t.Fatalf("build Prometheus: %v", err)
	}
	promtool := bins["promtool"]
	if promtool == "" {
		t.Fatalf("the Prometheus build has no promtool: %v", bins)
	}
	if err := Check(context.Background(), promtool); err != nil {
		t.Fatal(err)
	}
	// A broken configuration is refused: the check can fail.
	defer func(c []byte) { config = c }(config)
	config = append(append([]byte{}, config...), []byte("scrape_configs: [{job_name: x, bogus: 1}]\n")...)
	if err := Check(context.Background(), promtool); err == nil {
		t.Fatal("promtool accepted a configuration with an unknown field")
	}
}
