package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the whole benchmark at toy sizes (single primaries, 2 clients, 1-second windows, 200
// purchases to drain) and checks that it produces a sane table and JSON. It asserts nothing about
// performance: `make bench` is the measurement.
func TestSmoke(t *testing.T) {
	out := t.TempDir()
	var stdout bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"-topologies", "single", "-rounds", "1", "-duration", "1s", "-warmup", "300ms",
		"-clients", "2", "-accounts", "10", "-drain", "200", "-e2e-duration", "1s", "-e2e-topology", "single",
		"-retries", "0", "-out", out, "-quiet"}
	if err := run(ctx, args, func(string) string { return "" }, &stdout); err != nil {
		t.Fatalf("bench: %v\n%s", err, stdout.String())
	}
	var rep Report
	data, err := os.ReadFile(filepath.Join(out, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("bench.json: %v", err)
	}
	if len(rep.Ingest) != 1 {
		t.Fatalf("%d ingestion results, want 1", len(rep.Ingest))
	}
	in := rep.Ingest[0]
	if in.Pgbench.TPS <= 0 || in.Bank.TPS <= 0 || in.Ratio <= 0 || in.CPURatio <= 0 || in.Bank.Errors != 0 ||
		in.Bank.P99 < in.Bank.P50 || in.Pgbench.P50 <= 0 || in.BankRSSMiB <= 0 || in.Bank.CPUPer1k.Service <= 0 ||
		in.Pgbench.CPUPer1k.Postgres <= 0 || len(in.Rounds) != 2 {
		t.Fatalf("implausible ingestion result: %+v", in)
	}
	d := rep.Drain
	if d == nil || d.Drained != 200 || d.TPS <= 0 || d.BankTPS <= 0 || d.Ratio <= 0 || d.StoreRSSMiB <= 0 ||
		len(d.Bank) != 2 {
		t.Fatalf("implausible drain result: %+v", d)
	}
	e := rep.E2E
	if e == nil || e.Accepted == 0 || e.Delivered != e.Accepted || e.Commit.N != e.Delivered || e.Rate <= 0 ||
		e.SystemMax == nil || e.SystemMax.TPS <= 0 || e.RSSRun == nil || e.BankRSSMiB <= 0 || e.StoreRSSMiB <= 0 {
		t.Fatalf("implausible end-to-end result: %+v", e)
	}
	// The runs at 1,000/s and at twice the maximum count what the Store shed beside what it accepted.
	for _, r := range []*E2EResult{e.RSSRun, e.OverloadRun} {
		if r == nil || r.Sent == 0 || r.AcceptedAll == 0 || r.AcceptedAll+r.Shed > r.Sent || r.StoreRSSMiB <= 0 {
			t.Fatalf("implausible overload run: %+v", r)
		}
	}
	// The Store's runtime at the end of the load: a relay, an HTTP server and its open connections.
	if g := e.StoreGo; g == nil || g.Goroutines < 5 || g.HeapInuseMiB <= 0 || g.StackInuseMiB <= 0 ||
		g.SysMiB < g.HeapInuseMiB+g.StackInuseMiB || g.SysMiB > e.StoreRSSMiB*4 {
		t.Fatalf("implausible Store runtime figures: %+v (peak RSS %.1f MiB)", g, e.StoreRSSMiB)
	}
	if len(rep.Targets) < 6 {
		t.Fatalf("%d targets, want every goal of issue 6: %+v", len(rep.Targets), rep.Targets)
	}
	md, err := os.ReadFile(filepath.Join(out, "bench.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**bank/pgbench**", "**drain/bank**", "202→Bank commit", "| target |",
		"pgbench, Bank SQL"} {
		if !strings.Contains(string(md), want) || !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

// TestPgbenchScriptIsTheBanksStatement: the script is processSQL from the Bank's source with only the
// parameters replaced.
func TestPgbenchScriptIsTheBanksStatement(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	sql, err := bankSQL(root)
	if err != nil {
		t.Fatal(err)
	}
	script := pgbenchScript(sql, 1000)
	for _, want := range []string{"FOR UPDATE", "ON CONFLICT (id) DO NOTHING", "gen_random_uuid()", ":account",
		":amount", ":currency", ":store", ":created", `\set account random(1, 1000)`} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "@") {
		t.Errorf("a named parameter is left:\n%s", script)
	}
	if got := strings.ReplaceAll(strings.ReplaceAll(script, "gen_random_uuid()", "@id"), ":", "@"); !strings.Contains(got, strings.TrimSpace(sql)) {
		t.Errorf("script is not the Bank's statement:\n%s", script)
	}
}
