// Package postgres opens the services' databases (gorm over pgx) and applies their embedded migrations under
// a PostgreSQL advisory lock, so any number of replicas can start at once.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Config is the database part of a service's configuration, filled from the environment.
type Config struct {
	URL             string        `env:"DATABASE_URL,required,unset"`
	MaxConns        int           `env:"DB_MAX_CONNS" envDefault:"10"`
	ConnMaxLifetime time.Duration `env:"DB_CONN_MAX_LIFETIME" envDefault:"30m"`
	ConnMaxIdleTime time.Duration `env:"DB_CONN_MAX_IDLE_TIME" envDefault:"5m"`
	// QueryExecMode overrides pgx's default_query_exec_mode; "exec" or "simple_protocol" avoid named
	// server-side prepared statements (a PgBouncer pooler in transaction mode).
	QueryExecMode string `env:"DB_QUERY_EXEC_MODE"`
	Migrate       bool   `env:"MIGRATE_ON_START" envDefault:"true"`
}

var execModes = map[string]pgx.QueryExecMode{
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
}

// Validate checks the settings without connecting.
func (c Config) Validate() error {
	if _, err := pgx.ParseConfig(c.URL); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if c.MaxConns < 1 {
		return errors.New("DB_MAX_CONNS must be at least 1")
	}
	if _, ok := execModes[c.QueryExecMode]; c.QueryExecMode != "" && !ok {
		return fmt.Errorf("DB_QUERY_EXEC_MODE %q is not one of cache_statement, cache_describe, describe_exec, "+
			"exec, simple_protocol", c.QueryExecMode)
	}
	return nil
}

// Open returns a gorm DB over a pgx connection pool. The URL is a libpq URL or key/value string; multi-host
// URLs with target_session_attrs=read-write are honoured by pgx (it connects to the host that accepts writes).
func Open(c Config) (*gorm.DB, error) {
	cfg, err := pgx.ParseConfig(c.URL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if m, ok := execModes[c.QueryExecMode]; ok {
		cfg.DefaultQueryExecMode = m
	}
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxOpenConns(c.MaxConns)
	sqlDB.SetMaxIdleConns(c.MaxConns)
	sqlDB.SetConnMaxLifetime(c.ConnMaxLifetime)
	sqlDB.SetConnMaxIdleTime(c.ConnMaxIdleTime)
	db, err := gorm.Open(gormpg.New(gormpg.Config{Conn: sqlDB}), &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		// No ping here: a service starting while its database restarts or fails over must come up (unready,
		// or waiting in MigrateDB) rather than exit; connections are made on use.
		DisableAutomaticPing: true,
	})
	if err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	return db, nil
}

// Close closes the connection pool under db.
func Close(db *gorm.DB) {
	if sqlDB, err := db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}

// MigrateDB applies a service's migrations (see Migrate) through its gorm handle and logs the version reached.
// While the database is unavailable (refused, restarting, failing over: see Unavailable) it waits and tries
// again, backing off from 100 ms to 5 s, until ctx ends: a replica that starts during a database outage
// becomes ready after it instead of exiting into a crash loop (whose restart delays grow to minutes in
// Kubernetes; the startup probe still bounds the wait). Any other error returns at once.
func MigrateDB(ctx context.Context, db *gorm.DB, fsys fs.FS, lockID int64, log *slog.Logger) error {
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	for delay := startupRetryMin; ; delay = min(2*delay, startupRetryMax) {
		v, err := Migrate(ctx, sqlDB, fsys, lockID, log)
		if err == nil {
			log.Info("database migrated", "version", v)
			return nil
		}
		if !Unavailable(err) || ctx.Err() != nil {
			return err
		}
		log.Warn("database unavailable at start; trying again", "err", err, "in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// The start-up wait's backoff bounds (MigrateDB).
const (
	startupRetryMin = 100 * time.Millisecond
	startupRetryMax = 5 * time.Second
)

// Migrate applies every pending migration in fsys (goose SQL files at its root) under a session advisory
// lock keyed by lockID, and returns the version reached.
func Migrate(ctx context.Context, db *sql.DB, fsys fs.FS, lockID int64, log *slog.Logger) (int64, error) {
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		return 0, err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithSessionLocker(locker))
	if err != nil {
		return 0, fmt.Errorf("migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		log.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration)
	}
	return p.GetDBVersion(ctx)
}

// Pending reports how many migrations in fsys the database lacks (readiness: 0 means up to date).
func Pending(ctx context.Context, db *sql.DB, fsys fs.FS) (int, error) {
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
	if err != nil {
		return 0, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range st {
		if s.State == goose.StatePending {
			n++
		}
	}
	return n, nil
}

// Unavailable reports whether err means the database cannot be used right now (connection refused or lost,
// timeouts, shutdown, read-only standby, too many connections, serialization failures): a dependency failure
// for which the caller answers 503 and the client retries — as opposed to a bug.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, context.Canceled) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "53", "57", "58", "40", "25": // connection, resources, operator intervention, system, rollback, read-only
			return true
		}
		return pgErr.Code == "55P03" // lock_not_available
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return true
	}
	// A connection that broke mid-query surfaces as an unexpected EOF or a closed connection.
	return errors.Is(err, pgx.ErrTxClosed) || isConnClosed(err)
}

func isConnClosed(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.Error() {
		case "conn closed", "unexpected EOF", "driver: bad connection":
			return true
		}
	}
	return false
}

// ReadyCheck returns a readiness check: the database answers and, until seen once, no migration is pending.
func ReadyCheck(db *sql.DB, fsys fs.FS) func(context.Context) error {
	var migrated atomic.Bool
	return func(ctx context.Context) error {
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		if migrated.Load() {
			return nil
		}
		n, err := Pending(ctx, db, fsys)
		if err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("%d migrations pending", n)
		}
		migrated.Store(true)
		return nil
	}
}
