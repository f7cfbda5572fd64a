package prometheus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/txmesh/txmesh/test/cluster/gobuild"
)

// localProm starts the cluster's Prometheus build (cached, or built now) on loopback with the scrape
// configuration cfg, its TSDB in a temporary directory, and returns a Getter of its API. It is killed when the
// test ends, or with the test's process.
func localProm(t *testing.T, cfg string) Getter {
	t.Helper()
	cache, err := gobuild.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	bins, err := gobuild.Ensure(context.Background(), cache, Component(), io.Discard)
	if err != nil || bins["prometheus"] == "" {
		t.Fatalf("build Prometheus: %v (%v)", err, bins)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	var out bytes.Buffer
	cmd := exec.Command(bins["prometheus"], "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready on %s in 30 s: %s", addr, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return func(ctx context.Context, path string, q url.Values) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer func() { _ = resp.Body.Close() }()
		return io.ReadAll(resp.Body)
	}
}

// What Prometheus's parser says the shipped rules read: every selector scoped to txmesh's namespace (a
// production Prometheus scrapes every namespace), and the labels each rule takes from its series.
func TestShippedRulesInputs(t *testing.T) {
	get := localProm(t, "global:\n  scrape_interval: 1m\n")
	rules, err := Alerts(repoRules(t))
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := Inputs(context.Background(), get, rules)
	if err != nil {
		t.Fatal(err)
	}
	byAlert := map[string][]Input{}
	for _, in := range inputs {
		byAlert[in.Alert] = append(byAlert[in.Alert], in)
		if !slices.Contains(in.Matchers, Matcher{Name: "namespace", Type: "=", Value: "txmesh"}) ||
			!slices.ContainsFunc(in.Matchers, func(m Matcher) bool { return m.Name == "__name__" && m.Type == "=" }) {
			t.Errorf("%s reads %s: not one metric of namespace txmesh", in.Alert, in.Selector())
		}
	}
	for _, r := range rules {
		if len(byAlert[r.Alert]) == 0 {
			t.Errorf("%s reads no series", r.Alert)
		}
	}
	// The labels each rule takes from its inputs (cluster is label_replace's, from pod).
	want := map[string]string{"StoreBreakerOpen": "", "StoreRelayForeignRefusals": "code",
		"StoreBankRefusesRelay": "code", "BankRefusesCallers": "reason", "BankServerErrors": "",
		"DatabaseSyncStandbyMissing": "pod", "DatabaseInstanceCrashed": "pod", "DatabaseWALArchivingFailing": "pod",
		"DatabaseBackupTooOld": "pod"}
	for alert, labels := range want {
		if len(byAlert[alert]) == 0 {
			t.Errorf("no rule %s", alert)
		}
		for _, in := range byAlert[alert] {
			if got := strings.Join(in.Labels, ","); got != labels {
				t.Errorf("%s takes [%s] from %s, want [%s]", alert, got, in.Selector(), labels)
			}
		}
	}
	if n := len(byAlert["DatabaseWALArchivingFailing"]); n != 4 {
		t.Errorf("DatabaseWALArchivingFailing reads %d selectors, want 4", n)
	}
}

// The walk of a syntax tree: what each operator passes down.
func TestInputsWalk(t *testing.T) {
	get := localProm(t, "global:\n  scrape_interval: 1m\n")
	for expr, want := range map[string][]string{
		`sum by (a) (x) > 0`:  {"a"},
		`sum without (b) (x)`: {""},
		`max by (c, a) (label_replace(x, "c", "$1", "b", "(.*)"))`: {"a,b"},
		`x and on (p) y`:                           {"p", "p"},
		`sum by (a) (x and y)`:                     {"a", ""},
		`sum by (a) (x / on (p) group_left (q) y)`: {"a,p", "p,q"},
		`sum by (a) (x / on (p) y)`:                {"p", "p"},
		`sum by (a) (x / ignoring (a) y)`:          {"", ""},
		`sum by (a) (x or y)`:                      {"a", "a"},
		`max by (a) (rate(x[5m] offset 1m))`:       {"a"},
		`time() - max by (a) (x)`:                  {"a"},
	} {
		ins, err := Inputs(context.Background(), get, []Rule{{Alert: "A", Expr: expr}})
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		var got []string
		for _, in := range ins {
			got = append(got, strings.Join(in.Labels, ","))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: labels taken %q, want %q", expr, got, want)
		}
	}
	if _, err := Inputs(context.Background(), get, []Rule{{Alert: "A", Expr: "rate(x[5m]"}}); err == nil {
		t.Error("a rule that does not parse: no error")
	}
}

// CheckInputs against series a real Prometheus scraped: a rule whose label the exporter does not give, and a
// metric no exporter serves, are failures; a 5xx that has not happened yet is not, its labels being there.
func TestCheckInputsAgainstScrapedSeries(t *testing.T) {
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "archived{pod=\"db-1\"} 1\nfailed 1\nerrors_total{code=\"200\"} 5\n")
	}))
	defer exporter.Close()
	get := localProm(t, fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: t\n"+
		"  static_configs:\n  - targets: [%q]\n    labels: {namespace: t}\n", strings.TrimPrefix(exporter.URL, "http://")))
	rules := []Rule{
		{Alert: "Archived", Expr: `max by (pod) (archived{namespace="t"}) > 0`},
		{Alert: "Failed", Expr: `max by (pod) (failed{namespace="t"}) > 0`},
		{Alert: "Errors", Expr: `sum(rate(errors_total{namespace="t", code=~"5.."}[5m])) > 0`},
		{Alert: "Absent", Expr: `max by (pod) (never_served{namespace="t"}) > 0`},
	}
	inputs, err := Inputs(context.Background(), get, rules)
	if err != nil {
		t.Fatal(err)
	}
	var seen []Seen
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		start := time.Now().Add(-time.Minute)
		if seen, err = CheckInputs(context.Background(), get, inputs, start, time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if seen[0].Series > 0 || time.Now().After(deadline) {
			break
		}
	}
	ok := map[string]bool{}
	for _, s := range seen {
		ok[s.Alert] = s.OK()
		t.Log(s)
	}
	want := map[string]bool{"Archived": true, "Failed": false, "Errors": true, "Absent": false}
	for alert, w := range want {
		if ok[alert] != w {
			t.Errorf("%s: OK %v, want %v", alert, ok[alert], w)
		}
	}
	if s := seen[1]; !slices.Equal(s.Missing, []string{"pod"}) {
		t.Errorf("Failed: missing %v, want [pod]", s.Missing)
	}
	if s := seen[2]; s.Series != 0 || s.Relaxed != 1 {
		t.Errorf("Errors: %d series, %d relaxed; want 0, 1", s.Series, s.Relaxed)
	}
}
