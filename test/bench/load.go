package main

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// obs is one completed request: when it completed and how long it took.
type obs struct {
	end     time.Time
	latency time.Duration
}

// errorTally counts failures by message (the first few distinct messages are kept).
type errorTally struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *errorTally) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 5 && !slices.Contains(e.first, err.Error()) {
		e.first = append(e.first, err.Error())
	}
}

// closedLoop runs one worker per job, each sending one request at a time until `until`, and returns what
// completed.
func closedLoop(ctx context.Context, until time.Time, jobs []func(context.Context) error) ([]obs, *errorTally) {
	errs := &errorTally{}
	per := make([][]obs, len(jobs))
	var wg sync.WaitGroup
	for w, do := range jobs {
		wg.Go(func() {
			local := make([]obs, 0, 4096)
			for ctx.Err() == nil {
				start := time.Now()
				if !start.Before(until) {
					break
				}
				if err := do(ctx); err != nil {
					if ctx.Err() == nil {
						errs.add(err)
					}
					continue
				}
				end := time.Now()
				local = append(local, obs{end: end, latency: end.Sub(start)})
			}
			per[w] = local
		})
	}
	wg.Wait()
	return slices.Concat(per...), errs
}

// openLoop starts requests at a fixed rate until `until`, whatever the answers (at most maxInFlight at a
// time: beyond that the arrival is counted as an error, not delayed). Latency is measured from the scheduled
// start, so a slow system cannot hide its queueing (no coordinated omission).
func openLoop(ctx context.Context, rate float64, until time.Time, maxInFlight int,
	do func(context.Context) error) ([]obs, *errorTally) {
	errs := &errorTally{}
	var mu sync.Mutex
	var out []obs
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxInFlight)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(until) || ctx.Err() != nil {
			break
		}
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			errs.add(errTooManyInFlight)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := do(ctx); err != nil {
				errs.add(err)
				return
			}
			end := time.Now()
			mu.Lock()
			out = append(out, obs{end: end, latency: end.Sub(at)})
			mu.Unlock()
		})
	}
	wg.Wait()
	return out, errs
}

type constError string

func (e constError) Error() string { return string(e) }

const errTooManyInFlight = constError("too many requests in flight: the system fell behind the offered rate")

// window keeps the observations that completed in [t0, t1).
func window(all []obs, t0, t1 time.Time) []obs {
	var out []obs
	for _, o := range all {
		if !o.end.Before(t0) && o.end.Before(t1) {
			out = append(out, o)
		}
	}
	return out
}

// Latency summarises a latency sample, in milliseconds.
type Latency struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func summarise(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	return Latency{N: len(s), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(s[len(s)-1]),
		Mean: ms(sum / time.Duration(len(s)))}
}

func latencies(o []obs) []time.Duration {
	out := make([]time.Duration, len(o))
	for i, v := range o {
		out[i] = v.latency
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
