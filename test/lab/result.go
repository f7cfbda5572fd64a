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
	NegativeRelay         bool // the Store built with -tags txmesh_negative_control
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
	// The contract at its edges (issue 19): answers without the Bank's marks (the sidecars' count, the
	// Stores' store_relay_foreign_answers_total, a lower bound across kills), dead letters and their redrive,
	// the Store API's answers, the standby and stalled-client windows.
	ForeignInjected, ForeignCounted int64
	DeadLetters                     DeadLetters
	API                             API
	Standbys                        []StandbyResult
	Stalls                          []StallResult
	Errors                          []string

	failovers []failover
}

func newResult(cfg Config) *Result {
	return &Result{Mode: cfg.Mode, Seed: cfg.Seed, Rate: cfg.Rate, GeneratorInterval: cfg.GeneratorInterval,
		FailoverOnly: cfg.FailoverOnly, NegativeRelay: cfg.NegativeRelay}
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
	d = append(d, r.ContractDefects()...)
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

// ContractDefects lists what breaks the contract at its edges: a purchase ended by anything but the Bank's
// own rejection, a Store answer that said something false, a redrive that did not account for its dead
// letters, foreign answers the Stores did not count.
func (r *Result) ContractDefects() []string {
	var d []string
	add := func(n int, what string) {
		if n > 0 {
			d = append(d, fmt.Sprintf("%d %s", n, what))
		}
	}
	dl, a := r.DeadLetters, r.API
	add(dl.Applied, "dead letters of transactions the Bank applied")
	add(dl.NotRefused, "dead letters the Bank never refused")
	add(dl.AfterNotRefused, "dead letters after the redrive that the Bank did not refuse")
	add(dl.AuditMismatch, "dead letters and redrive audit lines that do not match")
	if dl.RedriveErr != "" {
		d = append(d, "store redrive: "+dl.RedriveErr)
	}
	add(a.False503, "false 503s (a 503'd Purchase-Id stored)")
	add(a.Unexpected, "POST answers other than 202, 503 and 504")
	add(a.DoubleAfter504, "504'd purchases stored besides their retry's")
	if r.ForeignInjected > 0 && r.ForeignCounted == 0 {
		d = append(d, fmt.Sprintf("%d foreign answers injected, none counted by the Stores (%s)",
			r.ForeignInjected, foreignMetric))
	}
	return d
}

// Passed: a synchronous run must have no defect; the negative control must have lost transactions (a lab
// that cannot fail proves nothing); the relay's negative control must be caught ending purchases on
// something else's word (dead letters the Bank never refused or had applied), or losing or mismatching.
func (r *Result) Passed() bool {
	switch {
	case r.Mode == Async:
		return r.Lost() > 0
	case r.NegativeRelay:
		return r.caught() > 0
	}
	return len(r.Defects()) == 0
}

// caught counts what the judge holds against the relay's negative control.
func (r *Result) caught() int {
	return r.DeadLetters.Applied + r.DeadLetters.NotRefused + r.Lost() + max(r.Audit.Mismatched, r.Check.Mismatched)
}

// Verdict is one line for the table.
func (r *Result) Verdict() string {
	switch {
	case r.Mode == Async && r.Passed():
		return fmt.Sprintf("PASS: loss detected as expected (%d lost)", r.Lost())
	case r.Mode == Async:
		return "FAIL: no loss detected: the lab cannot fail"
	case r.NegativeRelay && r.Passed():
		return fmt.Sprintf("PASS: caught as expected (%d dead letters the Bank never refused, %d of transactions "+
			"it applied, %d lost, %d mismatched)", r.DeadLetters.NotRefused, r.DeadLetters.Applied, r.Lost(),
			max(r.Audit.Mismatched, r.Check.Mismatched))
	case r.NegativeRelay:
		return "FAIL: the old relay policy was not caught: the lab cannot tell the Bank's word from a mesh's"
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
		switch {
		case r.Mode == Async:
			name = "negative control: async + replication cut"
		case r.NegativeRelay:
			name = "negative control: old relay policy (any 4xx dead-letters)"
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
	contractRows(row)
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

// contractRows are the table's rows for the contract at its edges (issue 19).
func contractRows(row func(string, func(*Result) string)) {
	row("foreign answers: injected by the sidecars / counted by the Stores", func(r *Result) string {
		return fmt.Sprintf("%d / %d", r.ForeignInjected, r.ForeignCounted)
	})
	row("dead letters: **the Bank's own rejection** / applied by the Bank / never refused by it", func(r *Result) string {
		d := r.DeadLetters
		return fmt.Sprintf("**%d** / %d / %d", d.BankRefused, d.Applied, d.NotRefused)
	})
	row("redriven (`store redrive --all` audit lines) / left after", func(r *Result) string {
		d := r.DeadLetters
		s := fmt.Sprintf("%d of %d / %d", d.Redriven, d.Total, d.After)
		if d.AuditMismatch > 0 || d.RedriveErr != "" {
			s += fmt.Sprintf(" (%d not matching; %s)", d.AuditMismatch, d.RedriveErr)
		}
		return s
	})
	row("POST answers: 202 / 503 / 504 / other / none", func(r *Result) string {
		b := r.API.ByStatus
		other := r.API.Posts - b[202] - b[503] - b[504] - b[0]
		return fmt.Sprintf("%d / %d / %d / %d / %d", b[202], b[503], b[504], other, b[0])
	})
	row("**false 503s** (503'd Purchase-Id in store-db)", func(r *Result) string {
		return fmt.Sprintf("**%d**", r.API.False503)
	})
	row("outcome unknown (504): by lookup / retry, same id / retry, new id / unresolved", func(r *Result) string {
		u := r.API.Resolved
		return fmt.Sprintf("%d / %d / %d / %d", u[resolvedLookup], u[resolvedRetrySame], u[resolvedRetryNew],
			u[unresolved])
	})
	row("store-db standby gone: seconds → POSTs 202/503/504/none → standby back to first 202 (< 5 s)",
		func(r *Result) string {
			var parts []string
			for _, s := range r.Standbys {
				b := s.ByStatus
				back := "never"
				if s.ToAccepting >= 0 {
					back = fmt.Sprintf("%.2f s", s.ToAccepting.Seconds())
					if s.ToAccepting >= 5*time.Second {
						back += " (MISSED)"
					}
				}
				parts = append(parts, fmt.Sprintf("%.0f s → %d/%d/%d/%d → %s", s.Gone.Seconds(), b[202], b[503], b[504],
					b[0], back))
			}
			if len(parts) == 0 {
				return "–"
			}
			return strings.Join(parts, "; ")
		})
	row("stalled clients: normal clients' p99 on that Store (< 2 s), max, POSTs", func(r *Result) string {
		var parts []string
		for _, s := range r.Stalls {
			mark := ""
			if s.P99 >= 2*time.Second {
				mark = " (MISSED)"
			}
			parts = append(parts, fmt.Sprintf("%s %.0f s: p99 %.3f s%s, max %.3f s, %d POSTs", s.Store, s.For.Seconds(),
				s.P99.Seconds(), mark, s.Max.Seconds(), s.Posts))
		}
		if len(parts) == 0 {
			return "–"
		}
		return strings.Join(parts, "; ")
	})
}
