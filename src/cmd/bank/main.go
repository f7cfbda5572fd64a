// Command bank serves the Bank API: it applies payment transactions exactly once against account balances.
//
//	bank [serve]                                  serve the API (applies migrations unless MIGRATE_ON_START=false)
//	bank --version                                print the version stamped at build time
//	bank migrate                                  apply the database migrations and exit
//	bank seed --accounts N --balance B --currency C   create ACC-000001…ACC-N when absent
//	          [--canary-accounts M --canary-balance B]  and CANARY-000001…CANARY-M, the canary tests' own
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/bank"
	"github.com/txmesh/txmesh/src/internal/caller"
	"github.com/txmesh/txmesh/src/internal/config"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/web"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

type settings struct {
	Server       web.ServerConfig
	DB           postgres.Config
	Callers      caller.Config
	QueryTimeout time.Duration `env:"DB_QUERY_TIMEOUT" envDefault:"5s"`
	LogLevel     slog.Level    `env:"LOG_LEVEL" envDefault:"info"`
}

// validate checks the settings command needs (the caller settings are serve's alone: migrate and seed
// answer no one).
func (s settings) validate(command string) error {
	var timeout, callers error
	if s.QueryTimeout <= 0 {
		timeout = errors.New("DB_QUERY_TIMEOUT must be > 0")
	}
	if command == "serve" {
		callers = s.Callers.Validate(s.mTLS())
	}
	return errors.Join(s.Server.Validate(), s.DB.Validate(), timeout, callers)
}

// mTLS reports whether the Bank verifies client certificates itself.
func (s settings) mTLS() bool { return s.Server.TLSClientCAFile != "" }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "bank:", err)
		stop()
		os.Exit(1)
	}
}

// run is the whole program; ready, when not nil, receives the listening address (tests).
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer,
	ready chan<- net.Addr) error {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		_, err := fmt.Fprintln(stdout, "bank", version)
		return err
	}
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.validate(cmd); err != nil {
		return err
	}
	cfg.Server.Service = payment.ServiceBank // marks the answers web.Bounded gives itself (a 408)
	log := config.Logger(stdout, cfg.LogLevel)
	if cmd != "serve" { // serve logs its version with its settings
		log.Info("bank "+cmd, "version", version)
	}
	switch cmd {
	case "serve":
		if len(args) > 0 {
			return fmt.Errorf("serve takes no arguments, got %q", args)
		}
		return serve(ctx, cfg, log, ready)
	case "migrate":
		db, err := open(cfg)
		if err != nil {
			return err
		}
		defer postgres.Close(db)
		return migrate(ctx, db, log)
	case "seed":
		return seed(ctx, cfg, args, log)
	default:
		return fmt.Errorf("unknown command %q (serve, migrate, seed)", cmd)
	}
}

func open(cfg settings) (*gorm.DB, error) { return postgres.Open(cfg.DB) }

func migrate(ctx context.Context, db *gorm.DB, log *slog.Logger) error {
	return postgres.MigrateDB(ctx, db, bank.Migrations(), bank.MigrationLockID, log)
}

func serve(ctx context.Context, cfg settings, log *slog.Logger, ready chan<- net.Addr) error {
	callers, err := caller.New(cfg.Callers, cfg.mTLS())
	if err != nil {
		return err
	}
	// With its own mTLS the Bank takes a connection without a client certificate, to answer each of its
	// requests its own 403 caller_not_allowed (the probes, metrics and API document stay open).
	cfg.Server.ClientCertOptional = callers.Source() == caller.SourceTLS
	log.Info("starting bank", "version", version, "http_addr", cfg.Server.Addr, "admin_addr", cfg.Server.AdminAddr,
		"tls", cfg.Server.TLSCertFile != "",
		"mtls", cfg.Server.TLSClientCAFile != "", "caller_identity", callers.Source(),
		"allowed_callers", callers.Allowed(), "xfcc_trusted_proxies", trustedProxies(callers.Source(), cfg.Callers),
		"database_url", config.Redact(cfg.DB.URL),
		"db_max_conns", cfg.DB.MaxConns, "db_query_timeout", cfg.QueryTimeout, "db_query_exec_mode", cfg.DB.QueryExecMode,
		"migrate_on_start", cfg.DB.Migrate, "http_max_in_flight", cfg.Server.MaxInFlight,
		"drain_delay", cfg.Server.DrainDelay, "shutdown_timeout", cfg.Server.ShutdownTimeout)
	db, err := open(cfg)
	if err != nil {
		return err
	}
	defer postgres.Close(db)
	if cfg.DB.Migrate {
		if err := migrate(ctx, db, log); err != nil {
			return err
		}
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewDBStatsCollector(sqlDB, "bank"))
	health := web.NewHealth(postgres.ReadyCheck(sqlDB, bank.Migrations()))
	handler := web.LimitInFlight(
		bank.NewServer(bank.NewRepository(db), callers, health, reg, log, bank.WithQueryTimeout(cfg.QueryTimeout)),
		cfg.Server.MaxInFlight, "bank", reg)
	err = web.Serve(ctx, cfg.Server, handler, health, log, ready)
	log.Info("bank stopped", "err", err)
	return err
}

// trustedProxies are the XFCC_TRUSTED_PROXIES in effect, for the start-up log (none unless the source is xfcc).
func trustedProxies(src caller.Source, c caller.Config) []string {
	var out []string
	for _, p := range c.TrustedProxies {
		if src == caller.SourceXFCC {
			out = append(out, p.String())
		}
	}
	return out
}

func seed(ctx context.Context, cfg settings, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("bank seed", flag.ContinueOnError)
	n := fs.Int("accounts", 100, "number of customer accounts ACC-000001…ACC-N to create when absent (0-999999)")
	balance := fs.Int64("balance", 1_000_000, "initial balance of each created customer account, in minor units")
	canaries := fs.Int("canary-accounts", 0, "number of canary accounts CANARY-000001…CANARY-N to create when "+
		"absent (0-999999): the only accounts Flagger's acceptance and load tests may spend")
	canaryBalance := fs.Int64("canary-balance", 1_000_000_000_000, "initial balance of each created canary "+
		"account, in minor units (large: every rollout spends from it and the seed never refills it)")
	currency := fs.String("currency", "EUR", "ISO 4217 currency of the created accounts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("seed: unexpected arguments %q", fs.Args())
	case *n < 0 || *n > 999_999:
		return fmt.Errorf("seed: --accounts must be between 0 and 999999, got %d", *n)
	case *canaries < 0 || *canaries > 999_999:
		return fmt.Errorf("seed: --canary-accounts must be between 0 and 999999, got %d", *canaries)
	case *n == 0 && *canaries == 0:
		return errors.New("seed: nothing to create (--accounts 0 and --canary-accounts 0)")
	}
	db, err := open(cfg)
	if err != nil {
		return err
	}
	defer postgres.Close(db)
	if cfg.DB.Migrate {
		if err := migrate(ctx, db, log); err != nil {
			return err
		}
	}
	if *n > 0 {
		created, err := bank.Seed(ctx, db, *n, *balance, *currency)
		if err != nil {
			return err
		}
		log.Info("accounts seeded", "requested", *n, "created", created, "balance", *balance, "currency", *currency)
	}
	if *canaries > 0 {
		created, err := bank.SeedCanary(ctx, db, *canaries, *canaryBalance, *currency)
		if err != nil {
			return err
		}
		log.Info("canary accounts seeded", "requested", *canaries, "created", created, "first",
			bank.CanaryAccountID(1), "last", bank.CanaryAccountID(*canaries), "balance", *canaryBalance,
			"currency", *currency)
	}
	return nil
}
