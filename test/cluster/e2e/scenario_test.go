package e2e

import (
	"slices"
	"strings"
	"testing"
)

func names(sched []scenario) []string {
	var out []string
	for _, s := range sched {
		out = append(out, s.name)
	}
	return out
}

// The schedule: every scenario, in the order make e2e has always run them.
func TestScheduleOrder(t *testing.T) {
	want := []string{"steady", "metrics", "major-upgrade", "terraform", "network-policies", "bank-outage", "bank-db-failover",
		"store-db-failover", "node-kill", "node-cut", "drain", "rolling-update", "bad-release", "pitr", "objectstore-outage",
		"cd-bootstrap", "cd-drift", "cd-release", "cd-bad-release", "negative-control"}
	if got := names(schedule); !slices.Equal(got, want) {
		t.Fatalf("schedule %v\nwant     %v", got, want)
	}
	for _, s := range schedule {
		if s.fault == "" || s.run == nil {
			t.Errorf("%s: no fault or no run", s.name)
		}
	}
}

// Every need names a scenario earlier in the schedule (so the schedule's order runs it first, and needs
// cannot go round in a circle) or a harness component.
func TestNeedsNameEarlierScenariosOrComponents(t *testing.T) {
	for i, s := range schedule {
		for _, n := range s.needs {
			if _, ok := harness[n]; ok {
				continue
			}
			if j := slices.IndexFunc(schedule, func(o scenario) bool { return o.name == n }); j < 0 || j >= i {
				t.Errorf("%s needs %q: neither an earlier scenario nor a harness component (%v)", s.name, n, harness)
			}
		}
	}
}

// E2E_SCENARIOS=cd-release runs cd-bootstrap first, and says so; what is named runs in schedule order
// whatever order it was named in; an unknown name is refused at once with the names there are.
func TestPlanRunsWhatIsNeededFirst(t *testing.T) {
	for _, c := range []struct {
		names, want, added []string
	}{
		{[]string{"cd-release"}, []string{"cd-bootstrap", "cd-release"}, []string{"cd-bootstrap (cd-release needs it)"}},
		{[]string{"cd-bad-release", "steady", "cd-drift"}, []string{"steady", "cd-bootstrap", "cd-drift", "cd-bad-release"},
			[]string{"cd-bootstrap (cd-bad-release needs it)"}},
		{[]string{"cd-release", "cd-bootstrap"}, []string{"cd-bootstrap", "cd-release"}, nil},
		{[]string{"node-cut", "steady"}, []string{"steady", "node-cut"}, nil},
		{[]string{"network-policies"}, []string{"network-policies"}, nil}, // a component need adds no row
	} {
		got, added, err := plan(schedule, c.names)
		if err != nil {
			t.Fatalf("%v: %v", c.names, err)
		}
		if !slices.Equal(names(got), c.want) || !slices.Equal(added, c.added) {
			t.Errorf("%v: runs %v, added %q; want %v, %q", c.names, names(got), added, c.want, c.added)
		}
	}
	all, added, err := plan(schedule, nil)
	if err != nil || len(all) != len(schedule) || len(added) != 0 {
		t.Errorf("no names: %d scenarios, added %v, %v; want the whole schedule", len(all), added, err)
	}
	if _, _, err := plan(schedule, []string{"steady", "cd-relase"}); err == nil ||
		!strings.Contains(err.Error(), `unknown scenario "cd-relase"`) || !strings.Contains(err.Error(), "cd-release") {
		t.Errorf("a misspelt name: %v, want it refused with the names there are", err)
	}
}

// major-upgrade: bank-db starts on PostgreSQL 17 only in a run that upgrades it, and the row runs before
// every row that restarts, fails over, backs up or redeploys bank-db, so those all see the shipped 18. It
// needs the harness's images and object store (not run on kind), and promises no client errors: the Store
// accepts while bank-db is down and its relay retries the Bank's 503s.
func TestMajorUpgradeDeclaration(t *testing.T) {
	i := slices.IndexFunc(schedule, func(s scenario) bool { return s.name == "major-upgrade" })
	if i < 0 {
		t.Fatal("major-upgrade is not in the schedule")
	}
	for _, later := range []string{"bank-db-failover", "node-kill", "node-cut", "drain", "rolling-update", "pitr", "cd-bootstrap", "negative-control"} {
		if j := slices.IndexFunc(schedule, func(s scenario) bool { return s.name == later }); j < i {
			t.Errorf("%s runs before major-upgrade (at %d, major-upgrade at %d)", later, j, i)
		}
	}
	for _, n := range []string{"postgres-images", "backups"} {
		if !slices.Contains(majorUpgrade.needs, n) {
			t.Errorf("major-upgrade does not need %s", n)
		}
	}
	if !majorUpgrade.noClientErrors || majorUpgrade.negative {
		t.Errorf("major-upgrade: noClientErrors %v, negative %v", majorUpgrade.noClientErrors, majorUpgrade.negative)
	}
	run, _, err := plan(schedule, []string{"pitr"})
	if err != nil || slices.ContainsFunc(run, func(s scenario) bool { return s.name == "major-upgrade" }) {
		t.Errorf("E2E_SCENARIOS=pitr runs %v (%v): bank-db would start on 17 for nothing", names(run), err)
	}
}
