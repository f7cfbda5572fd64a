package prometheus

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// ruleCase is one `promtool test rules` case of the shipped rules: series (5 s apart, promtool's expanding
// notation), and at eval the alert fires with labels (nil: it does not fire).
type ruleCase struct {
	name   string
	series map[string]string
	eval   string
	alert  string
	labels map[string]string // nil: must not be firing at eval
}

// breaker is one Store pod's store_breaker_state: closed, then open and half-open by turns for n steps of 5 s
// (a probe every BREAKER_OPEN_TIMEOUT fails), then closed again.
func breaker(n int) string {
	v := []string{"0", "0"}
	for i := range n {
		v = append(v, map[bool]string{true: "1", false: "2"}[i%3 == 2])
	}
	return strings.Join(append(v, "0x20"), " ")
}

// ruleCases: each alert fires on the fault it is for and stays silent on what make e2e's quiet rows do.
var ruleCases = []ruleCase{
	{name: "a Bank gone 75 s: the breaker stays open or half-open past a minute",
		series: map[string]string{`store_breaker_state{namespace="txmesh",pod="store-1"}`: breaker(18),
			`store_breaker_state{namespace="txmesh",pod="store-2"}`: "0x40"},
		eval: "85s", alert: "StoreBreakerOpen", labels: map[string]string{"severity": "warning"}},
	{name: "a switchover: the breaker open 35 s, then closed",
		series: map[string]string{`store_breaker_state{namespace="txmesh",pod="store-1"}`: breaker(7)},
		eval:   "60s", alert: "StoreBreakerOpen"},
	{name: "the same switchover, later",
		series: map[string]string{`store_breaker_state{namespace="txmesh",pod="store-1"}`: breaker(7)},
		eval:   "100s", alert: "StoreBreakerOpen"},
	{name: "a healthy cluster: the primary streams to two standbys, the standbys to none",
		series: replication("bank-db", "2", "0", "0"),
		eval:   "3m", alert: "DatabaseSyncStandbyMissing"},
	{name: "a primary streaming to no standby for two minutes",
		series: replication("bank-db", "0", "0", "0"),
		eval:   "90s", alert: "DatabaseSyncStandbyMissing",
		labels: map[string]string{"severity": "critical", "cluster": "bank-db"}},
	{name: "PostgreSQL killed: its statistics reset by crash recovery",
		series: map[string]string{`cnpg_pg_stat_database_xact_commit{namespace="txmesh",pod="bank-db-1",datname="postgres",instance="a"}`: "100+10x10 5+10x10"},
		eval:   "80s", alert: "DatabaseInstanceCrashed",
		labels: map[string]string{"severity": "warning", "cluster": "bank-db", "pod": "bank-db-1"}},
	{name: "a clean restart (switchover, drain): the statistics kept across the gap",
		series: map[string]string{`cnpg_pg_stat_database_xact_commit{namespace="txmesh",pod="bank-db-1",datname="postgres",instance="a"}`: "100+10x10 _x4 210+10x10"},
		eval:   "120s", alert: "DatabaseInstanceCrashed"},
	{name: "an instance's pod replaced (another address): a new series, not a reset",
		series: map[string]string{
			`cnpg_pg_stat_database_xact_commit{namespace="txmesh",pod="bank-db-1",datname="postgres",instance="a"}`: "100+10x10",
			`cnpg_pg_stat_database_xact_commit{namespace="txmesh",pod="bank-db-1",datname="postgres",instance="b"}`: "_x12 5+10x10"},
		eval: "110s", alert: "DatabaseInstanceCrashed"},
	{name: "another database's counter falling does not count (datname postgres only)",
		series: map[string]string{`cnpg_pg_stat_database_xact_commit{namespace="txmesh",pod="bank-db-1",datname="bank",instance="a"}`: "100+10x10 5+10x10"},
		eval:   "80s", alert: "DatabaseInstanceCrashed"},
}

// replication is the cnpg_pg_replication series of a 3-instance cluster whose first instance is the primary,
// each instance streaming to the given number of standbys, for 4 minutes.
func replication(cluster string, streaming ...string) map[string]string {
	m := map[string]string{}
	for i, n := range streaming {
		pod := `{namespace="txmesh",pod="` + cluster + "-" + string(rune('1'+i)) + `"}`
		rec := "1"
		if i == 0 {
			rec = "0"
		}
		m["cnpg_pg_replication_streaming_replicas"+pod] = n + "x48"
		m["cnpg_pg_replication_in_recovery"+pod] = rec + "x48"
		m["cnpg_pg_replication_is_wal_receiver_up"+pod] = rec + "x48"
	}
	return m
}

// The shipped rules, evaluated by Prometheus's own unit-test runner (promtool test rules) on ruleCases.
func TestShippedRulesFireOnlyOnTheirFault(t *testing.T) {
	pt, rules := promtool(t), repoRules(t)
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `json:"alert"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(rules, &file); err != nil {
		t.Fatal(err)
	}
	annotations := map[string]map[string]string{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			annotations[r.Alert] = r.Annotations
		}
	}
	type series struct {
		Series string `json:"series"`
		Values string `json:"values"`
	}
	type expAlert struct {
		ExpLabels      map[string]string `json:"exp_labels"`
		ExpAnnotations map[string]string `json:"exp_annotations"`
	}
	type alertTest struct {
		EvalTime  string     `json:"eval_time"`
		Alertname string     `json:"alertname"`
		ExpAlerts []expAlert `json:"exp_alerts"`
	}
	type test struct {
		Name      string      `json:"name"`
		Interval  string      `json:"interval"`
		Input     []series    `json:"input_series"`
		AlertTest []alertTest `json:"alert_rule_test"`
	}
	var tests []test
	for _, c := range ruleCases {
		if _, ok := annotations[c.alert]; !ok {
			t.Fatalf("%s: no alert %s in %s", c.name, c.alert, RulesFile)
		}
		tc := test{Name: c.name, Interval: "5s", AlertTest: []alertTest{{EvalTime: c.eval, Alertname: c.alert,
			ExpAlerts: []expAlert{}}}}
		for s, v := range c.series {
			tc.Input = append(tc.Input, series{Series: s, Values: v})
		}
		if c.labels != nil {
			tc.AlertTest[0].ExpAlerts = []expAlert{{ExpLabels: c.labels, ExpAnnotations: annotations[c.alert]}}
		}
		tests = append(tests, tc)
	}
	b, err := yaml.Marshal(map[string]any{"rule_files": []string{RuleFileName}, "evaluation_interval": "5s",
		"tests": tests})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, RuleFileName), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tests.yml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), pt, "test", "rules", "tests.yml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
