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
	want := []string{"steady", "metrics", "terraform", "network-policies", "bank-outage", "bank-db-failover",
		"store-db-failover", "node-kill", "node-cut", "drain", "rolling-update", "bad-release", "pitr", "cd-bootstrap",
		"cd-drift", "cd-release", "cd-bad-release", "negative-control"}
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
