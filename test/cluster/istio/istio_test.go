package istio

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

var repo, _ = filepath.Abs("../../..")

// The Istio the mesh run installs is the one Flux installs: every chart of flux's istio.yaml and the
// workflow's ISTIO_CHART are Version.
func TestVersionAgrees(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repo, "flux/infrastructure/controllers/base/istio.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var charts []string
	for _, doc := range strings.Split(string(b), "\n---") {
		var hr struct {
			Spec struct {
				Chart struct {
					Spec struct {
						Chart, Version string
					}
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &hr); err != nil {
			t.Fatal(err)
		}
		if c := hr.Spec.Chart.Spec; c.Chart != "" {
			charts = append(charts, c.Chart)
			if c.Version != Version {
				t.Errorf("flux installs Istio chart %s at %s, the mesh run at %s", c.Chart, c.Version, Version)
			}
		}
	}
	if len(charts) < 3 {
		t.Fatalf("flux's istio.yaml: charts %v, want base, cni and istiod", charts)
	}
	wf, err := os.ReadFile(filepath.Join(repo, ".github/workflows/e2e.yml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+ISTIO_CHART:\s*(\S+)`).FindSubmatch(wf)
	if m == nil || string(m[1]) != Version {
		t.Fatalf("the workflow's ISTIO_CHART: %q, want %s", m, Version)
	}
}

// kustomize/overlays/kind-mesh routes the e2e's client as this package says: a Gateway on the gateway chart's
// pods for StoreHost, Flagger's Store VirtualService bound to it and the mesh, and the Store allowing the
// gateway's identity.
func TestKindMeshOverlayMatches(t *testing.T) {
	objs, err := manifests.Render(filepath.Join(repo, "kustomize/overlays/kind-mesh"))
	if err != nil {
		t.Fatal(err)
	}
	gw := manifests.Find(objs, "Gateway", "e2e-client")
	if gw == nil {
		t.Fatal("no Gateway e2e-client")
	}
	// The gateway chart labels its pods istio=<release name without "istio-">.
	if sel, _, _ := unstructured.NestedString(gw.Object, "spec", "selector", "istio"); sel != strings.TrimPrefix(GatewayService, "istio-") {
		t.Errorf("Gateway selects istio=%q, the chart's release %s labels istio=%s", sel, GatewayService,
			strings.TrimPrefix(GatewayService, "istio-"))
	}
	servers, _, _ := unstructured.NestedSlice(gw.Object, "spec", "servers")
	if len(servers) != 1 || !slices.Contains(strSlice(servers[0].(map[string]any)["hosts"]), "txmesh/"+StoreHost) {
		t.Errorf("Gateway servers %v, want one for txmesh/%s", servers, StoreHost)
	}
	c := manifests.Find(objs, "Canary", "store")
	if c == nil {
		t.Fatal("no Canary store")
	}
	hosts, _, _ := unstructured.NestedStringSlice(c.Object, "spec", "service", "hosts")
	gws, _, _ := unstructured.NestedStringSlice(c.Object, "spec", "service", "gateways")
	if !slices.Equal(hosts, []string{StoreHost}) || !slices.Equal(gws, []string{"e2e-client", "mesh"}) {
		t.Errorf("Canary store: hosts %v, gateways %v; want [%s] and [e2e-client mesh]", hosts, gws, StoreHost)
	}
	ap := manifests.Find(objs, "AuthorizationPolicy", "store-from-e2e-client")
	if ap == nil {
		t.Fatal("no AuthorizationPolicy store-from-e2e-client")
	}
	rules, _, _ := unstructured.NestedSlice(ap.Object, "spec", "rules")
	want := "cluster.local/ns/" + GatewayNamespace + "/sa/" + GatewayService
	if len(rules) != 1 || !strings.Contains(strings.Join(principals(rules[0]), " "), want) {
		t.Errorf("store-from-e2e-client rules %v, want the principal %s", rules, want)
	}
	if d := manifests.Find(objs, "Deployment", "bank"); d == nil {
		t.Fatal("no Deployment bank")
	} else if cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers"); len(cs) != 1 ||
		cs[0].(map[string]any)["image"] != "localhost:5001/txmesh:e2e" {
		t.Errorf("bank runs %v, want only localhost:5001/txmesh:e2e (no sidecar of its own, no TLS)", cs)
	}
}

func strSlice(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, s := range l {
		out = append(out, s.(string))
	}
	return out
}

func principals(rule any) []string {
	var out []string
	from, _ := rule.(map[string]any)["from"].([]any)
	for _, f := range from {
		src, _ := f.(map[string]any)["source"].(map[string]any)
		out = append(out, strSlice(src["principals"])...)
	}
	return out
}

// A namespace without the injection label is refused before anything is deployed, saying how to fix it.
func TestCheckInjected(t *testing.T) {
	ctx := context.Background()
	ns := func(labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "txmesh", Labels: labels}}
	}
	for _, c := range []struct {
		name string
		cs   *fake.Clientset
		want string
	}{
		{"missing", fake.NewClientset(), "apply mesh/ first"},
		{"not labelled", fake.NewClientset(ns(nil)), `istio-injection=""`},
		{"disabled", fake.NewClientset(ns(map[string]string{"istio-injection": "disabled"})), `want enabled`},
		{"enabled", fake.NewClientset(ns(map[string]string{"istio-injection": "enabled"})), ""},
	} {
		err := CheckInjected(ctx, c.cs, "txmesh")
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestGatewayURL(t *testing.T) {
	ctx := context.Background()
	if _, err := GatewayURL(ctx, fake.NewClientset()); err == nil || !strings.Contains(err.Error(), "chart gateway") {
		t.Fatalf("no gateway: %v, want it named", err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: GatewayService, Namespace: GatewayNamespace},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.7.8", Ports: []corev1.ServicePort{{Name: "status-port", Port: 15021},
			{Name: "http2", Port: 80}}}}
	got, err := GatewayURL(ctx, fake.NewClientset(svc))
	if err != nil || got != "http://10.96.7.8:80" {
		t.Fatalf("GatewayURL: %q, %v", got, err)
	}
	if u := MetricsURL("10.244.1.5"); u != "http://10.244.1.5:15020/stats/prometheus" {
		t.Fatalf("MetricsURL %s", u)
	}
}
