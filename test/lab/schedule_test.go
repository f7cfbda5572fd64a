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
		if f.At+f.reserved() > d {
			t.Errorf("%s ends after the fault phase", f)
		}
		if f.Kind == failoverKind {
			fo = f
		}
	}
	for _, k := range []string{KillBank, KillStore, KillStoreDB, Latency, ResetPeer, Timeout, Bandwidth, BankOutage,
		failoverKind, MeshDeny, MeshNoRoute, MeshDenyAfter, MeshCorrupt, StandbyGone, Stall} {
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

// TestPlanScopes: faults that share a scope never overlap, over many seeds and a long phase — a standby
// window (and the settling after it) never meets a store-db kill or a stall, a stall never meets a kill of
// its Store, a sidecar holds one fault at a time, a mesh fault never meets a Bank outage or a standby
// window (no traffic to answer) — and a mesh fault's share of requests is a probability.
func TestPlanScopes(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		a := plan(seed, 10*time.Minute, 4*time.Second, 12*time.Second, false)
		for i, f := range a {
			if meshKinds[f.Kind] && (f.Prob <= 0 || f.Prob > 1) {
				t.Errorf("seed %d: %s: share %v", seed, f, f.Prob)
			}
			for _, g := range a[i+1:] {
				if g.At >= f.At+f.reserved() || f.At >= g.At+g.reserved() {
					continue
				}
				for _, x := range f.scopes() {
					for _, y := range g.scopes() {
						if x == y {
							t.Errorf("seed %d: %s and %s overlap on %s", seed, f, g, x)
						}
					}
				}
				quiet := map[string]bool{BankOutage: true, StandbyGone: true}
				if meshKinds[f.Kind] && quiet[g.Kind] || meshKinds[g.Kind] && quiet[f.Kind] {
					t.Errorf("seed %d: %s and %s overlap: the mesh fault has no traffic", seed, f, g)
				}
			}
		}
	}
}
