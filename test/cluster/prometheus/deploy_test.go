package prometheus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"path/filepath"
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
	rules := repoRules(t)
	objs, err := Objects("txmesh.local/prometheus:v0.316.0", rules)
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
	ruleFile, _, _ := unstructured.NestedString(cm.Object, "data", RuleFileName)
	if ruleFile != string(rules) || !strings.HasPrefix(ruleFile, "groups:") {
		t.Errorf("ConfigMap's %s is not the shipped rules' groups:\n%.300s", RuleFileName, ruleFile)
	}
	sum := sha256.Sum256([]byte(cfg + ruleFile))
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
		RuleFiles     []string `json:"rule_files"`
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
	if strings.Join(pc.RuleFiles, ",") != RuleFileName {
		t.Errorf("rule_files %v, want [%s]", pc.RuleFiles, RuleFileName)
	}
}

// repoRules is Rules of this checkout.
func repoRules(t *testing.T) []byte {
	t.Helper()
	r, err := Rules(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// promtool is the cached (or just built) promtool.
func promtool(t *testing.T) string {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := gobuild.Ensure(context.Background(), cache, Component(), io.Discard)
	if err != nil {
		t.Fatalf("build Prometheus: %v", err)
	}
	if bins["promtool"] == "" {
		t.Fatalf("the Prometheus build has no promtool: %v", bins)
	}
	return bins["promtool"]
}

// promtool checks the cluster Prometheus's scrape configuration and the shipped rules: built into the cache
// when it is not there (minutes, once; the cluster's Prometheus needs the same build).
func TestPrometheusConfigIsValid(t *testing.T) {
	pt, rules := promtool(t), repoRules(t)
	if err := Check(context.Background(), pt, rules); err != nil {
		t.Fatal(err)
	}
	// A broken rule is refused: the check can fail.
	bad := append(append([]byte{}, rules...), []byte("- name: broken\n  rules:\n  - alert: X\n    expr: rate(x[1m]\n")...)
	if err := Check(context.Background(), pt, bad); err == nil {
		t.Fatal("promtool accepted a rule with a broken expression")
	}
	// A broken configuration is refused.
	defer func(c []byte) { config = c }(config)
	config = append(append([]byte{}, config...), []byte("scrape_configs: [{job_name: x, bogus: 1}]\n")...)
	if err := Check(context.Background(), pt, rules); err == nil {
		t.Fatal("promtool accepted a configuration with an unknown field")
	}
}
