package lab

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// faultPhase runs the load, the monitor and the fault schedule for cfg.Duration, then stops every fault.
func (r *run) faultPhase(ctx context.Context) error {
	faults := plan(r.cfg.Seed, r.cfg.Duration, r.cfg.Cut, r.cfg.Outage, r.cfg.FailoverOnly)
	r.logf("fault schedule (seed %d):", r.cfg.Seed)
	for _, f := range faults {
		r.logf("  %s", f)
		r.res.Plan = append(r.res.Plan, f.String())
	}
	r.exec = newExecutor(r)
	r.mon = newMonitor(r)
	r.load = newLoader(r.storeURLs, r.http, r.cfg.Rate, r.cfg.Accounts, r.cfg.Seed)
	r.started = time.Now()
	r.res.Started = r.started
	monCtx, stopMon := context.WithCancel(ctx)
	monDone := make(chan struct{})
	go func() { r.mon.run(monCtx, r.cfg.Progress); close(monDone) }()
	defer func() { stopMon(); <-monDone }()
	loadCtx, stopLoad := context.WithTimeout(ctx, r.cfg.Duration)
	loadDone := make(chan struct{})
	go func() { r.load.run(loadCtx); close(loadDone) }()
	r.exec.run(ctx, r.started, faults)
	<-loadDone
	stopLoad()
	if err := ctx.Err(); err != nil {
		return err
	}
	r.res.FaultPhase = time.Since(r.started)
	r.res.Faults, r.res.failovers = r.exec.snapshot()
	r.res.APIAccepted = len(r.load.acceptedIDs())
	r.res.APIFailed = r.load.failed.Load()
	r.res.APISkipped = r.load.skipped.Load()
	// Every fault off, every process up.
	for _, px := range []*netProxy{r.toBank, r.db.rw, r.db.repl} {
		px.p.Toxics.ResetToxics(ctx)
		if err := px.restore(); err != nil {
			return err
		}
	}
	for _, p := range append(append([]*proc{}, r.banks...), r.stores...) {
		if err := p.start(); err != nil {
			return err
		}
	}
	r.logf("faults over: %s", formatCounts(r.res.Faults))
	return nil
}

func formatCounts(c map[string]int) string {
	var parts []string
	for _, k := range FaultKinds {
		if c[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, c[k]))
		}
	}
	return strings.Join(parts, ", ")
}

// drain restarts the Stores gracefully with their generators off (SIGTERM: stop claiming, finish or release
// in-flight sends), then waits until the outbox is empty.
func (r *run) drain(ctx context.Context) error {
	r.logf("draining: Stores restarted gracefully with the generator off")
	for _, p := range r.stores {
		if err := p.stop(30 * time.Second); err != nil {
			r.res.Errors = append(r.res.Errors, err.Error())
		}
		for i, e := range p.env {
			if strings.HasPrefix(e, "GENERATOR_INTERVAL=") {
				p.env[i] = "GENERATOR_INTERVAL=0"
			}
		}
		if err := p.start(); err != nil {
			return err
		}
	}
	for _, p := range r.stores {
		if err := r.waitReady(ctx, p); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(r.cfg.DrainTimeout)
	for {
		o, _, ok := r.mon.poll(ctx)
		if ok && o.Backlog == 0 {
			r.res.TimeToDrain = time.Since(r.started.Add(r.res.FaultPhase))
			r.logf("drained %.1fs after the faults stopped", r.res.TimeToDrain.Seconds())
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backlog %d not drained within %s after the faults (see %s)", o.Backlog,
				r.cfg.DrainTimeout, r.dir)
		}
		if !sleep(ctx, 500*time.Millisecond) {
			return ctx.Err()
		}
	}
	r.res.MaxBacklog = r.mon.maxBacklog
	r.res.BreakerOpen = r.mon.breakerOpen
	// Graceful stop, Stores first: nothing moves while the audit reads.
	for _, p := range append(append([]*proc{}, r.stores...), r.banks...) {
		if err := p.stop(30 * time.Second); err != nil {
			r.res.Errors = append(r.res.Errors, err.Error())
		}
	}
	return nil
}

var _ = http.StatusOK
