package lab

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Result is one run's measurements.
type Result struct {
	Mode                  Replication
	Seed                  uint64
	Rate                  float64
	GeneratorInterval     time.Duration
	FailoverOnly          bool
	WorkDir               string
	Started               time.Time
	SetUp, FaultPhase     time.Duration
	Plan                  []string
	Faults                map[string]int
	APIAccepted           int
	APIFailed, APISkipped int64
	MaxBacklog            int64
	BreakerOpen           map[string]time.Duration
	TimeToDrain           time.Duration
	Failovers             []FailoverResult
	Audit                 Audit
	Check                 Check
	Errors                []string

	failovers []failover
}

func newResult(cfg Config) *Result {
	return &Result{Mode: cfg.Mode, Seed: cfg.Seed, Rate: cfg.Rate, GeneratorInterval: cfg.GeneratorInterval,
		FailoverOnly: cfg.FailoverOnly}
}

// Lost is the authoritative count of transactions the Bank acknowledged but no longer has: txaudit's when
// it ran, the lab's cross-check otherwise.
func (r *Result) Lost() int {
	if r.Audit.Ran {
		return r.Audit.Lost
	}
	return r.Check.Lost
}

// Defects lists everything that makes a synchronous run fail.
func (r *Result) Defects() []string {
	var d []string
	add := func(n int, what string) {
		if n > 0 {
			d = append(d, fmt.Sprintf("%d %s", n, what))
		}
	}
	a, c := r.Audit, r.Check
	add(max(a.Lost, c.Lost), "lost")
	add(max(a.Unknown, c.Unknown), "unknown")
	add(a.Duplicated, "duplicated")
	add(max(a.Mismatched, c.Mismatched), "mismatched")
	add(max(a.Imbalanced, c.Imbalanced), "imbalanced accounts")
	add(c.AcceptedMissing, "accepted by the Store API but missing from store-db")
	add(c.Pending, "still pending")
	if a.Ran && a.Err != "" {
		d = append(d, "txaudit: "+a.Err)
	}
	if a.Ran && a.Exit != 0 && len(d) == 0 {
		d = append(d, fmt.Sprintf("txaudit exit %d (see %s)", a.Exit, a.Output))
	}
	for _, f := range r.Failovers {
		if f.Err != "" {
			d = append(d, "failover: "+f.Err)
		}
	}
	return d
}

// Passed: a synchronous run must have no defect; the negative control must have lost transactions (a lab
// that cannot fail proves nothing).
func (r *Result) Passed() bool {
	if r.Mode == Async {
		return r.Lost() > 0
	}
	return len(r.Defects()) == 0
}

// Verdict is one line for the table.
func (r *Result) Verdict() string {
	switch {
	case r.Mode == Async && r.Passed():
		return fmt.Sprintf("PASS: loss detected as expected (%d lost)", r.Lost())
	case r.Mode == Async:
		return "FAIL: no loss detected: the lab cannot fail"
	case r.Passed():
		return "PASS: zero loss"
	}
	return "FAIL: " + strings.Join(r.Defects(), ", ")
}

func secs(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// Table prints runs side by side as a Markdown table.
func Table(runs ...*Result) string {
	var b strings.Builder
	head := []string{""}
	sep := []string{"---"}
	for _, r := range runs {
		name := "synchronous standby"
		if r.Mode == Async {
			name = "negative control: async + replication cut"
		}
		head, sep = append(head, name), append(sep, "---:")
	}
	line := func(cells []string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	line(head)
	line(sep)
	row := func(label string, f func(r *Result) string) {
		cells := []string{label}
		for _, r := range runs {
			cells = append(cells, f(r))
		}
		line(cells)
	}
	row("seed / fault phase", func(r *Result) string {
		s := fmt.Sprintf("%d / %.0f s", r.Seed, r.FaultPhase.Seconds())
		if r.FailoverOnly {
			s += " (failover only)"
		}
		return s
	})
	row("load: API rate + generators", func(r *Result) string {
		return fmt.Sprintf("%.0f/s + 2×1 per %s", r.Rate, r.GeneratorInterval)
	})
	row("**transactions** (store-db purchases)", func(r *Result) string {
		return fmt.Sprintf("**%d** (api %d, generator %d)", r.Check.BySource["api"]+r.Check.BySource["generator"],
			r.Check.BySource["api"], r.Check.BySource["generator"])
	})
	row("approved / declined / rejected / pending", func(r *Result) string {
		s := r.Check.ByStatus
		return fmt.Sprintf("%d / %d / %d / %d", s["approved"], s["declined"], s["rejected"], s["pending"])
	})
	row("Bank rows (bank-db, final primary)", func(r *Result) string { return fmt.Sprint(r.Check.BankRows) })
	row("API: accepted / refused after retries", func(r *Result) string {
		return fmt.Sprintf("%d / %d", r.APIAccepted, r.APIFailed)
	})
	for _, k := range FaultKinds {
		row("fault: "+k, func(r *Result) string { return fmt.Sprint(r.Faults[k]) })
	}
	audit := func(label string, a func(Audit) int, c func(Check) int) {
		row(label, func(r *Result) string {
			s := "–"
			if r.Audit.Ran {
				s = fmt.Sprint(a(r.Audit))
			}
			if c != nil {
				s += fmt.Sprintf(" (lab: %d)", c(r.Check))
			}
			return s
		})
	}
	audit("**lost** (txaudit; lab cross-check)", func(a Audit) int { return a.Lost }, func(c Check) int { return c.Lost })
	audit("unknown", func(a Audit) int { return a.Unknown }, func(c Check) int { return c.Unknown })
	audit("duplicated", func(a Audit) int { return a.Duplicated }, nil)
	audit("mismatched", func(a Audit) int { return a.Mismatched }, func(c Check) int { return c.Mismatched })
	audit("imbalanced accounts", func(a Audit) int { return a.Imbalanced }, func(c Check) int { return c.Imbalanced })
	row("accepted (202) but missing from store-db", func(r *Result) string { return fmt.Sprint(r.Check.AcceptedMissing) })
	row("txaudit exit", func(r *Result) string {
		if !r.Audit.Ran {
			return "not run"
		}
		return fmt.Sprint(r.Audit.Exit)
	})
	row("max backlog", func(r *Result) string { return fmt.Sprint(r.MaxBacklog) })
	row("breaker seen open (per Store)", func(r *Result) string {
		var names []string
		for n := range r.BreakerOpen {
			names = append(names, n)
		}
		sort.Strings(names)
		var parts []string
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s %.0f s", n, r.BreakerOpen[n].Seconds()))
		}
		if len(parts) == 0 {
			return "never"
		}
		return strings.Join(parts, ", ")
	})
	row("time to drain after the faults", func(r *Result) string { return secs(r.TimeToDrain) })
	fo := func(label string, f func(FailoverResult) string) {
		row(label, func(r *Result) string {
			var parts []string
			for _, x := range r.Failovers {
				parts = append(parts, f(x))
			}
			if len(parts) == 0 {
				return "–"
			}
			return strings.Join(parts, "; ")
		})
	}
	fo("failover: kill -9 → standby promoted", func(x FailoverResult) string { return secs(x.KillToPromoted) })
	fo("failover: kill -9 → first Bank commit on new primary", func(x FailoverResult) string {
		return secs(x.KillToFirstCommit)
	})
	fo("Bank unavailability: last surviving commit before the kill → first after", func(x FailoverResult) string {
		return secs(x.CommitGap)
	})
	fo("as the Stores saw it: last outcome recorded before the kill → first after", func(x FailoverResult) string {
		return secs(x.AckGap)
	})
	fo("old primary re-joined as standby", func(x FailoverResult) string {
		return x.RejoinedBy + " after " + secs(x.KillToRejoined)
	})
	row("**verdict**", func(r *Result) string { return "**" + r.Verdict() + "**" })
	return b.String()
}
