package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/txmesh/txmesh/test/cluster/istio"
	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

var repo, _ = filepath.Abs("../../..")

// The mesh run: the rows whose subject is the mesh, in this order, all of them runnable on kind (no harness
// component), each with a fault and a run; make e2e's schedule has none of the mesh-only rows.
func TestMeshSchedule(t *testing.T) {
	want := []string{"steady", "bank-outage", "fault-injection", "canary-promote", "canary-rollback"}
	if got := names(meshSchedule); !slices.Equal(got, want) {
		t.Fatalf("mesh schedule %v, want %v", got, want)
	}
	sched, added, err := planFor(true, nil)
	if err != nil || len(added) > 0 {
		t.Fatalf("planFor(mesh): %v, added %v", err, added)
	}
	run, skipped := splitAttached(sched)
	if !slices.Equal(names(run), want) || len(skipped) > 0 {
		t.Fatalf("attached in the mesh: runs %v, not run %v; want all of %v", names(run), rowNames(skipped), want)
	}
	for _, s := range meshSchedule {
		if s.fault == "" || s.run == nil {
			t.Errorf("%s: no fault or no run", s.name)
		}
	}
	for _, n := range []string{"fault-injection", "canary-promote", "canary-rollback"} {
		if inSchedule(schedule, n) {
			t.Errorf("make e2e's schedule has %s: it needs Istio's data plane", n)
		}
	}
}

// A row of the other schedule is refused before anything starts, saying where it runs; a subset of the mesh's
// runs in the mesh's order.
func TestPlanForMesh(t *testing.T) {
	got, _, err := planFor(true, []string{"canary-rollback", "steady"})
	if err != nil || !slices.Equal(names(got), []string{"steady", "canary-rollback"}) {
		t.Fatalf("mesh subset: %v, %v", names(got), err)
	}
	if _, _, err := planFor(true, []string{"node-kill"}); err == nil || !strings.Contains(err.Error(), "does not run in the mesh") {
		t.Errorf("node-kill in the mesh: %v", err)
	}
	if _, _, err := planFor(false, []string{"fault-injection"}); err == nil || !strings.Contains(err.Error(), "-mesh istio") {
		t.Errorf("fault-injection outside the mesh: %v", err)
	}
	if _, _, err := planFor(true, []string{"nope"}); err == nil || !strings.Contains(err.Error(), `unknown scenario "nope"`) {
		t.Errorf("unknown name in the mesh: %v", err)
	}
	if got, _, err := planFor(false, nil); err != nil || len(got) != len(schedule) {
		t.Errorf("make e2e: %d rows, %v; want its whole schedule", len(got), err)
	}
}

// The rows' patches, rendered over kustomize/overlays/kind-mesh as the run renders them: the release
// annotation lands on the Bank's pod template, the allow-list on bank-config, and mesh/fault-injection's
// fault on bank-root's delegating route.
func TestMeshRowPatchesRender(t *testing.T) {
	objs, err := txmesh.Render(repo, "kind-mesh", "localhost:5001/txmesh", "e2e", map[string]string{
		"Deployment/bank":       releasePatch("20260101T000000Z"),
		"ConfigMap/bank-config": allowedCallersPatch(storeID),
	})
	if err != nil {
		t.Fatal(err)
	}
	d := manifests.Find(objs, "Deployment", "bank")
	if a, _, _ := unstructured.NestedString(d.Object, "spec", "template", "metadata", "annotations", releaseAnnotation); a != "20260101T000000Z" {
		t.Errorf("bank's template annotation %s=%q", releaseAnnotation, a)
	}
	cm := manifests.Find(objs, "ConfigMap", "bank-config")
	if got, _, _ := unstructured.NestedString(cm.Object, "data", "ALLOWED_CALLERS"); got != storeID {
		t.Errorf("bank-config ALLOWED_CALLERS %q, want only the Store", got)
	}
	base, err := txmesh.Render(repo, "kind-mesh", "localhost:5001/txmesh", "e2e", nil)
	if err != nil {
		t.Fatal(err)
	}
	cm = manifests.Find(base, "ConfigMap", "bank-config")
	if got, _, _ := unstructured.NestedString(cm.Object, "data", "ALLOWED_CALLERS"); !strings.Contains(got, loadtesterID) || !strings.Contains(got, storeID) {
		t.Errorf("the overlay's own ALLOWED_CALLERS %q: the rollback row's change must be a change", got)
	}
	patch, err := faultPatch(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		patches map[string]string
		fault   bool
	}{{map[string]string{"VirtualService/bank-root": patch}, true}, {nil, false}} {
		objs, err := txmesh.Render(repo, "kind-mesh", "localhost:5001/txmesh", "e2e", c.patches)
		if err != nil {
			t.Fatal(err)
		}
		vs := manifests.Find(objs, "VirtualService", "bank-root")
		routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
		route := routes[0].(map[string]any)
		abort, _, _ := unstructured.NestedFieldNoCopy(route, "fault", "abort", "httpStatus")
		if _, has := route["fault"]; has != c.fault || c.fault && fmt.Sprint(abort) != "503" {
			t.Errorf("patches %v: bank-root's route %v, want fault %v (abort 503)", c.patches != nil, route, c.fault)
		}
		if route["delegate"].(map[string]any)["name"] != "bank" {
			t.Errorf("bank-root's route %v no longer delegates to Flagger's bank", route)
		}
	}
}

func TestRouteWeights(t *testing.T) {
	vs := func(route ...any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "bank"},
			"spec": map[string]any{"http": []any{map[string]any{"route": route}}}}}
	}
	dest := func(host string, w int64) any {
		return map[string]any{"destination": map[string]any{"host": host}, "weight": w}
	}
	p, c, err := routeWeights(vs(dest("bank-primary", 70), dest("bank-canary.txmesh.svc.cluster.local", 30)))
	if err != nil || p != 70 || c != 30 {
		t.Fatalf("weights %d/%d, %v; want 70/30", p, c, err)
	}
	if _, _, err := routeWeights(vs(dest("bank", 100))); err == nil {
		t.Fatal("a route without primary and canary destinations: no error")
	}
	w := &weightWatch{}
	for _, c := range []int64{0, 0, 10, 20, 20, 50, 0} {
		w.note(c)
	}
	if w.maxCanary != 50 || !slices.Equal(w.seen, []int64{0, 10, 20, 50, 0}) {
		t.Fatalf("weight watch: max %d, seen %v", w.maxCanary, w.seen)
	}
}

func TestSidecarless(t *testing.T) {
	pod := func(name string, init, containers []string) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
		for _, c := range init {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: c})
		}
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
		}
		return p
	}
	got := sidecarless([]corev1.Pod{pod("native", []string{"istio-validation", "istio-proxy"}, []string{"bank"}),
		pod("classic", nil, []string{"bank", "istio-proxy"}), pod("bare", []string{"migrate"}, []string{"store"})})
	if !slices.Equal(got, []string{"bare"}) {
		t.Fatalf("sidecarless %v, want [bare]", got)
	}
}

// The mesh client sends every request with the host the gateway routes, to whatever address it is given.
func TestMeshClientHost(t *testing.T) {
	var host string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { host = r.Host }))
	defer srv.Close()
	resp, err := meshClient().Get(srv.URL + "/v1/outbox")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if host != istio.StoreHost {
		t.Fatalf("Host %q, want %s", host, istio.StoreHost)
	}
}

// metricWhere sums the label sets that carry the label, and reads an absent labelled series as 0.
func TestMetricWhere(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("# TYPE store_relay_foreign_answers_total counter\n" +
			"store_relay_foreign_answers_total{code=\"503\"} 4\nstore_relay_foreign_answers_total{code=\"404\"} 2\n" +
			"store_relay_foreign_answers_total_extra 9\n"))
	}))
	defer srv.Close()
	ctx := t.Context()
	for _, c := range []struct {
		name, label string
		want        float64
	}{
		{"store_relay_foreign_answers_total", `code="503"`, 4},
		{"store_relay_foreign_answers_total", "", 6},
		{"store_relay_foreign_answers_total", `code="502"`, 0},
	} {
		if got, err := metricWhere(ctx, srv.URL, c.name, c.label); err != nil || got != c.want {
			t.Errorf("%s %s: %v, %v; want %v", c.name, c.label, got, err, c.want)
		}
	}
	if _, err := metric(ctx, srv.URL, "bank_http_requests_total"); err == nil {
		t.Error("an absent metric read without a label: no error")
	}
}
