package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

// metrics: after another minute of load, the cluster's Prometheus has every target up (both apps' replicas,
// the six PostgreSQL instances), every query of the Grafana dashboard returns data, or the row fails naming
// the panel, and every alert rule's selectors have series with the labels the rule takes. It needs the
// harness's Prometheus.
var metrics = scenario{
	name: "metrics",
	fault: "every query of the Grafana dashboard answered with data by the cluster's Prometheus after the load; " +
		"every alert rule's series there, with the labels it reads",
	needs: []string{"prometheus"},
	run:   dashboardMetrics,
}

// DashboardPath is the Grafana dashboard of txmesh, relative to the repository: the ConfigMap that
// flux/infrastructure/configs generates from it is what kube-prometheus-stack's Grafana sidecar loads.
const DashboardPath = "flux/infrastructure/configs/dashboards/txmesh.json"

// panelQuery is one query of a dashboard: a panel's target, or a template variable's query.
type panelQuery struct {
	Panel string // the panel's title, or "variable <name>"
	RefID string
	Expr  string
}

// grafanaPanel is the part of a Grafana panel the check reads (rows hold their panels when collapsed).
type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

// The dashboard's Prometheus: the datasource variable (type datasource, query "prometheus"), so the dashboard
// follows whatever Prometheus datasource the Grafana has (kube-prometheus-stack's is the default).
var prometheusDS = datasourceRef{Type: "prometheus", UID: "${datasource}"}

// labelValues is Grafana's label_values(metric, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// dashboardQueries parses a Grafana dashboard and returns every query it runs: each target of each panel
// (rows included, collapsed or not), then each query variable as the PromQL Grafana would evaluate for it.
// Every panel but a row must have a query, every query an expression, and every panel and target the
// Prometheus datasource variable.
func dashboardQueries(b []byte) ([]panelQuery, error) {
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	if d.UID == "" || d.Title == "" {
		return nil, errors.New("dashboard without uid or title")
	}
	hasDS := false
	var out []panelQuery
	var errs []string
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			var q string
			if json.Unmarshal(v.Query, &q) == nil && q == "prometheus" && "${"+v.Name+"}" == prometheusDS.UID {
				hasDS = true
			}
		case "query":
			var q struct{ Query string }
			if err := json.Unmarshal(v.Query, &q); err != nil {
				if err := json.Unmarshal(v.Query, &q.Query); err != nil {
					errs = append(errs, fmt.Sprintf("variable %s: query neither a string nor {query}", v.Name))
					continue
				}
			}
			if v.Datasource == nil || *v.Datasource != prometheusDS {
				errs = append(errs, fmt.Sprintf("variable %s: datasource %v, want %v", v.Name, v.Datasource, prometheusDS))
			}
			m := labelValues.FindStringSubmatch(strings.TrimSpace(q.Query))
			if m == nil {
				errs = append(errs, fmt.Sprintf("variable %s: query %q is not label_values(metric, label)", v.Name, q.Query))
				continue
			}
			out = append(out, panelQuery{Panel: "variable " + v.Name, RefID: m[2],
				Expr: fmt.Sprintf("count by (%s) (%s)", m[2], m[1])})
		}
	}
	if !hasDS {
		errs = append(errs, `no datasource variable "datasource" of type prometheus`)
	}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if p.Title == "" {
				errs = append(errs, name+": no title")
			}
			if p.Datasource == nil || *p.Datasource != prometheusDS {
				errs = append(errs, fmt.Sprintf("%s: datasource %v, want %v", name, p.Datasource, prometheusDS))
			}
			if len(p.Targets) == 0 {
				errs = append(errs, name+": no query")
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					errs = append(errs, fmt.Sprintf("%s: target %s has no expression", name, t.RefID))
				}
				if t.Datasource != nil && *t.Datasource != prometheusDS {
					errs = append(errs, fmt.Sprintf("%s: target %s datasource %v", name, t.RefID, t.Datasource))
				}
				out = append(out, panelQuery{Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
			}
		}
	}
	walk(d.Panels)
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return out, nil
}

// grafanaVar is a Grafana variable reference: $name, ${name} or ${name:format}. Digits only ($1) is a
// label_replace group, not a variable.
var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// expand substitutes Grafana's variables as Grafana would before sending a query; an unknown variable is an
// error (Grafana would send it as is and Prometheus would reject or mismatch it).
func expand(expr string, vars map[string]string) (string, error) {
	var unknown []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		if v, ok := vars[name]; ok {
			return v
		}
		if _, err := strconv.Atoi(name); err == nil {
			return m
		}
		unknown = append(unknown, m)
		return m
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown variable(s) %s", strings.Join(unknown, ", "))
	}
	return out, nil
}

// promResult is the answer of Prometheus's /api/v1/query.
type promResult struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// promQuery runs an instant query over the API server's service proxy to the cluster's Prometheus and returns
// the number of series with a number (not NaN) for a value.
func (e *env) promQuery(ctx context.Context, q string) (int, promResult, error) {
	var res promResult
	path := fmt.Sprintf("/api/v1/namespaces/%s/services/%s:http/proxy/api/v1/query", prometheus.Namespace,
		prometheus.Name)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	b, err := e.cs.CoreV1().RESTClient().Get().AbsPath(path).Param("query", q).DoRaw(ctx)
	if jerr := json.Unmarshal(b, &res); jerr != nil {
		if err != nil {
			return 0, res, err
		}
		return 0, res, fmt.Errorf("answer of Prometheus not JSON: %w", jerr)
	}
	if res.Status != "success" {
		return 0, res, fmt.Errorf("prometheus: %s: %s", res.ErrorType, res.Error)
	}
	n := 0
	for _, s := range res.Data.Result {
		if len(s.Value) != 2 {
			continue
		}
		str, _ := s.Value[1].(string)
		if v, err := strconv.ParseFloat(str, 64); err == nil && !math.IsNaN(v) {
			n++
		}
	}
	return n, res, nil
}

// dashboardMetrics is the metrics scenario: after a minute more of load (the steady scenario's before it),
// every target's scrape is up, and every query of the Grafana dashboard returns data from the real
// Prometheus, with Grafana's variables set as the dashboard's defaults would set them. A query without data
// fails the row, named by its panel.
func dashboardMetrics(ctx context.Context, e *env, r *Row) error {
	b, err := os.ReadFile(filepath.Join(e.opts.Repo, DashboardPath))
	if err != nil {
		return err
	}
	queries, err := dashboardQueries(b)
	if err != nil {
		return fmt.Errorf("%s: %w", DashboardPath, err)
	}
	if err := sleepCtx(ctx, 60*time.Second); err != nil {
		return err
	}
	// Targets: both apps' replicas and the six PostgreSQL instances, all up.
	_, up, err := e.promQuery(ctx, fmt.Sprintf(`up{namespace=%q}`, namespace))
	if err != nil {
		return fmt.Errorf("query up: %w", err)
	}
	byJob := map[string][2]int{}
	for _, s := range up.Data.Result {
		c := byJob[s.Metric["job"]]
		c[1]++
		if len(s.Value) == 2 && s.Value[1] == "1" {
			c[0]++
		}
		byJob[s.Metric["job"]] = c
	}
	var jobs []string
	for j, c := range byJob {
		jobs = append(jobs, fmt.Sprintf("%s %d/%d", j, c[0], c[1]))
		if c[0] != c[1] {
			return fmt.Errorf("prometheus: %d of %d %s targets down", c[1]-c[0], c[1], j)
		}
	}
	sort.Strings(jobs)
	if byJob["txmesh-apps"][0] < 4 || byJob["cnpg-instances"][0] != 6 {
		return fmt.Errorf("prometheus targets up: %s; want ≥ 4 txmesh-apps (2 Bank, 2 Store) and 6 cnpg-instances",
			strings.Join(jobs, ", "))
	}
	r.Checks = append(r.Checks, "Prometheus "+prometheus.URL+" targets up: "+strings.Join(jobs, ", "))
	series, err := e.runQueries(ctx, queries)
	if err != nil {
		return err
	}
	r.Checks = append(r.Checks, fmt.Sprintf("dashboard %s: all %d queries (panels and variables) returned data, %d series",
		DashboardPath, len(queries), series))
	return e.alertInputs(ctx, r)
}

// alertInputs: every selector of every shipped alert rule, as Prometheus's own parser reads it, has series in
// the cluster's Prometheus carrying each label the rule groups, matches or relabels by. A selector whose event
// has not happened (a 5xx) counts when its labels exist.
func (e *env) alertInputs(ctx context.Context, r *Row) error {
	b, err := prometheus.Rules(e.opts.Repo)
	if err != nil {
		return err
	}
	rules, err := prometheus.Alerts(b)
	if err != nil {
		return fmt.Errorf("%s: %w", prometheus.RulesFile, err)
	}
	inputs, err := prometheus.Inputs(ctx, e.promGet, rules)
	if err != nil {
		return err
	}
	// The window: since the cluster's Prometheus started (this row runs minutes after it), not only now.
	seen, err := prometheus.CheckInputs(ctx, e.promGet, inputs, time.Now().Add(-30*time.Minute), time.Now())
	if err != nil {
		return err
	}
	var bad, relaxed []string
	for _, s := range seen {
		switch {
		case !s.OK():
			bad = append(bad, s.String())
		case s.Series == 0:
			relaxed = append(relaxed, s.String())
		}
	}
	check := fmt.Sprintf("alert rules: %d alerts read %d selectors, each with series and the labels it takes",
		len(rules), len(seen))
	if len(relaxed) > 0 {
		check += "; not happened yet, labels there: " + strings.Join(relaxed, "; ")
	}
	r.Checks = append(r.Checks, check)
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d alert-rule selectors not served as the rules read them: %s", len(bad), len(seen),
			strings.Join(bad, "; "))
	}
	return nil
}

// promGet is a prometheus.Getter over the API server's service proxy to the cluster's Prometheus.
func (e *env) promGet(ctx context.Context, api string, q url.Values) ([]byte, error) {
	req := e.cs.CoreV1().RESTClient().Get().AbsPath(fmt.Sprintf("/api/v1/namespaces/%s/services/%s:http/proxy%s",
		prometheus.Namespace, prometheus.Name, api))
	for k, vs := range q {
		for _, v := range vs {
			req = req.Param(k, v)
		}
	}
	return req.DoRaw(ctx)
}

// dashboardVars are Grafana's values for the dashboard's variables: the namespace variable's default, the
// datasource, $__rate_interval as Grafana computes it for a datasource with the default 15 s scrape interval
// (4 × 15 s), $__range a window the run's data covers.
var dashboardVars = map[string]string{"namespace": namespace, "datasource": "prometheus", "__rate_interval": "1m",
	"__interval": "15s", "__range": "10m"}

// runQueries runs each query (variables expanded) against the cluster's Prometheus and returns the number of
// series they returned; a query that fails, or returns no series with a number, is an error naming its panel.
func (e *env) runQueries(ctx context.Context, queries []panelQuery) (int, error) {
	var empty []string
	series := 0
	for _, q := range queries {
		expr, err := expand(q.Expr, dashboardVars)
		if err != nil {
			empty = append(empty, fmt.Sprintf("%q/%s: %v", q.Panel, q.RefID, err))
			continue
		}
		n, _, err := e.promQuery(ctx, expr)
		switch {
		case err != nil:
			empty = append(empty, fmt.Sprintf("%q/%s: %v", q.Panel, q.RefID, err))
		case n == 0:
			empty = append(empty, fmt.Sprintf("%q/%s: no data (%s)", q.Panel, q.RefID, expr))
		}
		series += n
	}
	if len(empty) > 0 {
		return series, fmt.Errorf("%s: %d of %d queries without data: %s", DashboardPath, len(empty), len(queries),
			strings.Join(empty, "; "))
	}
	return series, nil
}
