package relay

import "time"

// Backoff computes the wait before resending a purchase, from the number of failed sends alone (the count is
// stored with the purchase, so any relay computes the same schedule).
type Backoff struct {
	Min, Max time.Duration
}

// Delay returns the wait after failed sends (≥ 1): Min·2^(failed-1), capped at Max, then "equal jitter" —
// uniform in [d/2, d] for rnd uniform in [0, 1) — so purchases that failed together spread out instead of
// hitting a recovering Bank together. A Bank's Retry-After raises the wait; Max caps it in every case.
func (b Backoff) Delay(failed int, retryAfter time.Duration, rnd float64) time.Duration {
	d := b.Min
	for i := 1; i < failed && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	rnd = min(max(rnd, 0), 1)
	j := d/2 + time.Duration(rnd*float64(d-d/2))
	return min(max(j, retryAfter), b.Max)
}
