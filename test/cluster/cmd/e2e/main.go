// Command e2e is `make e2e`: the throwaway cluster with txmesh deployed, attacked scenario by scenario under
// load and audited after each (see package e2e). Exit 0 when every scenario passed.
//
//	e2e [-repo DIR] [-rate 20] [-seed 1] [-out DIR]
//
// E2E_SCENARIOS=a,b runs a subset; E2E_KEEP=1 leaves the cluster up afterwards.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/txmesh/txmesh/test/cluster/e2e"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		stop()
		os.Exit(1)
	}
}

var errFailed = errors.New("a scenario failed (see the table and e2e-results/e2e.json)")

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.SetOutput(stdout)
	repo := fs.String("repo", "../..", "the txmesh checkout")
	rate := fs.Float64("rate", 20, "purchases per second sent to the Store's Service")
	seed := fs.Uint64("seed", 1, "seed of the purchase generator")
	out := fs.String("out", "", "results directory (default <repo>/e2e-results)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		return err
	}
	o := e2e.Options{Repo: root, Rate: *rate, Seed: *seed, Out: *out, Log: stdout, Keep: getenv("E2E_KEEP") == "1"}
	if s := getenv("E2E_SCENARIOS"); s != "" {
		o.Scenarios = strings.Split(s, ",")
	}
	res, err := e2e.Run(ctx, o)
	if err != nil {
		return err
	}
	res.Table(stdout)
	if !res.Passed {
		return errFailed
	}
	return nil
}
