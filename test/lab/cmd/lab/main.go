// Command lab is `make lab`: the HA lab. It runs the synchronous-replication run and the negative control
// (asynchronous replication, replication stream cut before the primary is killed) with the same seed and
// schedule, prints their tables side by side, and exits 1 when the synchronous run had a defect or the
// negative control lost nothing (a lab that cannot fail proves nothing), 2 when a run could not be carried
// out. With -negative-relay it adds the relay's negative control: the same run with the Store built with
// -tags txmesh_negative_control (the failure policy before issue 19), which must be caught (exit 1 if not).
//
// The bank, store and txaudit binaries are expected next to lab (make lab builds them into bin/, and the
// negative control's store into bin/negative/).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/txmesh/txmesh/test/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	exe, _ := os.Executable()
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", filepath.Dir(exe), "directory holding the bank, store and txaudit binaries")
	dir := fs.String("dir", "", "working directory (default: a new temporary one per run)")
	keep := fs.Bool("keep", false, "keep the working directories (data, logs, txaudit reports)")
	mode := fs.String("mode", "both", "both, sync (synchronous standby only), async (negative control only) or none (with -negative-relay)")
	duration := fs.Duration("duration", 2*time.Minute, "fault phase of each run (at least 45s)")
	seed := fs.Uint64("seed", 1, "seed of the fault schedule and the load")
	rate := fs.Float64("rate", 50, "extra purchases per second through the Store API (both Stores)")
	gen := fs.Duration("generator-interval", 100*time.Millisecond, "each Store's generator period")
	accounts := fs.Int("accounts", 100, "accounts seeded in bank-db")
	cut := fs.Duration("cut", 4*time.Second, "replication cut before the primary is killed")
	outage := fs.Duration("outage", 12*time.Second, "Bank outage (long enough to open the breakers)")
	controlShort := fs.Bool("control-failover-only", false, "negative control: the failover only, no other faults")
	progress := fs.Duration("progress", 5*time.Second, "progress line period")
	out := fs.String("out", "", "also write the table (Markdown) to this file")
	jsonOut := fs.String("json", "", "also write the results (JSON) to this file")
	negRelay := fs.Bool("negative-relay", false, "add the relay's negative control: the Store built with "+
		"-tags txmesh_negative_control (see -negative-store), synchronous standby, same schedule")
	negStore := fs.String("negative-store", "", "the negative control's store binary (default: BIN/negative/store)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	modes := map[string][]lab.Replication{"both": {lab.Sync, lab.Async}, "sync": {lab.Sync},
		"async": {lab.Async}, "none": {}}[*mode]
	if modes == nil || fs.NArg() > 0 || len(modes) == 0 && !*negRelay {
		fmt.Fprintf(stderr, "lab: -mode both|sync|async|none (none needs -negative-relay), no arguments\n")
		return 2
	}
	type runSpec struct {
		mode     lab.Replication
		negRelay bool
	}
	var specs []runSpec
	for _, m := range modes {
		specs = append(specs, runSpec{mode: m})
	}
	if *negRelay {
		specs = append(specs, runSpec{mode: lab.Sync, negRelay: true})
		if *negStore == "" {
			*negStore = filepath.Join(*bin, "negative", "store")
		}
	}
	var results []*lab.Result
	code := 0
	for _, sp := range specs {
		m := sp.mode
		cfg := lab.Config{BinDir: *bin, Keep: *keep, Mode: m, Duration: *duration, Seed: *seed, Rate: *rate,
			GeneratorInterval: *gen, Accounts: *accounts, Cut: *cut, Outage: *outage, Progress: *progress,
			Out: stdout, FailoverOnly: m == lab.Async && *controlShort}
		name := string(m)
		if sp.negRelay {
			cfg.StoreBin, cfg.NegativeRelay, name = *negStore, true, "negative-relay"
		}
		if *dir != "" {
			cfg.WorkDir = filepath.Join(*dir, name)
		}
		if cfg.FailoverOnly {
			cfg.Duration = 30 * time.Second
		}
		res, err := lab.Run(ctx, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "lab: %s run: %v\n", name, err)
			return 2
		}
		results = append(results, res)
		if !res.Passed() {
			code = 1
		}
	}
	table := lab.Table(results...)
	fmt.Fprintf(stdout, "\n%s\n", table)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(table), 0o644); err != nil {
			fmt.Fprintln(stderr, "lab:", err)
			return 2
		}
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(results, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "lab:", err)
			return 2
		}
	}
	for _, r := range results {
		name := string(r.Mode)
		if r.NegativeRelay {
			name = "negative-relay"
		}
		fmt.Fprintf(stdout, "%s: %s\n", name, r.Verdict())
	}
	return code
}
