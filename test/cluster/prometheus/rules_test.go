package prometheus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// ruleCase is one `promtool test rules` case of the shipped rules: series (5 s apart, promtool's expanding
// notation), and at eval the alert fires with labels (nil: it does not fire).
type ruleCase struct {
	name   string
	series map[string]string
	eval   string
	// interval between the series' samples (promtool's; 5s when empty): hours need a longer one.
	interval string
	alert    string
	labels   map[string]string // nil: must not be firing at eval
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
	{name: "a Store pod deleted (a drain) while its breaker was open: its last samples do not stay open a minute",
		series: map[string]string{`store_breaker_state{namespace="txmesh",pod="store-1"}`: "0x20 2 2 1 stale",
			`store_breaker_state{namespace="txmesh",pod="store-2"}`: "0x20 2 2 1 0x30"},
		eval: "170s", alert: "StoreBreakerOpen"},
	{name: "a new Store pod whose breaker opens in its first seconds (its database switching over)",
		series: map[string]string{`store_breaker_state{namespace="txmesh",pod="store-3"}`: "_x20 2 2 1 2 0x30",
			`store_breaker_state{namespace="txmesh",pod="store-2"}`: "0x50"},
		eval: "115s", alert: "StoreBreakerOpen"},
	{name: "a Store pod up a minute and more whose breaker stays open: its own minute counts",
		series: map[string]string{`store_breaker_state{namespace="txmesh",pod="store-3"}`: "_x20 0x12 " + breaker(18)},
		eval:   "255s", alert: "StoreBreakerOpen", labels: map[string]string{"severity": "warning"}},
	{name: "a healthy cluster: the primary streams to two standbys, the standbys to none",
		series: replication("bank-db", "2", "0", "0"),
		eval:   "3m", alert: "DatabaseSyncStandbyMissing"},
	{name: "a primary streaming to no standby for two minutes",
		series: replication("bank-db", "0", "0", "0"),
		eval:   "90s", alert: "DatabaseSyncStandbyMissing",
		labels: map[string]string{"severity": "critical", "cluster": "bank-db"}},
	{name: "PostgreSQL killed: its statistics reset by crash recovery",
		series: history(phase{bankDB1, "100+10x10 5+10x10"}),
		eval:   "80s", alert: "DatabaseInstanceCrashed",
		labels: map[string]string{"severity": "warning", "cluster": "bank-db", "pod": "bank-db-1"}},
	{name: "PostgreSQL crashed with its node: the same pod back on another address, its reset seen",
		series: history(phase{bankDB1, "100+10x10"}, phase{bankDB1.at("10.244.1.23"), "_x12 5+10x10"}),
		eval:   "130s", alert: "DatabaseInstanceCrashed",
		labels: map[string]string{"severity": "warning", "cluster": "bank-db", "pod": "bank-db-1"}},
	{name: "a clean restart (switchover, drain): the statistics kept across the gap",
		series: history(phase{bankDB1, "100+10x10 _x4 210+10x10"}),
		eval:   "120s", alert: "DatabaseInstanceCrashed"},
	{name: "an instance's pod replaced (another UID, another address): a new series, not a reset",
		series: history(phase{bankDB1, "100+10x10"}, phase{bankDB1.replaced("10.244.2.9"), "_x1 5+10x10"}),
		eval:   "110s", alert: "DatabaseInstanceCrashed"},
	{name: "an instance's pod replaced on the address it had (its cluster rebuilt): a new series, not a reset",
		series: history(phase{bankDB1, "100+10x10"}, phase{bankDB1.replaced(bankDB1.addr), "_x12 5+10x10"}),
		eval:   "130s", alert: "DatabaseInstanceCrashed"},
	{name: "another database's counter falling does not count (datname postgres only)",
		series: map[string]string{commits(bankDB1, "bank"): "100+10x10 5+10x10"},
		eval:   "80s", alert: "DatabaseInstanceCrashed"},
	{name: "the object store down: every archive attempt of the primary fails for 2.5 minutes",
		series: archiver("bank-db-1", archiverState{lastArchived: "1000x40", lastFailed: "-1x2 1010x38",
			sinceArchival: "5+5x40", ready: "0x2 1x38"}),
		eval: "150s", alert: "DatabaseWALArchivingFailing",
		labels: map[string]string{"severity": "warning", "cluster": "bank-db", "pod": "bank-db-1"}},
	{name: "an archive attempt failed, the next one succeeded: a blip",
		series: archiver("bank-db-1", archiverState{lastArchived: "1000x4 1020x36", lastFailed: "-1x2 1010x38",
			sinceArchival: "5+5x40", ready: "0x40"}),
		eval: "180s", alert: "DatabaseWALArchivingFailing"},
	{name: "archiving failed for a minute, then caught up",
		series: archiver("store-db-2", archiverState{lastArchived: "1000x14 1075x26", lastFailed: "-1x2 1010+5x12 1070x26",
			sinceArchival: "5+5x14 0+5x26", ready: "0x2 1x12 0x26"}),
		eval: "150s", alert: "DatabaseWALArchivingFailing"},
	{name: "stuck: segments wait, nothing archived for over 10 minutes, no attempt failed (a hung archive command)",
		series: archiver("store-db-2", archiverState{lastArchived: "1000x40", lastFailed: "-1x40",
			sinceArchival: "590+5x40", ready: "2x40"}),
		eval: "180s", alert: "DatabaseWALArchivingFailing",
		labels: map[string]string{"severity": "warning", "cluster": "store-db", "pod": "store-db-2"}},
	{name: "idle: nothing archived for an hour, nothing waiting",
		series: archiver("store-db-2", archiverState{lastArchived: "1000x40", lastFailed: "-1x40",
			sinceArchival: "3600+5x40", ready: "0x40"}),
		eval: "180s", alert: "DatabaseWALArchivingFailing"},
	{name: "busy: a segment ready at every scrape, each archived within seconds",
		series: archiver("bank-db-1", archiverState{lastArchived: "1000+5x40", lastFailed: "900x40",
			sinceArchival: "3x40", ready: "1x40"}),
		eval: "180s", alert: "DatabaseWALArchivingFailing"},
	{name: "the nightly backup failed: the newest one 31 hours old",
		series: backupTimes("bank-db", "3600x400"), interval: "5m",
		eval: "31h20m", alert: "DatabaseBackupTooOld",
		labels: map[string]string{"severity": "warning", "cluster": "bank-db"}},
	{name: "nightly backups: the newest never more than a day old",
		series: backupTimes("bank-db", "3600x299 90000x100"), interval: "5m",
		eval: "31h20m", alert: "DatabaseBackupTooOld"},
	{name: "a new cluster (0: no backup yet), 5 minutes old, its first backup under way",
		series: backupTimes("store-db", "_x372 0x1 112200x50"), interval: "5m",
		eval: "31h05m", alert: "DatabaseBackupTooOld"},
	{name: "a new cluster that never gets a backup",
		series: backupTimes("store-db", "_x372 0x20"), interval: "5m",
		eval: "31h25m", alert: "DatabaseBackupTooOld",
		labels: map[string]string{"severity": "warning", "cluster": "store-db"}},
}

// backupTimes is the Barman Cloud plugin's last_available_backup_timestamp of cluster as each of its three
// instances reports it (the same value, from the ObjectStore's status).
func backupTimes(cluster, values string) map[string]string {
	m := map[string]string{}
	for i := 1; i <= 3; i++ {
		m[`barman_cloud_cloudnative_pg_io_last_available_backup_timestamp{namespace="txmesh",pod="`+cluster+"-"+
			strconv.Itoa(i)+`"}`] = values
	}
	return m
}

// archiverState is what a primary's exporter says of its WAL archiving (pg_stat_archiver and the
// archive_status directory), each in promtool's expanding notation.
type archiverState struct{ lastArchived, lastFailed, sinceArchival, ready string }

// archiver is pod's archiving series, as CloudNativePG's default queries name them.
func archiver(pod string, a archiverState) map[string]string {
	l := `{namespace="txmesh",pod="` + pod + `"}`
	return map[string]string{
		"cnpg_pg_stat_archiver_last_archived_time" + l:                                             a.lastArchived,
		"cnpg_pg_stat_archiver_last_failed_time" + l:                                               a.lastFailed,
		"cnpg_pg_stat_archiver_seconds_since_last_archival" + l:                                    a.sinceArchival,
		`cnpg_collector_pg_wal_archive_status{namespace="txmesh",pod="` + pod + `",value="ready"}`: a.ready,
		`cnpg_collector_pg_wal_archive_status{namespace="txmesh",pod="` + pod + `",value="done"}`:  "5x40",
	}
}

// exporter is one CloudNativePG instance pod's exporter as Kubernetes discovery meets it: its pod, the pod's
// address and its UID.
type exporter struct{ pod, addr, uid string }

var bankDB1 = exporter{pod: "bank-db-1", addr: "10.244.1.7", uid: "6f1d0c2a-8a57-4d6e-9c1e-2b7f3e4a5d01"}

// at is the same pod back on another address (its node rebooted: a new sandbox, a new IP, the same pod).
func (e exporter) at(addr string) exporter { e.addr = addr; return e }

// replaced is another pod under the same name (deleted and recreated): a new UID, on addr.
func (e exporter) replaced(addr string) exporter {
	e.addr, e.uid = addr, "0b9e7d55-3c41-4f2a-8d6b-9a0c1e2f3b02"
	return e
}

// discovered is the target Kubernetes pod discovery gives for e's port metrics (the meta labels the
// cnpg-instances job may read).
func (e exporter) discovered() map[string]string {
	return map[string]string{"__address__": e.addr + ":9187", "__meta_kubernetes_pod_ip": e.addr,
		"__meta_kubernetes_pod_uid": e.uid, "__meta_kubernetes_pod_name": e.pod,
		"__meta_kubernetes_namespace": "txmesh"}
}

// instanceSource is what config.yaml's cnpg-instances job sets its series' instance label from: Prometheus's
// default, the address, unless a relabel replaces it.
var instanceSource, instanceSourceErr = cnpgInstanceSource(Config())

// cnpgInstanceSource reads the source labels of the last relabel of the cnpg-instances job that targets
// instance; only a plain replace (default regex, replacement and separator: the values copied) is understood.
func cnpgInstanceSource(cfg []byte) ([]string, error) {
	var c struct {
		ScrapeConfigs []struct {
			JobName string `json:"job_name"`
			Relabel []struct {
				Action       string   `json:"action"`
				SourceLabels []string `json:"source_labels"`
				TargetLabel  string   `json:"target_label"`
				Regex        *string  `json:"regex"`
				Replacement  *string  `json:"replacement"`
				Separator    *string  `json:"separator"`
			} `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(cfg, &c); err != nil {
		return nil, err
	}
	for _, j := range c.ScrapeConfigs {
		if j.JobName != "cnpg-instances" {
			continue
		}
		src := []string{"__address__"}
		for _, r := range j.Relabel {
			if r.TargetLabel != "instance" {
				continue
			}
			if (r.Action != "" && r.Action != "replace") || r.Regex != nil || r.Replacement != nil || r.Separator != nil {
				return nil, fmt.Errorf("cnpg-instances: a relabel of instance this test does not read: %+v", r)
			}
			src = r.SourceLabels
		}
		for _, l := range src {
			if _, ok := bankDB1.discovered()[l]; !ok {
				return nil, fmt.Errorf("cnpg-instances: instance from %s, a label this test does not discover", l)
			}
		}
		return src, nil
	}
	return nil, fmt.Errorf("no job cnpg-instances in config.yaml")
}

// commits is e's cnpg_pg_stat_database_xact_commit series on database datname, labelled as config.yaml's
// cnpg-instances job labels it.
func commits(e exporter, datname string) string {
	var v []string
	for _, l := range instanceSource {
		v = append(v, e.discovered()[l])
	}
	return `cnpg_pg_stat_database_xact_commit{namespace="txmesh",pod="` + e.pod + `",datname="` + datname +
		`",instance="` + strings.Join(v, ";") + `"}`
}

// phase is what one exporter served for a while, in promtool's expanding notation.
type phase struct {
	e      exporter
	values string
}

// history is the cnpg_pg_stat_database_xact_commit{datname="postgres"} series stored from phases, one after
// the other: phases whose series are labelled the same (one pod UID at two addresses, in config.yaml) are one
// series, the others series of their own that start when their phase does.
func history(phases ...phase) map[string]string {
	m, ends, at := map[string]string{}, map[string]int{}, 0
	for _, p := range phases {
		s, v := commits(p.e, "postgres"), p.values
		if gap := at - ends[s]; gap > 0 {
			v = "_x" + strconv.Itoa(gap) + " " + v
		}
		m[s] = strings.TrimSpace(m[s] + " " + v)
		at += samples(p.values)
		ends[s] = at
	}
	return m
}

// samples is how many steps values spans in promtool's expanding notation: _xn n, axn and a+bxn n+1.
func samples(values string) int {
	n := 0
	for _, f := range strings.Fields(values) {
		base, times, ok := strings.Cut(f, "x")
		k, _ := strconv.Atoi(times)
		switch {
		case !ok:
			n++
		case base == "_":
			n += k
		default:
			n += k + 1
		}
	}
	return n
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
	if instanceSourceErr != nil {
		t.Fatal(instanceSourceErr)
	}
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
	// One promtool run per sample interval, the rules evaluated at that step: hours of 5 s steps take a minute.
	tests := map[string][]test{}
	for _, c := range ruleCases {
		if _, ok := annotations[c.alert]; !ok {
			t.Fatalf("%s: no alert %s in %s", c.name, c.alert, RulesFile)
		}
		interval := c.interval
		if interval == "" {
			interval = "5s"
		}
		tc := test{Name: c.name, Interval: interval, AlertTest: []alertTest{{EvalTime: c.eval, Alertname: c.alert,
			ExpAlerts: []expAlert{}}}}
		for s, v := range c.series {
			tc.Input = append(tc.Input, series{Series: s, Values: v})
		}
		if c.labels != nil {
			tc.AlertTest[0].ExpAlerts = []expAlert{{ExpLabels: c.labels, ExpAnnotations: annotations[c.alert]}}
		}
		tests[interval] = append(tests[interval], tc)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, RuleFileName), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	for interval, group := range tests {
		b, err := yaml.Marshal(map[string]any{"rule_files": []string{RuleFileName}, "evaluation_interval": interval,
			"tests": group})
		if err != nil {
			t.Fatal(err)
		}
		file := "tests-" + interval + ".yml"
		if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(context.Background(), pt, "test", "rules", file)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool test rules (every %s): %v\n%s", interval, err, out)
		}
	}
}

// PodMonitorsFile declares production's scrape of the CloudNativePG instances (the Prometheus Operator's
// PodMonitors), relative to the repository.
const PodMonitorsFile = "kustomize/components/monitoring/podmonitors.yaml"

// Production's PodMonitors of the CloudNativePG exporters (port metrics) label instance as config.yaml's
// cnpg-instances job does, so the series the rule cases model are production's too.
func TestRulesSeriesLabelledAsInProduction(t *testing.T) {
	if instanceSourceErr != nil {
		t.Fatal(instanceSourceErr)
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "..", PodMonitorsFile))
	if err != nil {
		t.Fatal(err)
	}
	d, n := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096), 0
	for {
		var pm struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Endpoints []struct {
					Port        string `json:"port"`
					Relabelings []struct {
						Action       string   `json:"action"`
						SourceLabels []string `json:"sourceLabels"`
						TargetLabel  string   `json:"targetLabel"`
						Regex        *string  `json:"regex"`
						Replacement  *string  `json:"replacement"`
						Separator    *string  `json:"separator"`
					} `json:"relabelings"`
				} `json:"podMetricsEndpoints"`
			} `json:"spec"`
		}
		if err := d.Decode(&pm); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", PodMonitorsFile, err)
		}
		if pm.Kind != "PodMonitor" {
			continue
		}
		for _, ep := range pm.Spec.Endpoints {
			if ep.Port != "metrics" {
				continue
			}
			n++
			src := []string{"__address__"}
			for _, r := range ep.Relabelings {
				if r.TargetLabel != "instance" {
					continue
				}
				if (r.Action != "" && !strings.EqualFold(r.Action, "replace")) || r.Regex != nil ||
					r.Replacement != nil || r.Separator != nil {
					t.Errorf("PodMonitor %s: a relabeling of instance this test does not read: %+v", pm.Metadata.Name, r)
				}
				src = r.SourceLabels
			}
			if !slices.Equal(src, instanceSource) {
				t.Errorf("PodMonitor %s labels instance from %v, config.yaml's cnpg-instances from %v",
					pm.Metadata.Name, src, instanceSource)
			}
		}
	}
	if n != 2 {
		t.Errorf("%s: %d endpoints on port metrics, want bank-db's and store-db's", PodMonitorsFile, n)
	}
}
