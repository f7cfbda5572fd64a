package lab

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// Fault kinds, as the table counts them.
const (
	KillBank     = "kill -9 bank"
	KillStore    = "kill -9 store"
	KillStoreDB  = "kill -9 store-db"
	Latency      = "latency"
	ResetPeer    = "reset_peer"
	Timeout      = "timeout (blackhole)"
	Bandwidth    = "bandwidth"
	BankOutage   = "bank outage (breaker)"
	ReplCut      = "replication cut"
	KillPrimary  = "kill -9 bank-db primary"
	Promotion    = "promotion of standby"
	Rejoin       = "old primary re-joined"
	StoreToBank  = "store→bank"
	BankToDB     = "bank→bank-db"
	failoverKind = "failover"
)

// FaultKinds lists the kinds in table order.
var FaultKinds = []string{KillBank, KillStore, KillStoreDB, Latency, ResetPeer, Timeout, Bandwidth, BankOutage, ReplCut,
	KillPrimary, Promotion, Rejoin}

// fault is one planned fault: what, where, when (offset from the start of the fault phase), for how long.
type fault struct {
	At, For time.Duration
	Kind    string
	Target  string // a process (bank-1, store-2) or a proxy (StoreToBank, BankToDB)
	Toxic   toxic  // for network faults
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
)

// plan draws the fault schedule for a fault phase of duration d from seed: one failover per started 5
// minutes (the first at 20% of the phase), a Bank outage of outage after each, and the other kinds at random
// (each at least once, in a seeded order), never inside a failover window, all over by the end of the phase.
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
	free := func(from, to time.Duration) bool {
		for _, b := range busy {
			if from < b[1] && to > b[0] {
				return false
			}
		}
		return true
	}
	if failoverOnly {
		return faults
	}
	kinds := []string{KillBank, KillStore, KillStoreDB, Latency, ResetPeer, Timeout, Bandwidth}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	drawn := 0
	for at := warmup; at < d; at += between(1500*time.Millisecond, 4*time.Second) {
		kind := kinds[rng.IntN(len(kinds))]
		if drawn < len(kinds) {
			kind = kinds[drawn]
		}
		f := fault{At: at, Kind: kind}
		switch kind {
		case KillBank:
			f.Target, f.For = fmt.Sprintf("bank-%d", 1+rng.IntN(2)), between(time.Second, 3*time.Second)
		case KillStore:
			f.Target, f.For = fmt.Sprintf("store-%d", 1+rng.IntN(2)), between(time.Second, 3*time.Second)
		case KillStoreDB:
			// The Stores' own database crashes: purchases get 503 meanwhile; claims committed without waiting
			// for the WAL (a lease) may vanish, so their rows are sent again — absorbed by the Bank.
			f.Target, f.For = "store-db", between(time.Second, 3*time.Second)
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
		if f.At+f.For > d || !free(f.At, f.At+f.For) {
			continue
		}
		f.Toxic.Name = fmt.Sprintf("%s-%d", f.Toxic.Type, len(faults))
		faults = append(faults, f)
		drawn++
	}
	sort.SliceStable(faults, func(i, j int) bool { return faults[i].At < faults[j].At })
	return faults
}
