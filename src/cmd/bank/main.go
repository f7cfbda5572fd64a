// Command bank serves the Bank API: it applies payment transactions exactly once against account balances.
//
//	bank [serve]                                  serve the API (applies migrations unless MIGRATE_ON_START=false)
//	bank migrate                                  apply the database migrations and exit
//	bank seed --accounts N --balance B --currency C   create ACC-000001…ACC-N when absent
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
	"github.com/txmesh/txmesh/src/internal/config"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/web"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

type settings struct {
	Server       web.ServerConfig
	DB           postgres.Config
	QueryTimeout time.Duration `env:"DB_QUERY_TIMEOUT" envDefault:"5s"`
	LogLevel     slog.Level    `env:"LOG_LEVEL" envDefault:"info"`
}

func (s settings) validate() error {
	var timeout error
	if s.QueryTimeout <= 0 {
		timeout = errors.New("DB_QUERY_TIMEOUT must be > 0")
	}
	return errors.Join(s.Server.Validate(), s.DB.Validate(), timeout)
}

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
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log := config.Logger(stdout, cfg.LogLevel)
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
	log.Info("starting bank", "version", version, "http_addr", cfg.Server.Addr, "admin_addr", cfg.Server.AdminAddr,
		"tls", cfg.Server.TLSCertFile != "",
		"mtls", cfg.Server.TLSClientCAFile != "", "database_url", config.Redact(cfg.DB.URL),
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
		bank.NewServer(bank.NewRepository(db), health, reg, log, bank.WithQueryTimeout(cfg.QueryTimeout)),
		cfg.Server.MaxInFlight, "bank", reg)
	err = web.Serve(ctx, cfg.Server, handler, health, log, ready)
	log.Info("bank stopped", "err", err)
	return err
}

func seed(ctx context.Context, cfg settings, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("bank seed", flag.ContinueOnError)
	n := fs.Int("accounts", 100, "number of accounts ACC-000001…ACC-N to create when absent (1-999999)")
	balance := fs.Int64("balance", 1_000_000, "initial balance of each created account, in minor units")
	currency := fs.String("currency", "EUR", "ISO 4217 currency of the created accounts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("seed: unexpected arguments %q", fs.Args())
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
	created, err := bank.Seed(ctx, db, *n, *balance, *currency)
	if err != nil {
		return err
	}
	log.Info("accounts seeded", "requested", *n, "created", created, "balance", *balance, "currency", *currency)
	return nil
}
