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
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
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
	// ErrForeign: the id belongs to a transaction another caller created; nothing of it is disclosed, not
	// even whether the fields match.
	ErrForeign  = errors.New("transaction id already used by another caller")
	ErrNotFound = errors.New("not found")
)

// Ledger stores accounts and transactions. Each transaction belongs to the caller that created it (its
// identity, see package caller): only that caller replays or reads it. A transaction whose caller is unknown
// (recorded before callers were, caller "") is every caller's.
//
//go:generate mockgen -typed -destination=mock_ledger_test.go -package=bank . Ledger
type Ledger interface {
	// Process applies tx once for caller: the first call records the decision and the caller (and debits on
	// approval) and returns it with created=true; later calls by the same caller with the same fields return
	// the stored result with created=false; the same id with different fields returns ErrConflict, the id of
	// another caller's transaction ErrForeign (whatever its fields), and both change nothing.
	Process(ctx context.Context, caller string, tx payment.Transaction) (res payment.Result, created bool, err error)
	// ProcessBatch applies every transaction of txs for caller as Process would, in that order, in ONE database
	// statement: outcome i is what Process would have returned for txs[i] had the transactions been sent one
	// after the other (a later duplicate of an id is a replay of the earlier one, or a conflict). An error
	// fails the whole batch and changes nothing: a retry is safe.
	ProcessBatch(ctx context.Context, caller string, txs []payment.Transaction) ([]Outcome, error)
	// Transaction returns caller's transaction id: ErrNotFound when there is none, ErrForeign when it is
	// another caller's.
	Transaction(ctx context.Context, caller string, id uuid.UUID) (payment.Record, error)
	Account(ctx context.Context, id string) (payment.Account, error)
}

// owns reports whether caller may replay or read a transaction recorded for owner.
func owns(owner, caller string) bool { return owner == "" || owner == caller }

// Repository is the PostgreSQL Ledger.
type Repository struct {
	db     *gorm.DB
	reruns atomic.Int64 // batch statements run again after a race with a concurrent insert of one of their ids
}

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
    INSERT INTO transactions (id, store_id, account_id, amount, currency, created_at, status, reason, caller)
    SELECT @id, @store, @account, @amount, @currency, @created,
           CASE WHEN reason = '' THEN 'approved' ELSE 'declined' END, reason, @caller
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
var processArgs = []string{"id", "store", "account", "amount", "currency", "created", "caller"}

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

// processBatchSQL is processSQL for many transactions at once, in ONE statement (one round trip, one commit),
// with the same effect as running processSQL for each of them in array order. Its arrays hold distinct ids
// (ProcessBatch answers later duplicates itself), element i of each array being transaction i:
//   - acct locks every account of the batch, in id order (FOR UPDATE after ORDER BY locks in that order);
//     the inserts then take the ids' index entries in id order (ins sorts by id). Every statement that
//     waits for another takes its locks in that one global order — the accounts sorted, then the ids sorted
//     (processSQL: one account, then one id) — so no cycle of waits, no deadlock, can form;
//   - stored holds the ids already recorded: they change nothing and are answered from the stored row;
//   - run decides the new ones per account in array order, carrying the balance left: an approval debits
//     what the next one sees, a decline does not (the recursion goes one item deeper per item an account has
//     in the batch);
//   - ins records them with the batch's caller (ON CONFLICT (id) DO NOTHING, as processSQL), debit subtracts
//     what ins approved;
//   - an id recorded by a concurrent request after this statement's snapshot (it waited on one of its
//     locks) is not inserted by ins, and the decisions after it on its account may have counted its debit:
//     then bank_batch_raced() fails the statement as a serialization failure, everything rolls back and
//     ProcessBatch runs it again, in a transaction that locks the accounts before the statement's snapshot
//     (so it sees every request that recorded an id on them).
//
// Each parameter appears once: the benchmark replaces each with an array expression (test/bench).
const processBatchSQL = `
WITH RECURSIVE item AS (
    SELECT * FROM unnest(@ids::uuid[], @stores::text[], @accounts::text[], @amounts::bigint[],
                         @currencies::text[], @created::timestamptz[])
        WITH ORDINALITY AS i(id, store_id, account_id, amount, currency, created_at, ord)
), acct AS MATERIALIZED (
    SELECT id, currency, balance FROM accounts WHERE id = ANY (ARRAY(SELECT account_id FROM item))
    ORDER BY id FOR UPDATE
), stored AS MATERIALIZED (
    SELECT t.* FROM transactions t WHERE t.id = ANY (ARRAY(SELECT id FROM item))
), cand AS MATERIALIZED (
    SELECT i.id, i.store_id, i.account_id, i.amount, i.currency, i.created_at, i.ord,
           a.currency AS acct_currency, a.balance AS acct_balance,
           row_number() OVER (PARTITION BY i.account_id ORDER BY i.ord) AS k
    FROM item i LEFT JOIN acct a ON a.id = i.account_id
    WHERE NOT EXISTS (SELECT FROM stored s WHERE s.id = i.id)
), run AS (
    SELECT c.account_id, c.k, c.ord, d.reason,
           c.acct_balance - CASE WHEN d.reason = '' THEN c.amount ELSE 0 END AS left_over
    FROM cand c CROSS JOIN LATERAL (SELECT CASE
        WHEN c.acct_currency IS NULL       THEN 'unknown_account'
        WHEN c.acct_currency <> c.currency THEN 'currency_mismatch'
        WHEN c.acct_balance < c.amount     THEN 'insufficient_funds'
        ELSE '' END AS reason) d
    WHERE c.k = 1
    UNION ALL
    SELECT c.account_id, c.k, c.ord, d.reason,
           r.left_over - CASE WHEN d.reason = '' THEN c.amount ELSE 0 END
    FROM run r JOIN cand c ON c.account_id = r.account_id AND c.k = r.k + 1
    CROSS JOIN LATERAL (SELECT CASE
        WHEN c.acct_currency IS NULL       THEN 'unknown_account'
        WHEN c.acct_currency <> c.currency THEN 'currency_mismatch'
        WHEN r.left_over < c.amount        THEN 'insufficient_funds'
        ELSE '' END AS reason) d
), ins AS (
    INSERT INTO transactions (id, store_id, account_id, amount, currency, created_at, status, reason, caller)
    SELECT c.id, c.store_id, c.account_id, c.amount, c.currency, c.created_at,
           CASE WHEN r.reason = '' THEN 'approved' ELSE 'declined' END, r.reason, @caller::text
    FROM cand c JOIN run r ON r.ord = c.ord
    ORDER BY c.id
    ON CONFLICT (id) DO NOTHING
    RETURNING id, account_id, amount, status, reason, processed_at
), debit AS (
    UPDATE accounts a SET balance = a.balance - d.total
    FROM (SELECT account_id, sum(amount) AS total FROM ins WHERE status = 'approved' GROUP BY account_id) d
    WHERE a.id = d.account_id
)
SELECT i.ord, s.id IS NOT NULL, s.store_id, s.account_id, s.amount, s.currency, s.created_at, s.caller,
       COALESCE(s.status, n.status), COALESCE(s.reason, n.reason), COALESCE(s.processed_at, n.processed_at)
FROM item i LEFT JOIN stored s ON s.id = i.id LEFT JOIN ins n ON n.id = i.id
WHERE CASE WHEN (SELECT count(*) FROM ins) < (SELECT count(*) FROM cand) THEN bank_batch_raced() ELSE true END
ORDER BY i.ord`

// processBatchArgs are processBatchSQL's parameters in the order processBatch passes them: the arrays, then
// the caller.
var processBatchArgs = []string{"ids", "stores", "accounts", "amounts", "currencies", "created", "caller"}

var processBatchPositional = positional(processBatchSQL, processBatchArgs)

// maxBatchRuns bounds how often a batch statement runs when concurrent requests keep recording its ids first
// (each run waits for them, so the next normally sees them); then the batch fails as a serialization failure,
// which the server answers 503 + Retry-After.
const maxBatchRuns = 4

// Outcome is the Ledger's answer for one transaction of a batch: what Process returns for it.
type Outcome struct {
	Result  payment.Result
	Created bool
	Err     error // ErrConflict, ErrForeign, or nil
}

// ProcessBatch implements Ledger.
func (r *Repository) ProcessBatch(ctx context.Context, caller string, txs []payment.Transaction) ([]Outcome, error) {
	if len(txs) == 0 || len(txs) > payment.MaxBatchItems {
		return nil, fmt.Errorf("process batch: %d transactions, want 1-%d", len(txs), payment.MaxBatchItems)
	}
	// The first occurrence of each id goes to the database; a later one is answered as Process would answer
	// it after the first: a replay of the first's result, or a conflict.
	at := make(map[uuid.UUID]int, len(txs))
	uniq := make([]payment.Transaction, 0, len(txs))
	for _, tx := range txs {
		if _, dup := at[tx.ID]; !dup {
			at[tx.ID] = len(uniq)
			uniq = append(uniq, tx.Normalize())
		}
	}
	refs, err := r.processBatch(ctx, caller, uniq)
	if err != nil {
		return nil, fmt.Errorf("process batch of %d (%s, …): %w", len(txs), txs[0].ID, err)
	}
	// A statement that created an item committed with a commit record, and waited for the standby up to it:
	// every earlier row it answers with is replicated too. A batch of replays only wrote nothing: it must pass
	// the barrier before it confirms them (see Process).
	if !slices.ContainsFunc(refs, func(b batchRef) bool { return b.created }) {
		if err := r.waitDurable(ctx); err != nil {
			return nil, fmt.Errorf("process batch of %d (%s, …): replays: %w", len(txs), txs[0].ID, err)
		}
	}
	out := make([]Outcome, len(txs))
	answered := make([]bool, len(uniq))
	for i, tx := range txs {
		j := at[tx.ID]
		ref := refs[j]
		switch {
		case ref.created && !answered[j]:
			out[i] = Outcome{Result: ref.rec.Result(), Created: true}
		case !owns(ref.caller, caller):
			out[i] = Outcome{Err: ErrForeign}
		case ref.rec.SameFields(tx):
			out[i] = Outcome{Result: ref.rec.Result()}
		default:
			out[i] = Outcome{Err: ErrConflict}
		}
		answered[j] = true
	}
	return out, nil
}

// batchRef is what the database holds for one id of a batch after the statement: the record that later
// occurrences are compared with, its caller, and whether the statement created it.
type batchRef struct {
	rec     payment.Record
	caller  string
	created bool
}

// processBatch runs processBatchSQL for distinct, normalized transactions, again when it raced (see
// processBatchSQL); refs[i] belongs to uniq[i].
func (r *Repository) processBatch(ctx context.Context, caller string, uniq []payment.Transaction) ([]batchRef,
	error) {
	ids := make([][16]byte, len(uniq))
	stores := make([]string, len(uniq))
	accounts := make([]string, len(uniq))
	amounts := make([]int64, len(uniq))
	currencies := make([]string, len(uniq))
	created := make([]time.Time, len(uniq))
	for i, tx := range uniq {
		ids[i], stores[i], accounts[i], amounts[i], currencies[i], created[i] = tx.ID, tx.StoreID, tx.AccountID,
			tx.Amount, tx.Currency, tx.CreatedAt
	}
	refs := make([]batchRef, len(uniq))
	for run := 1; ; run++ {
		err := r.onConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
			if run == 1 {
				rows, err := c.Query(ctx, processBatchPositional, ids, stores, accounts, amounts, currencies, created,
					caller)
				if err != nil {
					return err
				}
				return scanBatch(rows, caller, uniq, refs)
			}
			// Again after a race: the accounts are locked first, in the same order, and the statement's
			// snapshot is taken only then, so every request that recorded one of these ids on one of these
			// accounts has committed and is seen.
			return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, lockAccountsSQL, accounts); err != nil {
					return err
				}
				rows, err := tx.Query(ctx, processBatchPositional, ids, stores, accounts, amounts, currencies, created,
					caller)
				if err != nil {
					return err
				}
				return scanBatch(rows, caller, uniq, refs)
			})
		})
		var pgErr *pgconn.PgError
		raced := errors.As(err, &pgErr) && pgErr.Code == "40001" // serialization_failure: bank_batch_raced()
		if raced && run < maxBatchRuns && ctx.Err() == nil {
			r.reruns.Add(1)
			continue
		}
		return refs, err
	}
}

// lockAccountsSQL locks a batch's accounts in processBatchSQL's order, before its snapshot (see processBatch).
const lockAccountsSQL = `SELECT FROM accounts WHERE id = ANY ($1::text[]) ORDER BY id FOR UPDATE`

// scanBatch reads processBatchSQL's rows into refs (caller: the batch's, the owner of what it created).
func scanBatch(rows pgx.Rows, caller string, uniq []payment.Transaction, refs []batchRef) error {
	defer rows.Close()
	n := 0
	for rows.Next() {
		var ord int64
		var existed bool
		var storeID, accountID, currency, owner *string
		var amount *int64
		var createdAt *time.Time
		var status, reason string
		var processedAt time.Time
		if err := rows.Scan(&ord, &existed, &storeID, &accountID, &amount, &currency, &createdAt, &owner, &status,
			&reason, &processedAt); err != nil {
			return err
		}
		if ord < 1 || ord > int64(len(uniq)) {
			return fmt.Errorf("batch statement answered for item %d of %d", ord, len(uniq))
		}
		tx, by := uniq[ord-1], caller
		if existed {
			tx = payment.Transaction{ID: tx.ID, StoreID: *storeID, AccountID: *accountID, Amount: *amount,
				Currency: *currency, CreatedAt: createdAt.UTC()}
			by = *owner
		}
		refs[ord-1] = batchRef{created: !existed, caller: by, rec: payment.Record{Transaction: tx,
			Status: payment.Status(status), Reason: payment.Reason(reason), ProcessedAt: processedAt.UTC()}}
		n++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n != len(uniq) {
		return fmt.Errorf("batch statement answered for %d of %d items", n, len(uniq))
	}
	return nil
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
	Caller      string
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
func (r *Repository) Process(ctx context.Context, caller string, tx payment.Transaction) (payment.Result, bool,
	error) {
	tx = tx.Normalize()
	res, inserted, err := r.process(ctx, caller, tx)
	switch {
	case err != nil:
		return payment.Result{}, false, fmt.Errorf("process transaction %s: %w", tx.ID, err)
	case inserted:
		return res, true, nil
	}
	// The id exists already: another caller's (nothing of it disclosed, not even whether the fields match), a
	// replay (same fields → the stored result) or a conflict.
	stored, owner, err := r.Stored(ctx, tx.ID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return payment.Result{}, false, fmt.Errorf("transaction %s neither inserted nor found", tx.ID)
		}
		return payment.Result{}, false, err
	}
	if !owns(owner, caller) {
		return payment.Result{}, false, ErrForeign
	}
	if !stored.SameFields(tx) {
		return payment.Result{}, false, ErrConflict
	}
	// A replay confirms the first processing: that one must be durable first (postgres.DurableSQL: a
	// commit whose wait for the standby was cancelled is visible, and a failover may not keep it).
	if err := r.waitDurable(ctx); err != nil {
		return payment.Result{}, false, fmt.Errorf("replay transaction %s: %w", tx.ID, err)
	}
	return stored.Result(), false, nil
}

// waitDurable passes the durability barrier (postgres.DurableSQL) on a pooled connection.
func (r *Repository) waitDurable(ctx context.Context) error {
	return r.onConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		var lsn string
		return c.QueryRow(ctx, postgres.DurableSQL).Scan(&lsn)
	})
}

// process runs processSQL (see onConn); inserted is false when the id existed already.
func (r *Repository) process(ctx context.Context, caller string, tx payment.Transaction) (res payment.Result,
	inserted bool, err error) {
	var id [16]byte
	var status, reason string
	err = r.onConn(ctx, func(ctx context.Context, c *pgx.Conn) error {
		// [16]byte: pgx encodes it natively; uuid.UUID would take its driver.Valuer fallback, which costs an
		// fmt.Errorf per statement.
		return c.QueryRow(ctx, processPositional,
			[16]byte(tx.ID), tx.StoreID, tx.AccountID, tx.Amount, tx.Currency, tx.CreatedAt, caller).
			Scan(&id, &status, &reason, &res.ProcessedAt)
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

// onConn runs f on a pooled pgx connection. The pool wait honours ctx; the statement honours ctx's deadline
// (the server's DB_QUERY_TIMEOUT: a hung database becomes a 503) as a deadline on the connection's socket,
// not through the context: f gets a context that is never cancelled, because with a cancellable context
// database/sql and pgx 5.7 each start a goroutine per statement only to watch it, which cost more than the
// rest of the statement's Go side (docs/performance.md). A client that disconnects no longer cancels the
// statement: it is one short transaction that commits or fails by itself, and the client's retry gets the
// stored result. As database/sql does, a statement that surely never reached the server (a stale pooled
// connection) is retried on another connection.
func (r *Repository) onConn(ctx context.Context, f func(context.Context, *pgx.Conn) error) error {
	sqlDB, ok := r.db.ConnPool.(*sql.DB)
	if !ok {
		return fmt.Errorf("bank: repository needs a *sql.DB pool, got %T", r.db.ConnPool)
	}
	for attempt := 1; ; attempt++ {
		err := onConnOnce(ctx, sqlDB, f)
		if err != nil && errors.Is(err, driver.ErrBadConn) && attempt < 3 && ctx.Err() == nil {
			continue
		}
		return err
	}
}

func onConnOnce(ctx context.Context, sqlDB *sql.DB, f func(context.Context, *pgx.Conn) error) error {
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
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
		err := f(context.WithoutCancel(ctx), c.Conn())
		if err != nil && pgconn.SafeToRetry(err) {
			return fmt.Errorf("%w: %w", driver.ErrBadConn, err) // database/sql discards the connection
		}
		return err
	})
}

// Transaction implements Ledger.
func (r *Repository) Transaction(ctx context.Context, caller string, id uuid.UUID) (payment.Record, error) {
	rec, owner, err := r.Stored(ctx, id)
	if err == nil && !owns(owner, caller) {
		return payment.Record{}, ErrForeign
	}
	return rec, err
}

// Stored returns transaction id and the caller that created it ("" when unknown), whoever asks (audits,
// tests); ErrNotFound when there is none.
func (r *Repository) Stored(ctx context.Context, id uuid.UUID) (payment.Record, string, error) {
	var rows []transactionRow
	if err := r.db.WithContext(ctx).Where("id = ?", id).Limit(1).Find(&rows).Error; err != nil {
		return payment.Record{}, "", fmt.Errorf("read transaction %s: %w", id, err)
	}
	if len(rows) == 0 {
		return payment.Record{}, "", ErrNotFound
	}
	return rows[0].record(), rows[0].Caller, nil
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

// AccountID is the id of the n-th seeded customer account: ACC-000001, ACC-000002, …
func AccountID(n int) string { return fmt.Sprintf("ACC-%06d", n) }

// CanaryAccountID is the id of the n-th canary account: CANARY-000001, CANARY-000002, …
func CanaryAccountID(n int) string { return fmt.Sprintf("%s%06d", payment.CanaryAccountPrefix, n) }

// Seed creates customer accounts ACC-000001 … ACC-<n> with the given balance and currency when they do not
// exist; existing accounts are left alone. It returns how many it created.
func Seed(ctx context.Context, db *gorm.DB, n int, balance int64, currency string) (int64, error) {
	return seed(ctx, db, "ACC-", n, balance, currency)
}

// SeedCanary creates canary accounts CANARY-000001 … CANARY-<n> (payment.CanaryAccountPrefix), the only
// accounts Flagger's acceptance and load tests spend, as Seed does customer accounts.
func SeedCanary(ctx context.Context, db *gorm.DB, n int, balance int64, currency string) (int64, error) {
	return seed(ctx, db, payment.CanaryAccountPrefix, n, balance, currency)
}

func seed(ctx context.Context, db *gorm.DB, prefix string, n int, balance int64, currency string) (int64, error) {
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
SELECT @prefix || lpad(g::text, 6, '0'), @currency, @balance, @balance FROM generate_series(1, @n) AS g
ON CONFLICT (id) DO NOTHING`, map[string]any{"prefix": prefix, "currency": currency, "balance": balance, "n": n})
	if res.Error != nil {
		return 0, fmt.Errorf("seed accounts %s…: %w", prefix, res.Error)
	}
	return res.RowsAffected, nil
}
