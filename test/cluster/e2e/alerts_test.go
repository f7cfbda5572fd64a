package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A range answer of ALERTS is read per series (labels without alertstate) and step, firing over pending.
func TestParseAlertStates(t *testing.T) {
	b := []byte(`{"status":"success","data":{"resultType":"matrix","result":[
	{"metric":{"__name__":"ALERTS","alertname":"X","alertstate":"pending","pod":"a"},"values":[[100,"1"],[105,"1"]]},
	{"metric":{"__name__":"ALERTS","alertname":"X","alertstate":"firing","pod":"a"},"values":[[110,"1"]]},
	{"metric":{"__name__":"ALERTS","alertname":"X","alertstate":"firing","pod":"b"},"values":[[110,"1"]]},
	{"metric":{"alertstate":"firing"},"values":[[110,"1"]]}]}}`)
	s, err := parseAlertStates(b)
	if err != nil {
		t.Fatal(err)
	}
	a := s["alertname=X,pod=a"]
	if len(s) != 2 || a == nil || a.name != "X" || a.states[100] != "pending" || a.states[110] != "firing" {
		t.Fatalf("parsed %v", s)
	}
	if _, err := parseAlertStates([]byte(`{"status":"error","error":"bad query"}`)); err == nil {
		t.Error("an error answer was accepted")
	}
}

func series(name string, states map[int64]string) *alertSamples {
	return &alertSamples{name: name, states: states}
}

// The row's window: a series that goes from pending (or nothing) to firing after the start fired in it; one
// already pending or firing before the start did not (carried), unless it resolved in the row and fired
// again; another series of a carried alert (another database) firing in the row is the row's; seconds count
// the steps at and after the start.
func TestAlertWindow(t *testing.T) {
	start := time.Unix(1000, 0)
	s := alertSeries{
		"New":         series("New", map[int64]string{1000: "pending", 1005: "pending", 1010: "firing", 1015: "firing"}),
		"Carried":     series("Carried", map[int64]string{995: "pending", 1000: "firing", 1005: "firing"}),
		"Pending":     series("Pending", map[int64]string{1000: "pending", 1005: "pending"}),
		"Refiring":    series("Refiring", map[int64]string{995: "firing", 1000: "firing", 1020: "firing"}),
		"Crash,pod=a": series("Crash", map[int64]string{995: "firing", 1000: "firing", 1005: "firing"}),
		"Crash,pod=b": series("Crash", map[int64]string{1005: "firing"}),
		"Quiet,pod=a": series("Quiet", map[int64]string{995: "firing", 1000: "firing"}),
	}
	w := s.window(start)
	if !slices.Equal(w.fired, []string{"Crash", "New", "Refiring"}) {
		t.Errorf("fired %v, want [Crash New Refiring]", w.fired)
	}
	if !slices.Equal(w.carried, []string{"Carried", "Crash", "Quiet", "Refiring"}) {
		t.Errorf("carried %v", w.carried)
	}
	if !slices.Equal(w.firedSeries["Crash"], []string{"Crash,pod=b"}) || len(w.firedSeries["Quiet"]) != 0 {
		t.Errorf("fired series %v, want only Crash's pod=b", w.firedSeries)
	}
	if w.seconds["New"] != 20 || w.seconds["Pending"] != 10 || w.seconds["Carried"] != 10 || w.seconds["Crash"] != 10 {
		t.Errorf("seconds %v", w.seconds)
	}
}

// A scenario's named alerts must fire; a quiet one fails on any alert it made fire.
func TestAlertVerdict(t *testing.T) {
	outage := scenario{name: "bank-outage", alerts: []string{"StoreBreakerOpen"}}
	if msg := alertVerdict(outage, alertWindow{fired: []string{"StoreBreakerOpen"}}); msg != "" {
		t.Errorf("fired as promised, verdict %q", msg)
	}
	if msg := alertVerdict(outage, alertWindow{carried: []string{"StoreBreakerOpen"}}); !strings.Contains(msg, "StoreBreakerOpen did not fire") {
		t.Errorf("only carried in, verdict %q", msg)
	}
	steady := scenario{name: "steady", quiet: true}
	fired := alertWindow{fired: []string{"BankServerErrors"},
		firedSeries: map[string][]string{"BankServerErrors": {"alertname=BankServerErrors,pod=bank-1"}}}
	if msg := alertVerdict(steady, fired); !strings.Contains(msg, "BankServerErrors fired") || !strings.Contains(msg, "pod=bank-1") {
		t.Errorf("a quiet row fired, verdict %q", msg)
	}
	if msg := alertVerdict(steady, alertWindow{carried: []string{"X"}}); msg != "" {
		t.Errorf("carried in, verdict %q", msg)
	}
	if msg := alertVerdict(scenario{name: "node-cut"}, alertWindow{fired: []string{"X"}}); msg != "" {
		t.Errorf("no promise, verdict %q", msg)
	}
}

// An instance counts as read once Prometheus has a sample of it at or after the moment; one without a series
// (PostgreSQL down, its node cut) or with only older samples is named.
func TestUnreadSince(t *testing.T) {
	since := time.Unix(1000, 0)
	var res promResult
	if err := json.Unmarshal([]byte(`{"status":"success","data":{"resultType":"vector","result":[
	{"metric":{"pod":"bank-db-1"},"value":[1003,"1002.5"]},
	{"metric":{"pod":"bank-db-2"},"value":[1003,"999.9"]},
	{"metric":{"pod":"store-db-1"},"value":[1003,"1000"]}]}}`), &res); err != nil {
		t.Fatal(err)
	}
	pod := func(n string) corev1.Pod { return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n}} }
	got := unreadSince([]corev1.Pod{pod("store-db-1"), pod("bank-db-3"), pod("bank-db-2"), pod("bank-db-1")}, res, since)
	if !slices.Equal(got, []string{"bank-db-2", "bank-db-3"}) {
		t.Errorf("unread %v, want [bank-db-2 bank-db-3]", got)
	}
}
