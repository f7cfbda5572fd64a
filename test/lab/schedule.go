package lab

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// Fault kinds, as the table counts them.
const (
	KillBank    = "kill -9 bank"
	KillStore   = "kill -9 store"
	KillStoreDB = "kill -9 store-db"
	Latency     = "latency"
	ResetPeer   = "reset_peer"
	Timeout     = "timeout (blackhole)"
	Bandwidth   = "bandwidth"
	BankOutage  = "bank outage (breaker)"
	ReplCut     = "replication cut"
	KillPrimary = "kill -9 bank-db primary"
	Promotion   = "promotion of standby"
	Rejoin      = "old primary re-joined"
	// What a mesh puts between a Store and the Bank, in a Store's sidecar (see sidecar): none of these
	// answers carries the Bank's marks, except the Bank's own 400 to a garbled body.
	MeshDeny      = "mesh deny (403 RBAC)"
	MeshNoRoute   = "no route (404)"
	MeshDenyAfter = "403 after the Bank applied"
	MeshCorrupt   = "corrupt body (Bank's 400)"
	// StandbyGone pauses store-db's synchronous standby: the Store's commits wait until it returns.
	StandbyGone = "store-db standby gone"
	// Stall: stalledClients slow clients against one Store (headers and half a body, then nothing).
	Stall        = "stalled clients"
	StoreToBank  = "store→bank"
	BankToDB     = "bank→bank-db"
	failoverKind = "failover"
)

// stalledClients is the number of slow clients a Stall holds against a Store.
const stalledClients = 80

// FaultKinds lists the kinds in table order.
var FaultKinds = []string{KillBank, KillStore, KillStoreDB, Latency, ResetPeer, Timeout, Bandwidth, BankOutage, ReplCut,
	KillPrimary, Promotion, Rejoin, MeshDeny, MeshNoRoute, MeshDenyAfter, MeshCorrupt, StandbyGone, Stall}

// meshKinds are the faults a Store's sidecar injects.
var meshKinds = map[string]bool{MeshDeny: true, MeshNoRoute: true, MeshDenyAfter: true, MeshCorrupt: true}

// fault is one planned fault: what, where, when (offset from the start of the fault phase), for how long.
type fault struct {
	At, For time.Duration
	Kind    string
	Target  string  // a process (bank-1, store-2), a proxy (StoreToBank, BankToDB), a Store's sidecar (store-1)
	Toxic   toxic   // for network faults
	Prob    float64 // for mesh faults: the share of requests it answers (or garbles)
}

func (f fault) String() string {
	s := fmt.Sprintf("+%5.1fs %-22s", f.At.Seconds(), f.Kind)
	switch f.Kind {
	case failoverKind:
		return s + fmt.Sprintf(" replication cut %.0fs, then kill -9 of the primary, promotion, re-join",
			f.For.Seconds())
	case KillBank, KillStore, KillStoreDB:
		return s + fmt.Sprintf(" %s, restarted after %.1fs", f.Target, f.For.Seconds())
	case BankOutage:
		return s + fmt.Sprintf(" %s refused for %.0fs", f.Target, f.For.Seconds())
	case MeshDeny, MeshNoRoute, MeshDenyAfter, MeshCorrupt:
		return s + fmt.Sprintf(" %s's sidecar, %.0f%% of requests, for %.1fs", f.Target, 100*f.Prob, f.For.Seconds())
	case StandbyGone:
		return s + fmt.Sprintf(" %s paused for %.1fs", storeStandbyName, f.For.Seconds())
	case Stall:
		return s + fmt.Sprintf(" %d against %s for %.1fs", stalledClients, f.Target, f.For.Seconds())
	}
	return s + fmt.Sprintf(" %s %s %v toxicity %.1f for %.1fs", f.Target, f.Toxic.Stream, f.Toxic.Attributes,
		f.Toxic.Toxicity, f.For.Seconds())
}

// Plan timing. A failover occupies a window, from failoverGuard before the replication cut to failoverSettle
// after the kill, in which no other fault runs: the negative control must see the Bank acknowledging
// transactions while the replication stream is cut, which a concurrent Bank outage (or breakers still open
// from an earlier fault) would hide.
const (
	warmup        = 3 * time.Second
	failoverGuard = 8 * time.Second
	// failoverSettle follows the replication cut: kill, detection, promotion, re-join, reconnection.
	failoverSettle = 14 * time.Second
	// standbySettle follows a standby's return: the time to the first 202 is measured in it, so no other
	// fault of the Store's database or API starts before it ends.
	standbySettle = 5 * time.Second
)

// scopes are what a fault disturbs that another fault's measurement relies on: two faults sharing a scope
// never overlap (plan). The Store API's latency and truthfulness under a stalled client or a vanished standby
// are measured alone, without store-db crashing meanwhile; a sidecar holds one fault at a time.
func (f fault) scopes() []string {
	switch f.Kind {
	case KillStoreDB, StandbyGone:
		return []string{"store-db"}
	case Stall:
		return []string{"store-db", "api:" + f.Target}
	case KillStore:
		return []string{"api:" + f.Target}
	case MeshDeny, MeshNoRoute, MeshDenyAfter, MeshCorrupt:
		return []string{"sidecar:" + f.Target}
	}
	return nil
}

// stopsTraffic: nothing reaches the Bank through the sidecars meanwhile (the Bank refused, or no purchase
// commits); needsTraffic: a mesh fault, which proves nothing without requests to answer. A mesh fault never
// overlaps a fault that stops the traffic, or the relay's negative control could go uncaught by chance.
func (f fault) stopsTraffic() bool { return f.Kind == BankOutage || f.Kind == StandbyGone }
func (f fault) needsTraffic() bool { return meshKinds[f.Kind] }

// conflict reports whether f and g overlap in time (each for what it reserves) while sharing a scope, or
// while one needs the traffic the other stops.
func conflict(f, g fault) bool {
	if f.At >= g.At+g.reserved() || g.At >= f.At+f.reserved() {
		return false
	}
	if f.needsTraffic() && g.stopsTraffic() || g.needsTraffic() && f.stopsTraffic() {
		return true
	}
	for _, a := range f.scopes() {
		for _, b := range g.scopes() {
			if a == b {
				return true
			}
		}
	}
	return false
}

// reserved is how long the fault holds its scopes: its duration, and for a standby the settling after it.
func (f fault) reserved() time.Duration {
	if f.Kind == StandbyGone {
		return f.For + standbySettle
	}
	return f.For
}

// plan draws the fault schedule for a fault phase of duration d from seed: one failover per started 5
// minutes (the first at 20% of the phase), a Bank outage of outage after each, and the other kinds at random
// (each at least once when the phase has room, in a seeded order), never inside a failover window, never two
// of one scope at once (fault.scopes), all over by the end of the phase.
func plan(seed uint64, d, cut, outage time.Duration, failoverOnly bool) []fault {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	var faults []fault
	var busy [][2]time.Duration // failover windows
	n := int(d/(5*time.Minute)) + 1
	for i := range n {
		at := d * time.Duration(5*i+1) / time.Duration(5*n)
		if at < warmup+failoverGuard {
			at = warmup + failoverGuard
		}
		faults = append(faults, fault{At: at, For: cut, Kind: failoverKind, Target: "bank-db"})
		end := at + cut + failoverSettle
		busy = append(busy, [2]time.Duration{at - failoverGuard, end})
		if failoverOnly {
			continue
		}
		if o := end; o+outage <= d {
			faults = append(faults, fault{At: o, For: outage, Kind: BankOutage, Target: StoreToBank})
		}
	}
	if failoverOnly {
		return faults
	}
	fits := func(f fault) bool {
		to := f.At + f.reserved()
		if to > d {
			return false
		}
		for _, b := range busy {
			if f.At < b[1] && to > b[0] {
				return false
			}
		}
		for _, g := range faults {
			if conflict(f, g) {
				return false
			}
		}
		return true
	}
	kinds := []string{KillBank, KillStore, KillStoreDB, Latency, ResetPeer, Timeout, Bandwidth, MeshDeny, MeshNoRoute,
		MeshDenyAfter, MeshCorrupt, StandbyGone, Stall}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	pending := kinds // not drawn yet: tried first, in order, at each slot
	for at := warmup; at < d; at += between(time.Second, 2500*time.Millisecond) {
		try := pending
		if len(try) == 0 {
			try = []string{kinds[rng.IntN(len(kinds))]}
		}
		for i, kind := range try {
			f := draw(rng, between, kind, at)
			if !fits(f) {
				continue
			}
			f.Toxic.Name = fmt.Sprintf("%s-%d", f.Toxic.Type, len(faults))
			faults = append(faults, f)
			if len(pending) > 0 {
				pending = append(pending[:i:i], pending[i+1:]...)
			}
			break
		}
	}
	sort.SliceStable(faults, func(i, j int) bool { return faults[i].At < faults[j].At })
	return faults
}

// draw draws a fault of kind at at: its target, duration and parameters.
func draw(rng *rand.Rand, between func(lo, hi time.Duration) time.Duration, kind string, at time.Duration) fault {
	f := fault{At: at, Kind: kind}
	store := fmt.Sprintf("store-%d", 1+rng.IntN(2))
	switch kind {
	case KillBank:
		f.Target, f.For = fmt.Sprintf("bank-%d", 1+rng.IntN(2)), between(time.Second, 3*time.Second)
	case KillStore:
		f.Target, f.For = store, between(time.Second, 3*time.Second)
	case KillStoreDB:
		// The Stores' own database crashes: purchases get 503 meanwhile; claims committed without waiting
		// for the WAL (a lease) may vanish, so their rows are sent again — absorbed by the Bank.
		f.Target, f.For = "store-db", between(time.Second, 3*time.Second)
	case MeshDeny, MeshNoRoute:
		f.Target, f.For, f.Prob = store, between(2*time.Second, 5*time.Second), float64(3+rng.IntN(7))/10
	case MeshDenyAfter:
		f.Target, f.For, f.Prob = store, between(2*time.Second, 5*time.Second), float64(2+rng.IntN(5))/10
	case MeshCorrupt:
		// Rare: each garbled single request the Bank rejects is a dead letter (redriven after the run).
		f.Target, f.For, f.Prob = store, between(2*time.Second, 5*time.Second), float64(5+rng.IntN(11))/100
	case StandbyGone:
		// At most wal_sender_timeout (10s): the standby stalls, the primary keeps its connection.
		f.Target, f.For = storeStandbyName, between(5*time.Second, 9500*time.Millisecond)
	case Stall:
		f.Target, f.For = store, between(5*time.Second, 12*time.Second)
	default:
		f.Target, f.For = StoreToBank, between(2*time.Second, 6*time.Second)
		if rng.IntN(2) == 1 {
			f.Target = BankToDB
		}
		f.Toxic = toxic{Stream: []string{"upstream", "downstream"}[rng.IntN(2)],
			Toxicity: float32(3+rng.IntN(8)) / 10}
		switch kind {
		case Latency:
			f.Toxic.Type = "latency"
			f.Toxic.Attributes = map[string]any{"latency": 100 + rng.IntN(1400), "jitter": rng.IntN(300)}
		case ResetPeer:
			f.Toxic.Type = "reset_peer"
			f.Toxic.Attributes = map[string]any{"timeout": rng.IntN(1000)}
		case Timeout:
			f.Toxic.Type = "timeout"
			f.Toxic.Attributes = map[string]any{"timeout": 500 + rng.IntN(3000)}
		case Bandwidth:
			f.Toxic.Type = "bandwidth"
			f.Toxic.Attributes = map[string]any{"rate": 1 + rng.IntN(16)} // KB/s
		}
	}
	return f
}
