package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/localenv/proc"
)

// binDir holds the bank and store commands TestMain built.
var binDir string

// TestMain builds the Bank and the Store before m.Run starts go test's -timeout clock (see proc.BuildDir).
func TestMain(m *testing.M) {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(proc.WithBuild(&binDir, m.Run, root, "./src/cmd/bank", "./src/cmd/store"))
}

// TestSmoke runs the whole benchmark at toy sizes (single primaries, 2 clients, 1-second windows, 200
// purchases to drain) and checks that it produces a sane table and JSON. It asserts nothing about
// performance: `make bench` is the measurement.
//
// Its bound is per step, not a total: the Bank and the Store are built before (TestMain), and the run is
// cancelled only when no progress line has come for stallLimit — a step that hangs — while a machine that is
// merely slow passes. The longest step is logged.
func TestSmoke(t *testing.T) {
	out := t.TempDir()
	w := newStallWatch(t, stallLimit)
	ctx := w.start(context.Background())
	args := []string{"-topologies", "single", "-rounds", "1", "-duration", "1s", "-warmup", "300ms",
		"-clients", "2", "-batch", "4", "-batch-clients", "2", "-accounts", "10", "-drain", "200", "-e2e-duration", "1s", "-e2e-topology", "single",
		"-retries", "0", "-out", out, "-bin", binDir}
	began := time.Now()
	err := run(ctx, args, func(string) string { return "" }, w)
	gap, after := w.stop()
	t.Logf("benchmark ran in %s; longest step %s (after %q)", time.Since(began).Round(100*time.Millisecond),
		gap.Round(100*time.Millisecond), after)
	if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
		t.Fatalf("%v; the run ended with: %v", cause, err)
	}
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	stdout := w.output()
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
		in.Pgbench.CPUPer1k.Postgres <= 0 || len(in.Rounds) != 4 {
		t.Fatalf("implausible ingestion result: %+v", in)
	}
	if pb, bb := in.PgbenchBatch, in.BankBatch; pb == nil || bb == nil || pb.TPS <= 0 || bb.TPS <= 0 ||
		bb.Errors != 0 || in.BatchRatio <= 0 || in.BatchOverPgbench <= 0 || in.BatchCPURatio <= 0 {
		t.Fatalf("implausible batched ingestion: %+v %+v %+v", in.PgbenchBatch, in.BankBatch, in)
	}
	for _, m := range in.Rounds {
		if batched := m.Contender == "pgbench-batch" || m.Contender == "bank-batch"; batched != (m.Batch == 4) ||
			m.Transactions%max(m.Batch, 1) != 0 {
			t.Fatalf("%s: %d transactions in batches of %d", m.Contender, m.Transactions, m.Batch)
		}
	}
	d := rep.Drain
	if d == nil || d.Drained != 200 || d.TPS <= 0 || d.BankTPS <= 0 || d.Ratio <= 0 || d.StoreRSSMiB <= 0 ||
		len(d.Bank) != 2 {
		t.Fatalf("implausible drain result: %+v", d)
	}
	e := rep.E2E
	if e == nil || e.Accepted == 0 || e.Delivered != e.Accepted || e.Commit.N != e.Delivered || e.Rate <= 0 ||
		e.SystemMax == nil || e.SystemMax.TPS <= 0 || e.RSSRun == nil || e.BankRSSMiB <= 0 || e.StoreRSSMiB <= 0 ||
		e.BankTPS != d.BankTPS || e.MaxOverBank <= 0 {
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
	names := ""
	for _, tg := range rep.Targets {
		names += tg.Name + "\n"
	}
	for _, want := range []string{"batch/pgbench-batch", "batch/pgbench,", "drain/bank", "e2e-max/bank",
		"bank/pgbench", "e2e p99", "RSS"} {
		if !strings.Contains(names, want) {
			t.Errorf("no target named %q among:\n%s", want, names)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "bench.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**bank/pgbench**", "**drain/bank**", "202→Bank commit", "| target |",
		"pgbench, Bank SQL", "**batch/pgbench-batch**", "**batch/pgbench**", "e2e-max/bank", "relay in batch mode"} {
		if !strings.Contains(string(md), want) || !strings.Contains(stdout, want) {
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

// TestPgbenchBatchScriptIsTheBanksStatement: the batch script is processBatchSQL from the Bank's source with
// only its array parameters replaced by arrays of n values built by the server.
func TestPgbenchBatchScriptIsTheBanksStatement(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	sql, err := bankBatchSQL(root)
	if err != nil {
		t.Fatal(err)
	}
	script := pgbenchBatchScript(sql, 1000, 32)
	for _, want := range []string{"ORDER BY id FOR UPDATE", "ON CONFLICT (id) DO NOTHING", "bank_batch_raced()",
		"(SELECT array_agg(gen_random_uuid()) FROM generate_series(1, 32))::uuid[]",
		"floor(random() * 1000) + 1", "array_fill(:created::timestamptz, ARRAY[32])"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "@") {
		t.Errorf("a named parameter is left:\n%s", script)
	}
	// Undo the replacements: the Bank's statement comes back.
	back := script
	for name, expr := range batchArrays(1000, 32) {
		back = strings.Replace(back, expr, name, 1)
	}
	if !strings.Contains(back, strings.TrimSpace(sql)) {
		t.Errorf("script is not the Bank's statement:\n%s", script)
	}
}

// stallLimit is how long one step of the smoke run may go without a progress line: a PostgreSQL server
// started and migrated, a service started (each bounded by its own 60 s readiness wait), one measured window,
// a drain of 200 purchases. The longest seen on a cold, busy machine is in the test's log.
const stallLimit = 2 * time.Minute

var errStalled = errors.New("benchmark stalled")

// stallWatch collects the benchmark's output, sends each line to t.Log, and cancels the run's context when no
// line has come for limit.
type stallWatch struct {
	t     *testing.T
	limit time.Duration
	stopc chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	all      bytes.Buffer
	partial  []byte
	last     time.Time
	lastLine string
	maxGap   time.Duration
	maxAfter string
}

func newStallWatch(t *testing.T, limit time.Duration) *stallWatch {
	return &stallWatch{t: t, limit: limit, stopc: make(chan struct{}), done: make(chan struct{}),
		last: time.Now(), lastLine: "(start)"}
}

func (w *stallWatch) start(parent context.Context) context.Context {
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		defer close(w.done)
		defer cancel(nil)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-w.stopc:
				return
			case <-tick.C:
			}
			w.mu.Lock()
			idle, line := time.Since(w.last), w.lastLine
			w.mu.Unlock()
			if idle > w.limit {
				cancel(fmt.Errorf("%w: no progress line for %s after %q", errStalled, w.limit, line))
				return
			}
		}
	}()
	return ctx
}

// stop ends the watch and returns the longest time between two lines and the line that began it.
func (w *stallWatch) stop() (time.Duration, string) {
	close(w.stopc)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gap(time.Now())
	return w.maxGap, w.maxAfter
}

func (w *stallWatch) gap(now time.Time) {
	if g := now.Sub(w.last); g > w.maxGap {
		w.maxGap, w.maxAfter = g, w.lastLine
	}
	w.last = now
}

func (w *stallWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		w.gap(time.Now())
		w.lastLine = line
		w.t.Log(line)
	}
}

func (w *stallWatch) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}
