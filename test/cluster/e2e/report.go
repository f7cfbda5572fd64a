package e2e

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Table prints the result as a markdown table, one row per scenario, then the measured times.
func (r *Result) Table(w io.Writer) {
	fmt.Fprintf(w, "\nKubernetes %s, %d nodes (%s), CloudNativePG %s, PostgreSQL %s, containerd %s; mesh: %s; load %.0f purchases/s\n\n",
		r.Cluster.Kubernetes, len(r.Cluster.Nodes), strings.Join(r.Cluster.Nodes, ", "), r.Cluster.CNPG,
		r.Cluster.PostgresVersion, r.Cluster.Containerd, r.Cluster.Mesh, r.Rate)
	fmt.Fprintln(w, "| scenario | result | s | purchases | lost | unknown | dup | mismatch | imbalance | 202 missing | client 5xx | client failed | times (s) |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, s := range r.Scenarios {
		res := "PASS"
		if !s.Passed {
			res = "**FAIL**"
		}
		if s.NotRun != "" {
			res = "not run"
		}
		if s.Expect == "loss" {
			res += " (must lose)"
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s |\n", s.Name, res, s.Seconds,
			s.Purchases, s.Lost, s.Unknown, s.Duplicated, s.Mismatched, s.Imbalanced, s.Missing202, s.Client5xx,
			s.Failed, times(s.Times))
	}
	fmt.Fprintln(w)
	for _, s := range r.Scenarios {
		for _, c := range s.Checks {
			fmt.Fprintf(w, "- %s: %s\n", s.Name, c)
		}
		if s.AlertsFired != nil {
			fmt.Fprintf(w, "- %s: alerts fired: %s%s\n", s.Name, orNone(s.AlertsFired), carried(s.AlertsCarried))
		}
		if s.Error != "" {
			fmt.Fprintf(w, "- %s: ERROR %s\n", s.Name, s.Error)
		}
		if s.NotRun != "" {
			fmt.Fprintf(w, "- %s: NOT RUN %s\n", s.Name, s.NotRun)
		}
	}
	if r.Memory != nil {
		fmt.Fprintf(w, "\nmemory: %s\n", r.Memory)
	}
	fmt.Fprintf(w, "time: cluster up %.0f s, scenarios %.0f s, total %.0f s — %s\n", r.Timing["cluster_up"],
		r.Timing["scenarios"], r.Timing["total"], map[bool]string{true: "PASSED", false: "FAILED"}[r.Passed])
}

func times(t map[string]float64) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, t[k]))
	}
	return strings.Join(parts, ", ")
}

func orNone(a []string) string {
	if len(a) == 0 {
		return "none"
	}
	return strings.Join(a, ", ")
}

func carried(a []string) string {
	if len(a) == 0 {
		return ""
	}
	return " (pending or firing when the row began: " + strings.Join(a, ", ") + ")"
}
