package lab

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/txmesh/txmesh/src/localenv/httpfault"
	"github.com/txmesh/txmesh/src/localenv/proc"
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
	r.load = newLoader(r.storeURLs, r.cfg.Rate, r.cfg.Accounts, r.cfg.Seed)
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
	for _, sc := range r.sidecars {
		sc.set(httpfault.Faults{})
	}
	_ = r.storeStandby.Resume() // the executor resumed it; a cancelled one may not have
	for _, p := range r.services() {
		if err := p.Start(); err != nil {
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
		if err := p.Stop(30 * time.Second); err != nil {
			r.res.Errors = append(r.res.Errors, err.Error())
		}
		p.Setenv("GENERATOR_INTERVAL", "0")
		if err := p.Start(); err != nil {
			return err
		}
	}
	for _, p := range r.stores {
		if err := r.waitReady(ctx, p); err != nil {
			return err
		}
	}
	if err := r.waitDrained(ctx, "the faults"); err != nil {
		return err
	}
	r.res.TimeToDrain = time.Since(r.started.Add(r.res.FaultPhase))
	r.logf("drained %.1fs after the faults stopped", r.res.TimeToDrain.Seconds())
	// Dead letters: judged as they are, then redriven with the real command, then judged again.
	dead, err := r.judgeDeadLetters(ctx)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	if len(dead) > 0 {
		r.redrive(ctx, dead)
		if err := r.waitDrained(ctx, "the redriven purchases"); err != nil {
			return err
		}
	}
	if err := r.judgeAfterRedrive(ctx); err != nil {
		return fmt.Errorf("dead letters after the redrive: %w", err)
	}
	d := r.res.DeadLetters
	r.logf("dead letters: %d (the Bank's own rejection %d, applied by the Bank %d, never refused by it %d); "+
		"redriven %d; left %d", d.Total, d.BankRefused, d.Applied, d.NotRefused, d.Redriven, d.After)
	r.res.MaxBacklog = r.mon.maxBacklog
	r.res.BreakerOpen = r.mon.breakerOpen
	r.res.ForeignCounted = r.mon.foreignTotal()
	for _, sc := range r.sidecars {
		r.res.ForeignInjected += sc.in.Stats().Foreign
	}
	// Graceful stop, Stores first: nothing moves while the audit reads.
	for _, p := range append(append([]*proc.Process{}, r.stores...), r.banks...) {
		if err := p.Stop(30 * time.Second); err != nil {
			r.res.Errors = append(r.res.Errors, err.Error())
		}
	}
	return nil
}

// waitDrained waits until the outbox is empty, for up to the drain timeout after what.
func (r *run) waitDrained(ctx context.Context, after string) error {
	deadline := time.Now().Add(r.cfg.DrainTimeout)
	for {
		o, _, ok := r.mon.poll(ctx)
		if ok && o.Backlog == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backlog %d not drained within %s after %s (see %s)", o.Backlog,
				r.cfg.DrainTimeout, after, r.dir)
		}
		if !sleep(ctx, 500*time.Millisecond) {
			return ctx.Err()
		}
	}
}
