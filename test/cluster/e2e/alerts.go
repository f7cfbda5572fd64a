package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/txmesh/txmesh/test/cluster/prometheus"
)

// evalInterval is the harness Prometheus's evaluation_interval (test/cluster/prometheus/config.yaml): the step
// at which ALERTS is written.
const evalInterval = 5 * time.Second

// alertWindow is what the harness's Prometheus, evaluating the shipped PrometheusRule, saw of the alerts
// during one row.
type alertWindow struct {
	// fired: alerts that went to firing during the row, caused in it: a series of the alert (one per label
	// set) that was neither pending nor firing when the row began, or resolved in the row and came back.
	fired []string
	// firedSeries: per fired alert, the label sets that fired (which pod, which cluster).
	firedSeries map[string][]string
	// carried: alerts with a series already pending or firing when the row began: their cause predates it.
	carried []string
	// seconds: per alert, how long some series of it was pending or firing during the row.
	seconds map[string]float64
}

// alertSeries are the samples of ALERTS over the row: per series (an alert and its labels, alertstate
// aside), its name and its state by unix second.
type alertSeries map[string]*alertSamples

type alertSamples struct {
	name   string
	states map[int64]string // "pending" | "firing"
}

// alertsDuring asks the harness's Prometheus what its rules did from start until now.
func (e *env) alertsDuring(ctx context.Context, start time.Time) (alertWindow, error) {
	series, err := e.alertStates(ctx, start.Add(-evalInterval), time.Now())
	if err != nil {
		return alertWindow{}, err
	}
	return series.window(start), nil
}

// window reads the row out of the samples: the step before start tells what was carried in.
func (s alertSeries) window(start time.Time) alertWindow {
	w := alertWindow{seconds: map[string]float64{}, firedSeries: map[string][]string{}}
	fired, carriedIn, active := map[string]bool{}, map[string]bool{}, map[string]map[int64]bool{}
	step := int64(evalInterval / time.Second)
	for key, a := range s {
		ts := make([]int64, 0, len(a.states))
		for t := range a.states {
			ts = append(ts, t)
		}
		slices.Sort(ts)
		prev, carried := "", false
		for i, t := range ts {
			state := a.states[t]
			if t < start.Unix() {
				carried, prev = true, state
				carriedIn[a.name] = true
				continue
			}
			if active[a.name] == nil {
				active[a.name] = map[int64]bool{}
			}
			active[a.name][t] = true
			// A gap longer than a step is a time without the alert: it starts afresh, caused during the row.
			if i > 0 && t-ts[i-1] > step {
				prev, carried = "", false
			}
			if state == "firing" && prev != "firing" && !carried {
				fired[a.name] = true
				if !slices.Contains(w.firedSeries[a.name], key) {
					w.firedSeries[a.name] = append(w.firedSeries[a.name], key)
				}
			}
			prev = state
		}
	}
	for name, steps := range active {
		w.seconds[name] = float64(int64(len(steps)) * step)
	}
	w.fired, w.carried = sortedKeys(fired), sortedKeys(carriedIn)
	for _, keys := range w.firedSeries {
		slices.Sort(keys)
	}
	return w
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// alertStates runs a range query of ALERTS over the API server's service proxy.
func (e *env) alertStates(ctx context.Context, from, to time.Time) (alertSeries, error) {
	path := fmt.Sprintf("/api/v1/namespaces/%s/services/%s:http/proxy/api/v1/query_range", prometheus.Namespace,
		prometheus.Name)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := e.cs.CoreV1().RESTClient().Get().AbsPath(path).
		Param("query", `ALERTS`).
		Param("start", strconv.FormatInt(from.Unix(), 10)).Param("end", strconv.FormatInt(to.Unix(), 10)).
		Param("step", strconv.Itoa(int(evalInterval/time.Second))).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("prometheus query_range ALERTS: %w", err)
	}
	return parseAlertStates(b)
}

// parseAlertStates reads a query_range answer of ALERTS: one series per alert, label set and state; a
// series' pending and firing samples are merged under its labels without alertstate.
func parseAlertStates(b []byte) (alertSeries, error) {
	var res struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][]any           `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("answer of Prometheus not JSON: %w", err)
	}
	if res.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", res.Error)
	}
	s := alertSeries{}
	for _, r := range res.Data.Result {
		name, state := r.Metric["alertname"], r.Metric["alertstate"]
		if name == "" || (state != "pending" && state != "firing") {
			continue
		}
		var labels []string
		for k, v := range r.Metric {
			if k != "alertstate" && k != "__name__" {
				labels = append(labels, k+"="+v)
			}
		}
		slices.Sort(labels)
		key := strings.Join(labels, ",")
		if s[key] == nil {
			s[key] = &alertSamples{name: name, states: map[int64]string{}}
		}
		for _, v := range r.Values {
			if len(v) != 2 {
				continue
			}
			t, ok := v[0].(float64)
			if !ok {
				continue
			}
			if s[key].states[int64(t)] != "firing" {
				s[key].states[int64(t)] = state
			}
		}
	}
	return s, nil
}

// alertVerdict is the row's promise about alerts: every alert the scenario names went to firing during it,
// caused in it, and a quiet scenario made none fire. Empty when kept.
func alertVerdict(sc scenario, w alertWindow) string {
	var msgs []string
	for _, a := range sc.alerts {
		if !slices.Contains(w.fired, a) {
			msgs = append(msgs, fmt.Sprintf("alert %s did not fire (fired: %v)", a, w.fired))
		}
	}
	if sc.quiet {
		for _, a := range w.fired {
			msgs = append(msgs, fmt.Sprintf("alert %s fired in a row that must fire none (%s)", a,
				strings.Join(w.firedSeries[a], "; ")))
		}
	}
	return strings.Join(msgs, "; ")
}

// recordAlerts writes what the rules did during the row into it and fails it when the scenario's promise about
// alerts is broken.
func (e *env) recordAlerts(ctx context.Context, sc scenario, r *Row, start time.Time) {
	w, err := e.alertsDuring(ctx, start)
	if err == nil {
		err = e.observedSince(ctx, start, sc, r)
	}
	if err != nil {
		r.Error = strings.TrimSpace(r.Error + "; alerts: " + err.Error())
		return
	}
	r.AlertsFired, r.AlertsCarried, r.AlertSeconds = append([]string{}, w.fired...), w.carried, w.seconds
	if msg := alertVerdict(sc, w); msg != "" {
		r.Error = strings.TrimSpace(r.Error + "; " + msg)
	}
}

// observedSince checks that the harness's Prometheus ran the whole row (its start time, from its runtime
// information): one restarted in it (its node killed or cut) saw only part of it. That is noted; a row with a
// promise about alerts cannot keep it unobserved.
func (e *env) observedSince(ctx context.Context, start time.Time, sc scenario, r *Row) error {
	path := fmt.Sprintf("/api/v1/namespaces/%s/services/%s:http/proxy/api/v1/status/runtimeinfo",
		prometheus.Namespace, prometheus.Name)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	b, err := e.cs.CoreV1().RESTClient().Get().AbsPath(path).DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("prometheus runtime info: %w", err)
	}
	var info struct {
		Data struct {
			StartTime time.Time `json:"startTime"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("prometheus runtime info: %w", err)
	}
	if !info.Data.StartTime.After(start.Add(-evalInterval)) {
		return nil
	}
	r.Checks = append(r.Checks, fmt.Sprintf("the harness's Prometheus restarted %.0f s into the row: alerts before "+
		"that were not observed", info.Data.StartTime.Sub(start).Seconds()))
	if sc.quiet || len(sc.alerts) > 0 {
		return fmt.Errorf("the harness's Prometheus restarted during the row (%s): its alerts were not observed in full",
			info.Data.StartTime.Format(time.TimeOnly))
	}
	return nil
}

// instanceScrapes is the query whose sample times say when the harness's Prometheus last read each database
// instance (the series DatabaseInstanceCrashed watches).
const instanceScrapes = `timestamp(cnpg_pg_stat_database_xact_commit{namespace="txmesh", datname="postgres"})`

// settleAlerts waits until the harness's Prometheus has read every running database instance at or after
// since (the system whole again) and then evaluated its rules once more, so that a row's aftermath is judged
// in that row. An instance rewound or crash-recovered just before its cluster is whole resets its counters,
// and the reset is seen only at its next scrape: seen after the row ends, it fires in the next row (stop 31:
// node-cut's rewound store-db instance fired DatabaseInstanceCrashed in drain, a row that must fire none).
// Bounded: an instance still unread after a minute is named, never waited on for ever.
func (e *env) settleAlerts(ctx context.Context, since time.Time) error {
	deadline := time.Now().Add(time.Minute)
	for {
		pods, err := e.podsOf(ctx, "cnpg.io/podRole=instance")
		if err != nil {
			return err
		}
		_, res, err := e.promQuery(ctx, instanceScrapes)
		if err != nil {
			return err
		}
		unread := unreadSince(pods, res, since)
		if len(unread) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the harness's Prometheus has not read %s since %s: their alerts may show in the next row",
				strings.Join(unread, ", "), since.Format(time.TimeOnly))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	// The rules run every evalInterval, on what the last scrape wrote.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(evalInterval + time.Second):
		return nil
	}
}

// unreadSince names the pods with no sample in res (an instant answer of instanceScrapes) at or after since.
func unreadSince(pods []corev1.Pod, res promResult, since time.Time) []string {
	read := map[string]bool{}
	for _, s := range res.Data.Result {
		if len(s.Value) != 2 {
			continue
		}
		str, _ := s.Value[1].(string)
		if t, err := strconv.ParseFloat(str, 64); err == nil && t >= float64(since.Unix()) {
			read[s.Metric["pod"]] = true
		}
	}
	var unread []string
	for _, p := range pods {
		if !read[p.Name] {
			unread = append(unread, p.Name)
		}
	}
	slices.Sort(unread)
	return unread
}
