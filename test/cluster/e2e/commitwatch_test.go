package e2e

import (
	"testing"
	"time"
)

// The first commit after a fault is one whose pod had been read after the fault: growth made before it but
// read 2 s late (another pod's read hung on the killed node) is not it. The longest gap runs over every sample.
func TestCommitWatchFirstAfter(t *testing.T) {
	fault := time.Unix(1000, 0)
	at := func(s float64) time.Time { return fault.Add(time.Duration(s * float64(time.Second))) }
	w := &commitWatch{}
	w.add(at(-0.5), at(-0.75))
	w.add(at(2.2), at(-0.25)) // made before the fault, seen late
	w.add(at(70.4), at(70.1)) // the first commit on the new primary
	w.add(at(70.7), at(70.4))
	if d, ok := w.firstAfter(fault); !ok || d != 70400*time.Millisecond {
		t.Errorf("first after the fault %v %v, want 70.4s", d, ok)
	}
	if g := w.longestGap(at(-2), at(71)); g != 68200*time.Millisecond {
		t.Errorf("longest gap %v, want 68.2s", g)
	}
	if _, ok := w.firstAfter(at(80)); ok {
		t.Error("a commit after the last sample")
	}
}
