package e2e

import (
	"strings"
	"testing"
)

// What busybox nc prints for each outcome (measured: a dropped SYN times out, a reset is refused) is read back
// as the verdict and its kind; a target without a line is an error, never a pass.
func TestParseProbes(t *testing.T) {
	ts := []probeTarget{{"a", "10.0.0.1", 5432, true}, {"b", "10.0.0.2", 5432, false}, {"c", "10.0.0.3", 53, false}}
	script := probeScript(ts)
	for _, want := range []string{"probe a 10.0.0.1 5432", "probe b 10.0.0.2 5432", "nc -w 3"} {
		if !strings.Contains(script, want) {
			t.Fatalf("script lacks %q:\n%s", want, script)
		}
	}
	logs := "PROBE a rc=0 secs=0 \nPROBE b rc=1 secs=3 nc: timed out\nPROBE c rc=1 secs=0 nc: can't connect to remote host (10.0.0.3): Connection refused\n"
	got, err := parseProbes("x", logs, ts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		ok  bool
		how string
	}{"a": {true, "connected"}, "b": {false, "timeout"}, "c": {false, "rejected"}}
	if len(got) != 3 {
		t.Fatalf("%d results, want 3: %+v", len(got), got)
	}
	for _, r := range got {
		name := strings.Fields(r.to)[0]
		if w := want[name]; r.ok != w.ok || r.how != w.how {
			t.Errorf("%s: ok %v how %q, want %v %q", name, r.ok, r.how, w.ok, w.how)
		}
	}
	if _, err := parseProbes("x", "PROBE a rc=0 secs=0\n", ts); err == nil {
		t.Fatal("missing probe lines were not an error")
	}
}
