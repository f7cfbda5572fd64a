// Package bank is the Bank service: it applies each payment transaction exactly once against an account
// balance and records the decision.
package bank

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/payment"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the Bank's goose migrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// MigrationLockID keys the advisory lock under which Bank replicas apply migrations.
const MigrationLockID int64 = 0x7478_6d65_7368_0001

// Errors the Ledger returns; anything else is a database failure (see postgres.Unavailable) or a bug.
var (
	ErrConflict = errors.New("transaction id already used with different fields")
	ErrNotFound = errors.New("not found")
)

// Ledger stores accounts and transactions.
//
//go:generate mockgen -typed -destination=mock_ledger_test.go -package=bank . Ledger
type Ledger interface {
	// Process applies tx once: the first call records the decision (and debits on approval) and returns it
	// with created=true; later calls with the same fields return the stored result with created=false; the
	// same id with different fields returns ErrConflict and changes nothing.
	Process(ctx context.Context, tx payment.Transaction) (res payment.Result, created bool, err error)
	Transaction(ctx context.Context, id uuid.UUID) (payment.Record, error)
	Account(ctx context.Context, id string) (payment.Account, error)
}

// Repository is the PostgreSQL Ledger.
type Repository struct{ db *gorm.DB }

// NewRepository returns a Ledger over db.
func NewRepository(db *gorm.DB) *Repository { return &Repository{db: db} }

// processSQL decides, records and debits in ONE statement, hence one transaction:
//   - acct locks the account row (FOR UPDATE): concurrent debits of one account serialize here, and each sees
//     the balance the previous one committed (READ COMMITTED re-reads the locked row);
//   - ins records the transaction; ON CONFLICT (id) DO NOTHING makes a concurrent or later duplicate insert
//     nothing (it waits for the first inserter to commit, then sees its row);
//   - debit runs only when ins inserted an approved row, so one id debits at most once.
//
// The CHECK (balance >= 0) constraint is the last line of defence: a bug here fails the statement instead of
// overdrawing.
const processSQL = `
WITH acct AS (
    SELECT currency, balance FROM accounts WHERE id = @account FOR UPDATE
), decision AS (
    SELECT CASE
        WHEN NOT EXISTS (SELECT 1 FROM acct)            THEN 'unknown_account'
        WHEN (SELECT currency FROM acct) <> @currency   THEN 'currency_mismatch'
        WHEN (SELECT balance FROM acct) < @amount       THEN 'insufficient_funds'
        ELSE '' END AS reason
), ins AS (
    INSERT INTO transactions (id, store_id, account_id, amount, currency, created_at, status, reason)
    SELECT @id, @store, @account, @amount, @currency, @created,
           CASE WHEN reason = '' THEN 'approved' ELSE 'declined' END, reason
    FROM decision
    ON CONFLICT (id) DO NOTHING
    RETURNING id, status, reason, processed_at
), debit AS (
    UPDATE accounts SET balance = balance - @amount
    WHERE id = @account AND EXISTS (SELECT 1 FROM ins WHERE status = 'approved')
)
SELECT id, status, reason, processed_at FROM ins`

// processArgs are processSQL's parameters in the order Process passes them: positional binds ($1 …, one per
// name) instead of gorm's named expansion, which rebuilt the SQL text, bound 12 values instead of 6 and, in
// Scan, formatted the statement with every value for its logger on every call (docs/performance.md).
var processArgs = []string{"id", "store", "account", "amount", "currency", "created"}

// processPositional is processSQL with @name replaced by $n (n = position of name in processArgs).
var processPositional = positional(processSQL, processArgs)

func positional(sql string, names []string) string {
	var b strings.Builder
	for i := 0; i < len(sql); i++ {
		if sql[i] != '@' {
			b.WriteByte(sql[i])
			continue
		}
		j := i + 1
		for j < len(sql) && (sql[j] == '_' || sql[j] >= 'a' && sql[j] <= 'z') {
			j++
		}
		n := slices.Index(names, sql[i+1:j])
		if n < 0 {
			panic("bank: SQL parameter " + sql[i:j] + " has no position")
		}
		b.WriteString("$" + strconv.Itoa(n+1))
		i = j - 1
	}
	return b.String()
}

// transactionRow maps the transactions table.
type transactionRow struct {
	ID          uuid.UUID `gorm:"primaryKey"`
	StoreID     string
	AccountID   string
	Amount      int64
	Currency    string
	CreatedAt   time.Time
	Status      string
	Reason      string
	ProcessedAt time.Time
}

func (transactionRow) TableName() string { return "transactions" }

func (r transactionRow) record() payment.Record {
	return payment.Record{
		Transaction: payment.Transaction{
			ID: r.ID, StoreID: r.StoreID, AccountID: r.AccountID, Amount: r.Amount, Currency: r.Currency,
			CreatedAt: r.CreatedAt.UTC(),
		},
		Status: payment.Status(r.Status), Reason: payment.Reason(r.Reason), ProcessedAt: r.ProcessedAt.UTC(),
	}
}

type accountRow struct {
	ID       string `gorm:"primaryKey"`
	Currency string
	Balance  int64
}

func (accountRow) TableName() string { return "accounts" }

// Process implements Ledger.
func (r *Repository) Process(ctx context.Context, tx payment.Transaction) (payment.Result, bool, error) {
	tx = tx.Normalize()
	res, inserted, err := r.process(ctx, tx)
	switch {
	case err != nil:
		return payment.Result{}, false, fmt.Errorf("process transaction %s: %w", tx.ID, err)
	case inserted:
		return res, true, nil
	}
	// The id exists already: a replay (same fields → the stored result) or a conflict.
	stored, err := r.Transaction(ctx, tx.ID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return payment.Result{}, false, fmt.Errorf("transaction %s neither inserted nor found", tx.ID)
		}
		return payment.Result{}, false, err
	}
	if !stored.SameFields(tx) {
		return payment.Result{}, false, ErrConflict
	}
	return stored.Result(), false, nil
}

// process runs processSQL on a pooled connection. The pool wait honours ctx; the statement honours ctx's
// deadline (the server's DB_QUERY_TIMEOUT: a hung database becomes a 503) as a deadline on the connection's
// socket, not through the context: with a cancellable context, database/sql and pgx 5.7 each start a
// goroutine per statement only to watch it, which cost more than the rest of the statement's Go side
// (docs/performance.md). A client that disconnects no longer cancels the statement: it is one short
// transaction that commits or fails by itself, and the client's retry gets the stored result. As
// database/sql does, a statement that surely never reached the server (a stale pooled connection) is retried
// on another connection. inserted is false when the id existed already.
func (r *Repository) process(ctx context.Context, tx payment.Transaction) (payment.Result, bool, error) {
	sqlDB, ok := r.db.ConnPool.(*sql.DB)
	if !ok {
		return payment.Result{}, false, fmt.Errorf("bank: repository needs a *sql.DB pool, got %T", r.db.ConnPool)
	}
	for attempt := 1; ; attempt++ {
		res, inserted, err := processOn(ctx, sqlDB, tx)
		if err != nil && errors.Is(err, driver.ErrBadConn) && attempt < 3 && ctx.Err() == nil {
			continue
		}
		return res, inserted, err
	}
}

func processOn(ctx context.Context, sqlDB *sql.DB, tx payment.Transaction) (res payment.Result, inserted bool,
	err error) {
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return payment.Result{}, false, err
	}
	defer conn.Close()
	var id [16]byte
	var status, reason string
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("bank: driver connection is %T, not pgx", dc)
		}
		if deadline, ok := ctx.Deadline(); ok {
			nc := c.Conn().PgConn().Conn()
			if err := nc.SetDeadline(deadline); err != nil {
				return err
			}
			defer nc.SetDeadline(time.Time{}) //nolint:errcheck // a connection broken by the deadline is discarded
		}
		// [16]byte: pgx encodes it natively; uuid.UUID would take its driver.Valuer fallback, which costs an
		// fmt.Errorf per statement.
		err := c.Conn().QueryRow(context.WithoutCancel(ctx), processPositional,
			[16]byte(tx.ID), tx.StoreID, tx.AccountID, tx.Amount, tx.Currency, tx.CreatedAt).
			Scan(&id, &status, &reason, &res.ProcessedAt)
		if err != nil && pgconn.SafeToRetry(err) {
			return fmt.Errorf("%w: %w", driver.ErrBadConn, err) // database/sql discards the connection
		}
		return err
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return payment.Result{}, false, nil
	case err != nil:
		return payment.Result{}, false, err
	}
	res.ID, res.Status, res.Reason, res.ProcessedAt = id, payment.Status(status), payment.Reason(reason),
		res.ProcessedAt.UTC()
	return res, true, nil
}

// Transaction implements Ledger.
func (r *Repository) Transaction(ctx context.Context, id uuid.UUID) (payment.Record, error) {
	var rows []transactionRow
	if err := r.db.WithContext(ctx).Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return payment.Record{}, fmt.Errorf("read transaction %s: %w", id, err)
	}
	if len(rows) == 0 {
		return payment.Record{}, ErrNotFound
	}
	return rows[0].record(), nil
}

// Account implements Ledger.
func (r *Repository) Account(ctx context.Context, id string) (payment.Account, error) {
	var rows []accountRow
	if err := r.db.WithContext(ctx).Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return payment.Account{}, fmt.Errorf("read account %s: %w", id, err)
	}
	if len(rows) == 0 {
		return payment.Account{}, ErrNotFound
	}
	a := rows[0]
	return payment.Account{ID: a.ID, Currency: a.Currency, Balance: a.Balance}, nil
}

// AccountID is the id of the n-th seeded account: ACC-000001, ACC-000002, …
func AccountID(n int) string { return fmt.Sprintf("ACC-%06d", n) }

// Seed creates accounts ACC-000001 … ACC-<n> with the given balance and currency when they do not exist;
// existing accounts are left alone. It returns how many it created.
func Seed(ctx context.Context, db *gorm.DB, n int, balance int64, currency string) (int64, error) {
	if n < 1 || n > 999_999 {
		return 0, fmt.Errorf("accounts must be between 1 and 999999, got %d", n)
	}
	if balance < 0 {
		return 0, fmt.Errorf("balance must be >= 0, got %d", balance)
	}
	if !payment.ValidCurrency(currency) {
		return 0, fmt.Errorf("currency %q is not an ISO 4217 code", currency)
	}
	res := db.WithContext(ctx).Exec(`
INSERT INTO accounts (id, currency, balance, initial_balance)
SELECT 'ACC-' || lpad(g::text, 6, '0'), @currency, @balance, @balance FROM generate_series(1, @n) AS g
ON CONFLICT (id) DO NOTHING`, map[string]any{"currency": currency, "balance": balance, "n": n})
	if res.Error != nil {
		return 0, fmt.Errorf("seed accounts: %w", res.Error)
	}
	return res.RowsAffected, nil
}
