package e2e

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// The default schedule attached: the node faults, database failovers, drain and releases run; the rows
// bound to the throwaway cluster are reported, in schedule order, as not run with a reason and not passed.
func TestSplitAttachedDefaultSchedule(t *testing.T) {
	sched, _, err := plan(schedule, nil)
	if err != nil {
		t.Fatal(err)
	}
	run, skipped := splitAttached(sched)
	var ran []string
	for _, sc := range run {
		ran = append(ran, sc.name)
	}
	want := []string{"steady", "terraform", "bank-outage", "bank-db-failover", "store-db-failover", "node-kill",
		"node-cut", "drain", "rolling-update", "bad-release", "negative-control"}
	if !slices.Equal(ran, want) {
		t.Fatalf("attached runs %v, want %v", ran, want)
	}
	wantSkipped := []string{"metrics", "major-upgrade", "network-policies", "pitr", "objectstore-outage", "cd-bootstrap", "cd-drift", "cd-release", "cd-bad-release"}
	if !slices.Equal(rowNames(skipped), wantSkipped) || !strings.Contains(skipped[0].NotRun, "Prometheus") {
		t.Fatalf("not run: %v, want %v (metrics: for want of its Prometheus)", rowNames(skipped), wantSkipped)
	}
	for _, r := range skipped {
		if r.Passed || r.NotRun == "" {
			t.Errorf("not-run row %s: passed %v, reason %q", r.Name, r.Passed, r.NotRun)
		}
	}
	var rows []*Row
	for _, n := range ran {
		rows = append(rows, &Row{Name: n, Passed: true})
	}
	ordered := inScheduleOrder(sched, append(rows, skipped...))
	if ordered[0].Name != "steady" || ordered[1].Name != "metrics" || ordered[len(ordered)-1].Name != "negative-control" {
		t.Fatalf("rows not in schedule order: %v", rowNames(ordered))
	}
}

// Named rows that cannot run attached are reported, not dropped; so is what they need.
func TestSplitAttachedNamed(t *testing.T) {
	sched, _, err := plan(schedule, []string{"steady", "cd-bootstrap", "network-policies", "node-cut"})
	if err != nil {
		t.Fatal(err)
	}
	run, skipped := splitAttached(sched)
	if len(run) != 2 || run[0].name != "steady" || run[1].name != "node-cut" {
		t.Fatalf("run %d scenarios, want steady and node-cut", len(run))
	}
	if got := rowNames(skipped); !slices.Equal(got, []string{"network-policies", "cd-bootstrap"}) {
		t.Fatalf("not run %v, want network-policies and cd-bootstrap", got)
	}
	sched, _, err = plan(schedule, []string{"cd-release"})
	if err != nil {
		t.Fatal(err)
	}
	run, skipped = splitAttached(sched)
	if len(run) != 0 || !slices.Equal(rowNames(skipped), []string{"cd-bootstrap", "cd-release"}) {
		t.Fatalf("cd-release attached: run %d, not run %v; want cd-bootstrap and cd-release not run", len(run),
			rowNames(skipped))
	}
	if why := skipped[1].NotRun; why != "needs cd-bootstrap, which cannot run here" {
		t.Fatalf("cd-release attached: not run because %q", why)
	}
}

func TestTableShowsNotRun(t *testing.T) {
	r := &Result{Scenarios: []*Row{{Name: "metrics", NotRun: "asks the harness's own Prometheus"}}, Timing: map[string]float64{}}
	var b bytes.Buffer
	r.Table(&b)
	out := b.String()
	if !strings.Contains(out, "| metrics | not run |") || !strings.Contains(out, "- metrics: NOT RUN asks the harness's own Prometheus") {
		t.Fatalf("table:\n%s", out)
	}
	if strings.Contains(out, "| metrics | PASS") {
		t.Fatalf("a row not run shows as passed:\n%s", out)
	}
}

func TestKillPostmasterArgs(t *testing.T) {
	got := strings.Join(killPostmasterArgs("bank-db-2"), " ")
	want := `exec -n txmesh bank-db-2 -c postgres -- sh -c kill -9 "$(head -n 1 "$PGDATA/postmaster.pid")"`
	if got != want {
		t.Fatalf("kubectl %s, want %s", got, want)
	}
}

func rowNames(rows []*Row) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Name)
	}
	return out
}
