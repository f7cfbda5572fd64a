package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/txmesh/txmesh/test/cluster/barman"
	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/gobuild"
	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

const repoRoot = "../../.."

func readDashboard(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, DashboardPath))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var testVars = dashboardVars

// The dashboard: every panel has a query on the Prometheus datasource variable, every query expands, and the
// dashboard shows what docs/kubernetes.md promises.
func TestDashboardQueries(t *testing.T) {
	qs, err := dashboardQueries(readDashboard(t))
	if err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, q := range qs {
		expr, err := expand(q.Expr, testVars)
		if err != nil {
			t.Errorf("%s/%s: %v", q.Panel, q.RefID, err)
		}
		if strings.Contains(expr, "$__") || strings.Contains(expr, "$namespace") {
			t.Errorf("%s/%s: not expanded: %s", q.Panel, q.RefID, expr)
		}
		all += expr + "\n"
	}
	for _, want := range []string{"bank_transactions_total", "bank_http_requests_total", "store_outbox_backlog",
		"store_outbox_oldest_pending_age_seconds", "store_breaker_state", "store_deliveries_total",
		"cnpg_pg_replication_in_recovery"} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel queries %s", want)
		}
	}
	if len(qs) < 15 {
		t.Errorf("%d queries, want the dashboard's ≥ 15", len(qs))
	}
}

var metricName = regexp.MustCompile(`\b((?:bank|store|cnpg|barman_cloud_cloudnative_pg_io)_[a-z_]+)\b`)

// knownMetrics are the metrics the apps, CloudNativePG v1.30's exporter and the Barman Cloud plugin really
// export: the apps' from their source (Namespace + Name of each collector; the web package's under both
// namespaces), CloudNativePG's from its module (the collector's cnpg_collector_* and the default monitoring
// queries' cnpg_<query>_<column>), the plugin's from its module (barman_cloud_cloudnative_pg_io_*, served
// through the instance's exporter).
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	nsName := regexp.MustCompile(`Namespace:\s*"(\w+)",\s*Name:\s*"(\w+)"`)
	webName := regexp.MustCompile(`Namespace:\s*(?:ns|namespace),\s*Name:\s*"(\w+)"`)
	err := filepath.WalkDir(filepath.Join(repoRoot, "src", "internal"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range nsName.FindAllStringSubmatch(string(b), -1) {
			known[m[1]+"_"+m[2]] = true
		}
		for _, m := range webName.FindAllStringSubmatch(string(b), -1) {
			known["bank_"+m[1]], known["store_"+m[1]] = true, true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !known["store_outbox_backlog"] || !known["bank_http_requests_total"] {
		t.Fatalf("the apps' metrics not found in src/internal (found %d)", len(known))
	}
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	operator, err := gobuild.ModuleDir(context.Background(), cache, cnpg.Component())
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(operator, "pkg/management/postgres/webserver/metricserver/pg_collector.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`Name:\s*"(\w+)"`).FindAllStringSubmatch(string(src), -1) {
		known["cnpg_collector_"+m[1]] = true
	}
	y, err := os.ReadFile(filepath.Join(operator, "config/manager/default-monitoring.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(y, &cm); err != nil {
		t.Fatal(err)
	}
	var queries map[string]struct {
		Metrics []map[string]struct {
			Usage string `json:"usage"`
		} `json:"metrics"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["queries"]), &queries); err != nil {
		t.Fatal(err)
	}
	for q, spec := range queries {
		for _, m := range spec.Metrics {
			for col, c := range m {
				if c.Usage != "LABEL" {
					known["cnpg_"+q+"_"+col] = true
				}
			}
		}
	}
	if !known["cnpg_pg_replication_in_recovery"] || !known["cnpg_collector_up"] {
		t.Fatalf("CloudNativePG's metrics not found in %s", operator)
	}
	plugin, err := gobuild.ModuleDir(context.Background(), cache, barman.Component())
	if err != nil {
		t.Fatal(err)
	}
	src, err = os.ReadFile(filepath.Join(plugin, "internal/cnpgi/instance/metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`buildFqName\("(\w+)"\)`).FindAllStringSubmatch(string(src), -1) {
		known["barman_cloud_cloudnative_pg_io_"+m[1]] = true
	}
	if !known["barman_cloud_cloudnative_pg_io_last_available_backup_timestamp"] {
		t.Fatalf("the Barman Cloud plugin's metrics not found in %s", plugin)
	}
	return known
}

// exported: m itself is known, or it is a series (_bucket, _sum, _count) of a known histogram or summary.
func exported(known map[string]bool, m string) bool {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(m, suffix); ok && known[b] {
			return true
		}
	}
	return known[m]
}

// Every metric the dashboard names is one that is exported (knownMetrics).
func TestDashboardMetricsExist(t *testing.T) {
	known := knownMetrics(t)
	qs, err := dashboardQueries(readDashboard(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		for _, m := range metricName.FindAllString(q.Expr, -1) {
			if !exported(known, m) {
				t.Errorf("%s/%s: %s is not a metric the apps or CloudNativePG export", q.Panel, q.RefID, m)
			}
		}
	}
}

// Every metric the shipped alert rules name is one that is exported (knownMetrics): a misspelt one leaves its
// alert silent for ever, and promtool's unit tests, fed the same name, cannot tell.
func TestRuleMetricsExist(t *testing.T) {
	known := knownMetrics(t)
	b, err := prometheus.Rules(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := prometheus.Alerts(b)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rules {
		for _, m := range metricName.FindAllString(r.Expr, -1) {
			n++
			if !exported(known, m) {
				t.Errorf("%s: %s is not a metric the apps, CloudNativePG or the Barman Cloud plugin export", r.Alert, m)
			}
		}
	}
	if n < 10 {
		t.Errorf("%d metric names in %s's expressions, want ≥ 10", n, prometheus.RulesFile)
	}
}

// The check fails on a broken dashboard: a panel without a query, another datasource, an empty expression,
// no datasource variable; and on a variable it does not know.
func TestDashboardQueriesRejectsBrokenDashboards(t *testing.T) {
	good := `"templating":{"list":[{"name":"datasource","type":"datasource","query":"prometheus"}]}`
	ds := `"datasource":{"type":"prometheus","uid":"${datasource}"}`
	for name, d := range map[string]string{
		"no query":      `{"uid":"u","title":"t",` + good + `,"panels":[{"id":1,"type":"timeseries","title":"p",` + ds + `}]}`,
		"other source":  `{"uid":"u","title":"t",` + good + `,"panels":[{"id":1,"type":"stat","title":"p","datasource":{"type":"loki","uid":"x"},"targets":[{"refId":"A","expr":"up"}]}]}`,
		"empty expr":    `{"uid":"u","title":"t",` + good + `,"panels":[{"id":1,"type":"stat","title":"p",` + ds + `,"targets":[{"refId":"A","expr":" "}]}]}`,
		"in a row":      `{"uid":"u","title":"t",` + good + `,"panels":[{"id":1,"type":"row","title":"r","panels":[{"id":2,"type":"stat","title":"p",` + ds + `}]}]}`,
		"no ds var":     `{"uid":"u","title":"t","panels":[{"id":1,"type":"stat","title":"p",` + ds + `,"targets":[{"refId":"A","expr":"up"}]}]}`,
		"not json":      `{"uid":`,
		"bad variable":  `{"uid":"u","title":"t","templating":{"list":[{"name":"datasource","type":"datasource","query":"prometheus"},{"name":"ns","type":"query",` + ds + `,"query":"up"}]},"panels":[]}`,
		"untitled dash": `{"uid":"u",` + good + `,"panels":[]}`,
	} {
		if _, err := dashboardQueries([]byte(d)); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	ok := `{"uid":"u","title":"t",` + good + `,"panels":[{"id":1,"type":"row","title":"r","panels":[{"id":2,"type":"stat","title":"p",` + ds + `,"targets":[{"refId":"A","expr":"up"}]}]}]}`
	qs, err := dashboardQueries([]byte(ok))
	if err != nil || len(qs) != 1 || qs[0].Panel != "p" {
		t.Fatalf("a panel in a collapsed row: %v %v", qs, err)
	}
	if _, err := expand(`rate(x{a="$nope"}[$__rate_interval])`, testVars); err == nil {
		t.Error("an unknown variable expanded")
	}
	got, err := expand(`label_replace(x{namespace="${namespace}"}, "c", "$1", "pod", "(.+)")`, testVars)
	if err != nil || got != `label_replace(x{namespace="txmesh"}, "c", "$1", "pod", "(.+)")` {
		t.Errorf("expand: %q %v", got, err)
	}
}

// The ConfigMap that Flux applies (flux/infrastructure/configs) carries the dashboard file as is, labelled
// for the kube-prometheus-stack Grafana sidecar, in Grafana's namespace.
func TestDashboardConfigMap(t *testing.T) {
	objs, err := manifests.Render(filepath.Join(repoRoot, "flux", "infrastructure", "configs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "ConfigMap" || o.GetName() != "txmesh-dashboard" {
			continue
		}
		if o.GetNamespace() != "monitoring" || o.GetLabels()["grafana_dashboard"] != "1" {
			t.Fatalf("ConfigMap %s/%s labels %v", o.GetNamespace(), o.GetName(), o.GetLabels())
		}
		data, _, _ := unstructured.NestedString(o.Object, "data", "txmesh.json")
		if data != string(readDashboard(t)) {
			t.Fatal("the ConfigMap's txmesh.json is not the dashboard file")
		}
		return
	}
	t.Fatal("flux/infrastructure/configs renders no ConfigMap txmesh-dashboard")
}

// The query check goes through the API server's service proxy to Prometheus (here a fake API server that
// answers as Prometheus would) and fails naming each panel whose query has no data: no series, only NaN, or
// an error from Prometheus. The real dashboard's queries pass when every one has a series.
func TestRunQueriesNamesPanelsWithoutData(t *testing.T) {
	const path = "/api/v1/namespaces/monitoring/services/prometheus:http/proxy/api/v1/query"
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.Error(w, "not the service proxy: "+r.URL.Path, http.StatusNotFound)
			return
		}
		q := r.URL.Query().Get("query")
		asked = append(asked, q)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.Contains(q, "bad("):
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"parse error"}`)
		case strings.Contains(q, "store_breaker_transitions_total"):
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
		case strings.Contains(q, "nan_only"):
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}`)
		default:
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"p"},"value":[1,"0"]}]}}`)
		}
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, QPS: 1000, Burst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cs: cs}
	real, err := dashboardQueries(readDashboard(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.runQueries(context.Background(), real)
	if err != nil || n != len(real) {
		t.Fatalf("the dashboard's queries with data everywhere: %d series, %v", n, err)
	}
	for _, q := range asked {
		if strings.Contains(q, "$namespace") || strings.Contains(q, "$__") {
			t.Errorf("variables not expanded: %q", q)
		}
	}
	if !strings.Contains(strings.Join(asked, "\n"), `store_outbox_backlog{namespace="txmesh"}`) {
		t.Errorf("no query for the txmesh namespace: %q", asked)
	}
	broken := append(real[:2:2],
		panelQuery{Panel: "Breaker transitions", RefID: "A", Expr: `sum(increase(store_breaker_transitions_total{namespace="$namespace"}[$__range]))`},
		panelQuery{Panel: "Only NaN", RefID: "B", Expr: `nan_only`},
		panelQuery{Panel: "Typo", RefID: "C", Expr: `bad(`},
		panelQuery{Panel: "Unknown variable", RefID: "D", Expr: `up{pod="$pod"}`})
	_, err = e.runQueries(context.Background(), broken)
	if err == nil {
		t.Fatal("queries without data passed")
	}
	for _, want := range []string{`"Breaker transitions"/A: no data`, `"Only NaN"/B: no data`, `"Typo"/C: prometheus: bad_data`,
		`"Unknown variable"/D: unknown variable(s) $pod`, "4 of 6 queries without data"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
