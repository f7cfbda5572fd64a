// Command store serves the Store API: it accepts purchases (API and generator), writes each with an outbox
// row in one transaction, and relays them to the Bank.
//
//	store [serve]                   serve the API, the generator and the relay (applies migrations unless
//	                                MIGRATE_ON_START=false)
//	store migrate                   apply the database migrations and exit
//	store redrive (--id ID | --all) send dead-lettered purchases again (one audit line each), and exit
//	store --version                 print the version stamped at build time
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/config"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/relay"
	"github.com/txmesh/txmesh/src/internal/store"
	"github.com/txmesh/txmesh/src/internal/web"
)

// version is set at build time (-ldflags "-X main.version=…"), as the Dockerfile and the Makefile do.
var version = "dev"

// bankSettings is how the relay reaches the Bank.
type bankSettings struct {
	URL      string        `env:"BANK_URL"`
	Timeout  time.Duration `env:"BANK_TIMEOUT" envDefault:"2s"`
	CAFile   string        `env:"BANK_CA_FILE"`
	CertFile string        `env:"BANK_CLIENT_CERT_FILE"`
	KeyFile  string        `env:"BANK_CLIENT_KEY_FILE"`
}

func (b bankSettings) validate() error {
	var errs []error
	u, err := url.Parse(b.URL)
	switch {
	case b.URL == "":
		errs = append(errs, errors.New("BANK_URL is required (e.g. https://127.0.0.1:8443 or http://bank:8080)"))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, fmt.Errorf("BANK_URL %q must be http(s)://host[:port]", b.URL))
	case u.Scheme == "http" && (b.CAFile != "" || b.CertFile != ""):
		errs = append(errs, errors.New("BANK_CA_FILE and BANK_CLIENT_CERT_FILE need an https BANK_URL"))
	}
	if b.Timeout <= 0 {
		errs = append(errs, errors.New("BANK_TIMEOUT must be > 0"))
	}
	if (b.CertFile == "") != (b.KeyFile == "") {
		errs = append(errs, errors.New("BANK_CLIENT_CERT_FILE and BANK_CLIENT_KEY_FILE must be set together"))
	}
	return errors.Join(errs...)
}

type settings struct {
	Server    web.ServerConfig
	DB        postgres.Config
	LogLevel  slog.Level `env:"LOG_LEVEL" envDefault:"info"`
	StoreID   string     `env:"STORE_ID"` // default: the host name
	Bank      bankSettings
	Generator store.GeneratorConfig
	Relay     relay.Config
	// RideThrough: how long a purchase waits for an unavailable store-db (a switchover) before its 503.
	RideThrough time.Duration `env:"DB_RIDE_THROUGH" envDefault:"15s"`
}

// validate checks what serve needs; migrate needs the database only.
func (s settings) validate() error {
	errs := []error{s.Server.Validate(), s.DB.Validate(), s.Bank.validate(), s.Generator.Validate(),
		s.Relay.Validate()}
	if !payment.ValidIdentifier(s.StoreID) {
		errs = append(errs, fmt.Errorf("STORE_ID %q must be 1-64 characters of [A-Za-z0-9._-] (set it when the "+
			"host name is not)", s.StoreID))
	}
	if s.RideThrough < 0 {
		errs = append(errs, fmt.Errorf("DB_RIDE_THROUGH %v must be >= 0", s.RideThrough))
	}
	// A purchase's statement ends store.ResolveBudget before its request's deadline, so that the outcome of
	// an unanswered commit can be learnt in time: the ride-through must fit before that.
	if rt := s.Server.Timeouts().RequestTimeout; s.RideThrough > rt-store.ResolveBudget {
		errs = append(errs, fmt.Errorf("DB_RIDE_THROUGH %v must be at most HTTP_REQUEST_TIMEOUT %v minus %v",
			s.RideThrough, rt, store.ResolveBudget))
	}
	return errors.Join(errs...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, nil); err != nil {
		fmt.Fprintln(os.Stderr, "store:", err)
		stop()
		os.Exit(1)
	}
}

// run is the whole program; ready, when not nil, receives the listening address (tests).
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer,
	ready chan<- net.Addr) error {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		_, err := fmt.Fprintln(stdout, "store", version)
		return err
	}
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if len(args) > 0 && cmd != "redrive" {
		return fmt.Errorf("%s takes no arguments, got %q", cmd, args)
	}
	var cfg settings
	if err := config.Load(&cfg, getenv); err != nil {
		return err
	}
	if cfg.StoreID == "" {
		cfg.StoreID, _ = os.Hostname()
	}
	cfg.Relay.Timeout = cfg.Bank.Timeout
	cfg.Server.Service = payment.ServiceStore
	log := config.Logger(stdout, cfg.LogLevel)
	if cmd != "serve" { // serve logs its version with its settings
		log.Info("store "+cmd, "version", version)
	}
	switch cmd {
	case "serve":
		if err := cfg.validate(); err != nil {
			return err
		}
		return serve(ctx, cfg, log, ready)
	case "migrate":
		if err := cfg.DB.Validate(); err != nil {
			return err
		}
		db, err := postgres.Open(cfg.DB)
		if err != nil {
			return err
		}
		defer postgres.Close(db)
		return migrate(ctx, db, log)
	case "redrive":
		id, err := parseRedrive(args)
		if err != nil {
			return err
		}
		if err := cfg.DB.Validate(); err != nil {
			return err
		}
		db, err := postgres.Open(cfg.DB)
		if err != nil {
			return err
		}
		defer postgres.Close(db)
		return redrive(ctx, store.NewRepository(db, cfg.StoreID), id, log)
	default:
		return fmt.Errorf("unknown command %q (serve, migrate, redrive)", cmd)
	}
}

// parseRedrive reads redrive's flags: exactly one of --id ID (a purchase) and --all (every dead letter);
// id is nil for --all.
func parseRedrive(args []string) (*uuid.UUID, error) {
	fs := flag.NewFlagSet("redrive", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	idFlag := fs.String("id", "", "the dead-lettered purchase to send again")
	all := fs.Bool("all", false, "send every dead-lettered purchase again")
	usage := errors.New("usage: store redrive (--id PURCHASE_ID | --all)")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", usage, err)
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("%w: unexpected %q", usage, fs.Args())
	case *all == (*idFlag != ""):
		return nil, fmt.Errorf("%w: give exactly one of --id and --all", usage)
	case *all:
		return nil, nil
	}
	id, err := uuid.Parse(*idFlag)
	if err != nil {
		return nil, fmt.Errorf("%w: --id %q is not a UUID", usage, *idFlag)
	}
	return &id, nil
}

// redrive makes the dead letters pending again (store.Repository.Redrive) and logs one audit line per
// purchase; the running relays deliver them, under the same ids.
func redrive(ctx context.Context, repo *store.Repository, id *uuid.UUID, log *slog.Logger) error {
	done, err := repo.Redrive(ctx, id)
	if err != nil {
		return err
	}
	for _, d := range done {
		log.Info("redriven: pending again, the relay sends it with the same id", "purchase_id", d.ID,
			"error_code", d.ErrorCode, "last_error", d.LastError, "redriven_at", d.RedrivenAt)
	}
	switch {
	case id != nil && len(done) == 0:
		log.Info("not dead-lettered: nothing to redrive", "purchase_id", *id)
	default:
		log.Info("redrive done", "purchases", len(done))
	}
	return nil
}

func migrate(ctx context.Context, db *gorm.DB, log *slog.Logger) error {
	return postgres.MigrateDB(ctx, db, store.Migrations(), store.MigrationLockID, log)
}

func serve(ctx context.Context, cfg settings, log *slog.Logger, ready chan<- net.Addr) error {
	log.Info("starting store", "version", version, "store_id", cfg.StoreID, "http_addr", cfg.Server.Addr,
		"admin_addr", cfg.Server.AdminAddr,
		"tls", cfg.Server.TLSCertFile != "", "mtls", cfg.Server.TLSClientCAFile != "",
		"database_url", config.Redact(cfg.DB.URL), "db_max_conns", cfg.DB.MaxConns,
		"db_query_exec_mode", cfg.DB.QueryExecMode, "migrate_on_start", cfg.DB.Migrate,
		"bank_url", cfg.Bank.URL, "bank_timeout", cfg.Bank.Timeout, "bank_ca_file", cfg.Bank.CAFile,
		"bank_client_cert_file", cfg.Bank.CertFile, "generator", cfg.Generator,
		"http_max_in_flight", cfg.Server.MaxInFlight, "http_read_header_timeout", cfg.Server.ReadHeaderTimeout,
		"http_read_body_timeout", cfg.Server.ReadBodyTimeout, "http_request_timeout", cfg.Server.RequestTimeout,
		"db_ride_through", cfg.RideThrough, "drain_delay", cfg.Server.DrainDelay, "shutdown_timeout", cfg.Server.ShutdownTimeout)
	db, err := postgres.Open(cfg.DB)
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
	bank, err := bankHTTPClient(cfg.Bank, cfg.Relay.Concurrency)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewDBStatsCollector(sqlDB, "store"))
	metrics := store.NewMetrics(reg)
	repo := store.NewRepository(db, cfg.StoreID)
	repo.SetRideThrough(cfg.RideThrough)
	rl := relay.New(repo, bank, cfg.StoreID+"/"+uuid.NewString()[:8], cfg.Relay, reg, log.With("component", "relay"))
	repo.OnCreate(rl.Wake)
	health := web.NewHealth(postgres.ReadyCheck(sqlDB, store.Migrations()))
	handler := store.PurchaseIDs(web.LimitInFlight(store.NewServer(repo, metrics, rl.BreakerState, health, reg, log),
		cfg.Server.MaxInFlight, "store", reg))

	// Shutdown: the generator stops at once; the relay keeps delivering while the server drains (readiness
	// fails first), then stops claiming and finishes its sends in flight; then the database closes.
	var gen, background sync.WaitGroup
	genCtx, stopGenerator := context.WithCancel(ctx)
	gen.Go(func() {
		store.NewGenerator(repo, cfg.Generator, metrics, log.With("component", "generator")).Run(genCtx)
	})
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	background.Go(func() { rl.Run(bg) })
	background.Go(func() { store.WatchBacklog(bg, repo, metrics, 5*time.Second) })

	err = web.Serve(ctx, cfg.Server, handler, health, log, ready)
	stopGenerator()
	gen.Wait()
	stopBackground()
	background.Wait()
	log.Info("store stopped", "err", err)
	return err
}

// bankHTTPClient builds the HTTP client of the Bank: mTLS with the configured CA and client certificate for
// https, plain HTTP (a local sidecar) otherwise; connections reused, each request bounded by the timeout.
func bankHTTPClient(b bankSettings, maxConns int) (*bankclient.Client, error) {
	u, _ := url.Parse(b.URL)
	hc := bankclient.HTTPClient(b.Timeout, maxConns, nil)
	if u.Scheme == "https" {
		tlsCfg, err := bankclient.TLSConfig(b.CAFile, b.CertFile, b.KeyFile)
		if err != nil {
			return nil, err
		}
		hc = bankclient.HTTPClient(b.Timeout, maxConns, tlsCfg)
	}
	return bankclient.New(b.URL, hc)
}
