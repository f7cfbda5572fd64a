package lab

import (
	"reflect"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	d, cut, outage := 60*time.Second, 4*time.Second, 10*time.Second
	a := plan(7, d, cut, outage, false)
	if !reflect.DeepEqual(a, plan(7, d, cut, outage, false)) {
		t.Fatal("same seed, different schedule")
	}
	if reflect.DeepEqual(a, plan(8, d, cut, outage, false)) {
		t.Fatal("different seeds, same schedule")
	}
	kinds := map[string]int{}
	var fo fault
	for _, f := range a {
		kinds[f.Kind]++
		if f.At+f.For > d {
			t.Errorf("%s ends after the fault phase", f)
		}
		if f.Kind == failoverKind {
			fo = f
		}
	}
	for _, k := range []string{KillBank, KillStore, Latency, ResetPeer, Timeout, Bandwidth, BankOutage, failoverKind} {
		if kinds[k] == 0 {
			t.Errorf("no %s in %v", k, a)
		}
	}
	for _, f := range a {
		if f.Kind != failoverKind && f.At < fo.At+cut+failoverSettle && f.At+f.For > fo.At-failoverGuard {
			t.Errorf("%s overlaps the failover window", f)
		}
	}
	if only := plan(7, 25*time.Second, cut, outage, true); len(only) != 1 || only[0].Kind != failoverKind {
		t.Errorf("failover-only plan: %v", only)
	}
}
