// Command bench is `make bench`: how close the Bank and the Store run to the database's own limit, measured
// in ONE run on throwaway PostgreSQL servers, as ratios.
//
//  1. limit: pgbench running exactly the Bank's statement (bank.ProcessSQL, same indexes, same isolation,
//     unique ids, -M prepared) with the same number of clients, and the Bank's batch statement
//     (processBatchSQL) with the batch size and clients of the batched Bank;
//  2. bank ingestion: a closed-loop Go load generator (mTLS, unique ids) against the Bank process on the same
//     database, one transaction per request and in batches; the four contenders alternate, round after
//     round, on a primary with a synchronous standby and on a single primary; medians are reported;
//  3. outbox drain: purchases accumulated in the Store while the Bank is down, then the Bank starts;
//  4. end to end: purchases through the Store API at half the measured maximum, from the 202 to the Bank's
//     commit (pg_xact_commit_timestamp of the Bank's row).
//
// It prints a markdown table and writes bench.json and bench.md under -out. See docs/performance.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// Parts of the benchmark.
const (
	partIngest = "ingest" // 1 + 2
	partDrain  = "drain"  // 3
	partE2E    = "e2e"    // 4
)

// Config holds the knobs (flags; BENCH_ARGS in the Makefile).
type Config struct {
	Clients        int           `json:"clients"`
	Duration       time.Duration `json:"duration_ns"`
	Warmup         time.Duration `json:"warmup_ns"`
	Rounds         int           `json:"rounds"`
	Accounts       int           `json:"accounts"`
	Topologies     []string      `json:"topologies"`
	Parts          []string      `json:"parts"`
	DrainN         int           `json:"drain_purchases"`
	E2EDuration    time.Duration `json:"e2e_duration_ns"`
	E2ETopology    string        `json:"e2e_topology"`
	E2ERate        float64       `json:"e2e_rate,omitempty"`
	E2EMax         string        `json:"e2e_max"`
	BatchSize      int           `json:"batch_size"`
	BatchClients   int           `json:"batch_clients"`
	RelayMode      string        `json:"relay_mode"`
	Fsync          bool          `json:"fsync"`
	PgbenchThreads int           `json:"pgbench_threads"`
	Loadgen        string        `json:"loadgen"`
	BankEnv        []string      `json:"bank_env,omitempty"`
	PgbenchArgs    []string      `json:"pgbench_args,omitempty"`
	StoreEnv       []string      `json:"store_env,omitempty"`
	PgStats        bool          `json:"pg_stat_statements,omitempty"`
	MaxForeign     float64       `json:"max_foreign_cores"`
	Retries        int           `json:"round_retries"`
	Bin            string        `json:"bin,omitempty"`
	Out            string        `json:"-"`
	Keep           bool          `json:"-"`
	Quiet          bool          `json:"-"`
}

func parse(args []string, stderr io.Writer) (Config, error) {
	var c Config
	var topologies, parts, bankEnv, pgbenchArgs, storeEnv string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.Clients, "clients", 32, "concurrent clients: pgbench -c, Go load generator workers, Bank DB_MAX_CONNS")
	fs.IntVar(&c.BatchSize, "batch", 32, "transactions per batch: pgbench's batch statement, the batched Bank's requests, the relay's RELAY_BATCH_SIZE (0: no batched contenders)")
	fs.IntVar(&c.BatchClients, "batch-clients", 8, "concurrent batches: pgbench -c of the batch statement, batched Bank workers, the relay's RELAY_CONCURRENCY in batch mode")
	fs.StringVar(&c.RelayMode, "relay-mode", "batch", "the Store's RELAY_MODE in parts 3 and 4: batch (-batch per request, -batch-clients in flight) or single (-clients in flight)")
	fs.DurationVar(&c.Duration, "duration", 15*time.Second, "measured window of each ingestion phase")
	fs.DurationVar(&c.Warmup, "warmup", 3*time.Second, "unmeasured load before each window")
	fs.IntVar(&c.Rounds, "rounds", 3, "rounds per topology; each runs pgbench and the Bank, alternating who goes first")
	fs.IntVar(&c.Accounts, "accounts", 1000, "accounts the transactions are spread over (uniformly)")
	fs.StringVar(&topologies, "topologies", topoSync+","+topoSingle, "ingestion topologies: sync (primary + synchronous standby), single")
	fs.StringVar(&parts, "parts", partIngest+","+partDrain+","+partE2E, "parts to run: ingest (1+2), drain (3), e2e (4)")
	fs.IntVar(&c.DrainN, "drain", 100_000, "purchases accumulated while the Bank is down (part 3)")
	fs.DurationVar(&c.E2EDuration, "e2e-duration", 20*time.Second, "duration of the end-to-end run (part 4)")
	fs.StringVar(&c.E2ETopology, "e2e-topology", topoSync, "topology of both databases in parts 3 and 4")
	fs.Float64Var(&c.E2ERate, "e2e-rate", 0, "purchases/s in part 4 (default: half of the maximum -e2e-max names)")
	fs.StringVar(&c.E2EMax, "e2e-max", "system", "part 4 runs at half of: system (the end-to-end sustained maximum, measured) or bank (the Bank's ingestion maximum)")
	fs.BoolVar(&c.Fsync, "fsync", true, "fsync and full_page_writes on every server (both contenders)")
	fs.IntVar(&c.PgbenchThreads, "pgbench-threads", 2, "pgbench -j")
	fs.StringVar(&c.Loadgen, "loadgen", "lean", "Go load generator's HTTP client: lean (one hand-driven keep-alive mTLS connection per worker) or nethttp (net/http Transport, as the Store's bankclient)")
	fs.StringVar(&bankEnv, "bank-env", "", "extra environment of the Bank process, comma-separated (e.g. GOMAXPROCS=1,GOGC=200)")
	fs.StringVar(&storeEnv, "store-env", "", "extra environment of the Store process, comma-separated (e.g. RELAY_BATCH_SIZE=64)")
	fs.StringVar(&pgbenchArgs, "pgbench-args", "", "extra pgbench arguments, comma-separated (exploration, e.g. -R,3000)")
	fs.StringVar(&c.Bin, "bin", "", "use the bank and store binaries in this directory instead of building them (e.g. from another commit)")
	fs.StringVar(&c.Out, "out", "bench-results", "directory for bench.json and bench.md")
	fs.Float64Var(&c.MaxForeign, "max-foreign", 0.25, "a round whose windows saw other processes use more CPU than this (cores) is run again")
	fs.IntVar(&c.Retries, "retries", 2, "how many times a noisy round is run again (the quietest attempt is kept)")
	fs.BoolVar(&c.PgStats, "pg-stats", false, "load pg_stat_statements on every server and print each database's top statements after each part (diagnosis)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the working directory (logs, pgbench scripts)")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.Topologies = splitList(topologies)
	c.Parts = splitList(parts)
	c.BankEnv = splitList(bankEnv)
	c.PgbenchArgs = splitList(pgbenchArgs)
	c.StoreEnv = splitList(storeEnv)
	for _, t := range append(slices.Clone(c.Topologies), c.E2ETopology) {
		if t != topoSync && t != topoSingle {
			return c, fmt.Errorf("topology %q: want sync or single", t)
		}
	}
	if c.E2EMax != "system" && c.E2EMax != "bank" {
		return c, fmt.Errorf("e2e-max %q: want system or bank", c.E2EMax)
	}
	if c.RelayMode != "batch" && c.RelayMode != "single" {
		return c, fmt.Errorf("relay-mode %q: want batch or single", c.RelayMode)
	}
	if c.BatchSize < 0 || c.BatchSize > 256 || (c.BatchSize > 0 && c.BatchClients < 1) ||
		(c.RelayMode == "batch" && c.BatchSize == 0) {
		return c, fmt.Errorf("batch must be 0-256 (not 0 with relay-mode batch) and batch-clients >= 1")
	}
	if c.Loadgen != "lean" && c.Loadgen != "nethttp" {
		return c, fmt.Errorf("loadgen %q: want lean or nethttp", c.Loadgen)
	}
	for _, p := range c.Parts {
		if p != partIngest && p != partDrain && p != partE2E {
			return c, fmt.Errorf("part %q: want ingest, drain or e2e", p)
		}
	}
	if c.Clients < 1 || c.Rounds < 1 || c.Accounts < 1 || c.Duration <= 0 || c.Warmup < 0 || c.DrainN < 1 {
		return c, fmt.Errorf("clients, rounds, accounts, drain and duration must be positive")
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c Config) has(part string) bool { return slices.Contains(c.Parts, part) }

// run is the whole program.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	_ = getenv // the knobs are flags (BENCH_ARGS in the Makefile); PG_BIN is read where the binaries are found
	cfg, err := parse(args, stdout)
	if err != nil {
		return err
	}
	b, err := newBench(ctx, cfg, stdout)
	if err != nil {
		return err
	}
	defer b.close()
	rep, err := b.run(ctx)
	if err != nil {
		return err
	}
	return b.write(rep)
}
