// Package store is the Store service: it accepts purchases (its API and a generator), writes each one with an
// outbox row in ONE transaction, and exposes what the relay (package relay) needs to deliver them to the Bank.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the Store's goose migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// MigrationLockID keys the advisory lock under which Store replicas apply migrations.
const MigrationLockID int64 = 0x7478_6d65_7368_0002

// Errors the Repository returns; anything else is a database failure (see postgres.Unavailable) or a bug.
var (
	ErrConflict = errors.New("idempotency key already used for a different purchase")
	ErrNotFound = errors.New("not found")
)

// Repository is the Store's PostgreSQL storage: purchases and their outbox.
type Repository struct {
	db      *gorm.DB
	sqlDB   *sql.DB // under db
	storeID string
	created func()
	adds    creator
	done    completer
	durable barrier
	// rideThrough is how long a purchase's statement is retried while store-db is unavailable.
	rideThrough time.Duration
	// now is the Store's clock: a purchase's created_at, sent to the Bank. What the database measures (the
	// outbox's age, leases) uses the database's clock.
	now func() time.Time
}

// NewRepository returns a Repository over db; purchases it creates carry storeID.
func NewRepository(db *gorm.DB, storeID string) *Repository {
	sqlDB, err := db.DB()
	if err != nil {
		panic(fmt.Sprintf("store: a gorm DB without a *sql.DB pool: %v", err)) // postgres.Open makes one
	}
	return &Repository{db: db, sqlDB: sqlDB, storeID: storeID, created: func() {}, rideThrough: DefaultRideThrough,
		now: time.Now}
}

// DefaultRideThrough covers a switchover of store-db with room: make e2e's drain measured 8.7–9.3 s without a
// committed purchase while CloudNativePG moved the primary (fast shutdown, promotion, the -rw Service
// re-pointed).
const DefaultRideThrough = 15 * time.Second

// SetRideThrough sets how long a purchase waits for an unavailable store-db before it fails (the API's 503 +
// Retry-After); 0 fails at once. Call it before use.
func (r *Repository) SetRideThrough(d time.Duration) { r.rideThrough = max(d, 0) }

// OnCreate registers f, called after each purchase is committed (the relay's wake-up). Call it before use.
func (r *Repository) OnCreate(f func()) { r.created = f }
func (r *Repository) exec(ctx context.Context, what, sql string, args map[string]any) error {
	if err := r.db.WithContext(ctx).Exec(sql, args).Error; err != nil {
		return fmt.Errorf("%s %v: %w", what, args["id"], err)
	}
	return nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
