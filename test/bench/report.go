package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Goals of issue 6 (bank/pgbench, the p99, memory) and issue 14 (batches, drain, end-to-end maximum).
const (
	goalBankRatio        = 0.70
	goalBatchRatio       = 0.80 // Bank batched / pgbench running the batch statement
	goalBatchOverPgbench = 1.50 // Bank batched / pgbench running the single statement
	goalDrainRatio       = 1.00 // outbox drain / the Bank's single-request ingestion
	goalE2EMaxRatio      = 0.50 // end-to-end sustained maximum / the Bank's single-request ingestion
	goalE2EP99ms         = 50.0
	goalRSSMiB           = 64.0
)

func targets(rep *Report) []Target {
	var t []Target
	for _, in := range rep.Ingest {
		t = append(t, Target{Name: "bank/pgbench, " + in.Label, Value: round2(in.Ratio),
			Goal: fmt.Sprintf(">= %.2f", goalBankRatio), Met: in.Ratio >= goalBankRatio})
		if in.BankBatch != nil {
			t = append(t, Target{Name: "batch/pgbench-batch, " + in.Label, Value: round2(in.BatchRatio),
				Goal: fmt.Sprintf(">= %.2f", goalBatchRatio), Met: in.BatchRatio >= goalBatchRatio})
			t = append(t, Target{Name: "batch/pgbench, " + in.Label, Value: round2(in.BatchOverPgbench),
				Goal: fmt.Sprintf(">= %.2f", goalBatchOverPgbench), Met: in.BatchOverPgbench >= goalBatchOverPgbench})
		}
		t = append(t, Target{Name: "Bank peak RSS at max load (MiB), " + in.Label, Value: round2(in.BankRSSMiB),
			Goal: fmt.Sprintf("< %.0f", goalRSSMiB), Met: in.BankRSSMiB < goalRSSMiB})
	}
	if d := rep.Drain; d != nil {
		t = append(t, Target{Name: "drain/bank, " + topologyLabel(d.Topology), Value: round2(d.Ratio),
			Goal: fmt.Sprintf(">= %.2f", goalDrainRatio), Met: d.Ratio >= goalDrainRatio})
	}
	if e := rep.E2E; e != nil && e.SystemMax != nil && e.BankTPS > 0 {
		t = append(t, Target{Name: "e2e-max/bank, " + topologyLabel(e.Topology), Value: round2(e.MaxOverBank),
			Goal: fmt.Sprintf(">= %.2f", goalE2EMaxRatio), Met: e.MaxOverBank >= goalE2EMaxRatio})
	}
	if e := rep.E2E; e != nil {
		t = append(t, Target{Name: fmt.Sprintf("e2e p99 202→Bank commit at %.0f/s, %s (ms)", e.Rate, e.Basis),
			Value: round2(e.Commit.P99), Goal: fmt.Sprintf("<= %.0f", goalE2EP99ms), Met: e.Commit.P99 <= goalE2EP99ms})
		for _, s := range []struct {
			name string
			v    float64
		}{{"Bank", e.BankRSSMiB}, {"Store", e.StoreRSSMiB}} {
			t = append(t, Target{Name: fmt.Sprintf("%s peak RSS, e2e at %.0f/s (MiB)", s.name, e.Rate),
				Value: round2(s.v), Goal: fmt.Sprintf("< %.0f", goalRSSMiB), Met: s.v < goalRSSMiB})
		}
		for _, r := range []*E2EResult{e.RSSRun, e.OverloadRun} {
			if r == nil {
				continue
			}
			for _, s := range []struct {
				name string
				v    float64
			}{{"Bank", r.BankRSSMiB}, {"Store", r.StoreRSSMiB}} {
				t = append(t, Target{Name: fmt.Sprintf("%s peak RSS at %.0f/s offered (MiB; %d of %d purchases shed)",
					s.name, r.Rate, r.Shed, r.Sent), Value: round2(s.v), Goal: fmt.Sprintf("< %.0f", goalRSSMiB),
					Met: s.v < goalRSSMiB})
			}
		}
	}
	return t
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// write prints the table and writes bench.json and bench.md under cfg.Out.
func (b *bench) write(rep *Report) error {
	var md strings.Builder
	markdown(&md, rep)
	fmt.Fprintln(b.out)
	fmt.Fprint(b.out, md.String())
	if err := os.MkdirAll(b.cfg.Out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.cfg.Out, "bench.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.cfg.Out, "bench.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "\nwritten: %s, %s\n", filepath.Join(b.cfg.Out, "bench.json"), filepath.Join(b.cfg.Out, "bench.md"))
	return nil
}

func markdown(w io.Writer, rep *Report) {
	c := rep.Config
	fmt.Fprintf(w, "Bench %s · %d cores · %s · %s · fsync=%v · %d clients · %d accounts · load1 %.2f→%.2f · "+
		"other processes' CPU during the windows: median %.2f, max %.2f cores\n\n",
		rep.Started.Format("2006-01-02 15:04Z"), rep.Host.Cores, rep.Host.GoVersion, rep.Host.PostgreSQL, c.Fsync,
		c.Clients, c.Accounts, rep.Host.LoadBefore, rep.Host.LoadAfter, rep.Host.ForeignCores,
		rep.Host.ForeignCoresMax)
	if len(rep.Ingest) > 0 {
		fmt.Fprintf(w, "Ingestion: medians of %d round(s) × %s windows (after %s warm-up), contenders alternating; "+
			"tx/s counts transactions (a batch counts each), latency is per statement or request.\n\n",
			c.Rounds, c.Duration, c.Warmup)
		fmt.Fprintln(w, "| topology | contender | tx/s | p50 ms | p99 ms | CPU s/1k tx: service | postgres | client | total | peak RSS MiB |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, in := range rep.Ingest {
			row := func(name string, s Summary, rss string) {
				fmt.Fprintf(w, "| %s | %s | %.0f | %.2f | %.2f | %.3f | %.3f | %.3f | %.3f | %s |\n", in.Label, name,
					s.TPS, s.P50, s.P99, s.CPUPer1k.Service, s.CPUPer1k.Postgres, s.CPUPer1k.Client, s.CPUPer1k.Total, rss)
			}
			row("pgbench, Bank SQL", in.Pgbench, "–")
			row("Bank, HTTPS+mTLS", in.Bank, fmt.Sprintf("%.1f", in.BankRSSMiB))
			noisy := ""
			if in.NoisyRounds > 0 {
				noisy = fmt.Sprintf(" (%d noisy)", in.NoisyRounds)
			}
			fmt.Fprintf(w, "| %s | **bank/pgbench** | **%.2f** | rounds: %s%s | | CPU ratio: | | | %.2f | |\n", in.Label,
				in.Ratio, strings.Join(fmtRatios(in.RoundRatios), ", "), noisy, in.CPURatio)
			if in.BankBatch != nil {
				row(fmt.Sprintf("pgbench, Bank batch SQL (%d/statement, %d clients)", c.BatchSize, c.BatchClients),
					*in.PgbenchBatch, "–")
				row(fmt.Sprintf("Bank batch, HTTPS+mTLS (%d/request, %d clients)", c.BatchSize, c.BatchClients),
					*in.BankBatch, fmt.Sprintf("%.1f", in.BankRSSMiB))
				fmt.Fprintf(w, "| %s | **batch/pgbench-batch** | **%.2f** | rounds: %s | | CPU ratio: | | | %.2f | |\n",
					in.Label, in.BatchRatio, strings.Join(fmtRatios(in.BatchRoundRatios), ", "), in.BatchCPURatio)
				fmt.Fprintf(w, "| %s | **batch/pgbench** | **%.2f** | rounds: %s | | | | | | |\n",
					in.Label, in.BatchOverPgbench, strings.Join(fmtRatios(in.BatchOverPgbenchRound), ", "))
			}
		}
		fmt.Fprintln(w)
	}
	if d := rep.Drain; d != nil {
		relay := fmt.Sprintf("relay in batch mode, %d per request, %d in flight", c.BatchSize, c.BatchClients)
		if c.RelayMode == "single" {
			relay = fmt.Sprintf("relay in single mode, %d in flight", c.Clients)
		}
		fmt.Fprintf(w, "Outbox drain (%s, %s): %d purchases pending while the Bank was down; Bank started.\n\n",
			topologyLabel(d.Topology), relay, d.Purchases)
		fmt.Fprintln(w, "| drained | seconds (from Bank start) | drain tx/s | Bank ingestion tx/s (before, after) | **drain/bank** | CPU ratio | CPU s/1k: bank+store | postgres | total | Bank RSS MiB | Store RSS MiB |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		var refs []string
		for _, m := range d.Bank {
			refs = append(refs, fmt.Sprintf("%.0f", m.TPS))
		}
		fmt.Fprintf(w, "| %d | %.1f (%.1f) | %.0f | %.0f (%s) | **%.2f** | %.2f | %.3f | %.3f | %.3f | %.1f | %.1f |\n\n",
			d.Drained, d.Seconds, d.TimeToDrain, d.TPS, d.BankTPS, strings.Join(refs, ", "), d.Ratio, d.CPURatio,
			d.CPUPer1k.Service, d.CPUPer1k.Postgres, d.CPUPer1k.Total, d.BankRSSMiB, d.StoreRSSMiB)
	}
	if e := rep.E2E; e != nil {
		fmt.Fprintf(w, "End to end (%s): purchases through the Store API, open loop at %.0f/s (%s) for %s after %s "+
			"of warm-up (fresh Bank and Store processes).\n", topologyLabel(e.Topology), e.Rate, e.Basis, c.E2EDuration,
			c.Warmup)
		if m := e.SystemMax; m != nil {
			var steps []string
			for _, st := range m.Steps {
				mark := "ok"
				if !st.Sustained {
					mark = fmt.Sprintf("behind, backlog %d", st.Backlog)
				}
				steps = append(steps, fmt.Sprintf("%.0f (%s)", st.Rate, mark))
			}
			fmt.Fprintf(w, "End-to-end sustained maximum **%.0f/s**: with the Store API saturated by %d closed-loop clients "+
				"it accepted %.0f/s while the relay delivered %.0f/s; open-loop steps: %s.", m.TPS, c.Clients,
				m.AcceptedTPS, m.DeliveredTPS, strings.Join(steps, ", "))
			if e.BankTPS > 0 {
				fmt.Fprintf(w, " **e2e-max/bank %.2f** (the Bank's single-request ingestion on the same databases: %.0f tx/s).",
					e.MaxOverBank, e.BankTPS)
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| offered/s | whole run: sent / 202 / shed (503) / other errors | accepted | delivered | 202 p50/p99 ms | **202→Bank commit p50** | **p99** | max ms | p99 parts: 202→Bank statement, statement→commit | cores used | Bank RSS MiB | Store RSS MiB |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for i, r := range []*E2EResult{e, e.RSSRun, e.OverloadRun} {
			if r == nil {
				continue
			}
			rate, b := fmt.Sprintf("%.0f", r.Rate), "**"
			switch i {
			case 1:
				rate, b = rate+" (RSS run)", ""
			case 2:
				rate, b = rate+" (2 × maximum)", ""
			}
			fmt.Fprintf(w, "| %s | %d / %d / %d / %d | %d | %d | %.2f / %.2f | %s%.2f%s | %s%.2f%s | %.2f | %.2f, %.2f | %.2f (+%.2f other) | %.1f | %.1f |\n",
				rate, r.Sent, r.AcceptedAll, r.Shed, r.Errors, r.Accepted, r.Delivered, r.Accept.P50, r.Accept.P99, b,
				r.Commit.P50, b, b, r.Commit.P99, b, r.Commit.Max, r.ToBank.P99, r.BankStatement.P99, r.Cores.Total,
				r.ForeignCores, r.BankRSSMiB, r.StoreRSSMiB)
		}
		fmt.Fprintln(w)
	}
	if len(rep.Targets) > 0 {
		fmt.Fprintln(w, "| target | measured | goal | met |")
		fmt.Fprintln(w, "|---|---:|---|---|")
		for _, t := range rep.Targets {
			met := "yes"
			if !t.Met {
				met = "**no**"
			}
			fmt.Fprintf(w, "| %s | %.2f | %s | %s |\n", t.Name, t.Value, t.Goal, met)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "\nNote: %s\n", n)
	}
}
