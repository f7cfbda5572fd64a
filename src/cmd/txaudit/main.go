// Command txaudit proves from the two databases that the Store and the Bank agree: nothing lost, nothing
// unknown, no field mismatch, nothing applied twice, every balance equal to its seed minus its approved debits.
// It also counts the Bank's transactions per caller identity (the Store's, the canary checks', …), and
// splits them into customer and canary traffic (transactions on CANARY-… accounts, by kind).
//
//	txaudit --store-dsn DSN --bank-dsn DSN [--wait DURATION] [--json]
//	txaudit --version
//
// Exit status: 0 clean, 1 defects found (or the backlog did not drain within --wait), 2 usage or
// connection errors.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/audit"
	"github.com/txmesh/txmesh/src/internal/config"
	"github.com/txmesh/txmesh/src/internal/postgres"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	code := exitCode(err)
	if code == 2 {
		fmt.Fprintln(os.Stderr, "txaudit:", err)
	}
	stop()
	os.Exit(code)
}

// version is set at build time (-ldflags "-X main.version=…"), as the Dockerfile and the Makefile do.
var version = "dev"

// exitCode maps run's error to the exit status.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, audit.ErrDefects):
		return 1
	default:
		return 2
	}
}

// errUsage marks bad command lines.
var errUsage = errors.New("usage: txaudit --store-dsn DSN --bank-dsn DSN [--wait DURATION] [--json]")

// run is the whole program. It returns audit.ErrDefects when the audit is not clean.
func run(ctx context.Context, args []string, _ func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("txaudit", flag.ContinueOnError)
	fs.SetOutput(stdout)
	storeDSN := fs.String("store-dsn", "", "the Store's database (libpq URL or key/value DSN)")
	bankDSN := fs.String("bank-dsn", "", "the Bank's database")
	wait := fs.Duration("wait", 0, "first wait up to this long for the Store's outbox to drain (0: judge now)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	showVersion := fs.Bool("version", false, "print the version stamped at build time and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		_, err := fmt.Fprintln(stdout, "txaudit", version)
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w (unexpected arguments %q)", errUsage, fs.Args())
	case *storeDSN == "" || *bankDSN == "":
		return fmt.Errorf("%w (--store-dsn and --bank-dsn are required)", errUsage)
	case *wait < 0:
		return fmt.Errorf("%w (--wait must be >= 0)", errUsage)
	}
	// stdout carries the report alone (--json is read by machines), so the start line goes to stderr.
	fmt.Fprintln(os.Stderr, "txaudit", version)
	storeDB, closeStore, err := connect(*storeDSN)
	if err != nil {
		return fmt.Errorf("store database %s: %w", config.Redact(*storeDSN), err)
	}
	defer closeStore()
	bankDB, closeBank, err := connect(*bankDSN)
	if err != nil {
		return fmt.Errorf("bank database %s: %w", config.Redact(*bankDSN), err)
	}
	defer closeBank()

	var drained *bool
	if *wait > 0 {
		left, err := audit.WaitDrained(ctx, storeDB, *wait, 250*time.Millisecond)
		if err != nil {
			return err
		}
		ok := left == 0
		drained = &ok
	}
	rep, err := audit.Run(ctx, storeDB, bankDB)
	if err != nil {
		return err
	}
	rep.Drained = drained
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if !rep.Clean || (drained != nil && !*drained) {
		return audit.ErrDefects
	}
	return nil
}

func connect(dsn string) (*sql.DB, func(), error) {
	cfg := postgres.Config{URL: dsn, MaxConns: 4, ConnMaxLifetime: time.Hour, ConnMaxIdleTime: time.Minute}
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	db, err := postgres.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, nil, err
	}
	return sqlDB, func() { closeGorm(db) }, nil
}

func closeGorm(db *gorm.DB) {
	if s, err := db.DB(); err == nil {
		_ = s.Close()
	}
}
