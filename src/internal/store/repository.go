// Package store is the Store service: it accepts purchases (its API and a generator), writes each one with an
// outbox row in ONE transaction, and exposes what the relay (package relay) needs to deliver them to the Bank.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
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

// Status is where a purchase stands.
type Status string

// Statuses: pending until the Bank decides (approved, declined) or refuses the request itself (rejected).
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved"
	StatusDeclined Status = "declined"
	StatusRejected Status = "rejected"
)

// Statuses lists every status, in display order.
var Statuses = []Status{StatusPending, StatusApproved, StatusDeclined, StatusRejected}

// Source says who created a purchase.
type Source string

// Sources.
const (
	SourceAPI       Source = "api"
	SourceGenerator Source = "generator"
)

// Purchase is a stored purchase as GET /v1/purchases/{id} returns it.
type Purchase struct {
	ID        uuid.UUID      `json:"id"`
	StoreID   string         `json:"store_id"`
	AccountID string         `json:"account_id"`
	Amount    int64          `json:"amount"`
	Currency  string         `json:"currency"`
	Source    Source         `json:"source"`
	Status    Status         `json:"status"`
	Reason    payment.Reason `json:"reason"`               // the Bank's decline reason
	ErrorCode string         `json:"error_code,omitempty"` // the Bank's error code, when rejected
	LastError string         `json:"last_error,omitempty"` // the last delivery failure
	Attempts  int            `json:"attempts"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	// ProcessedAt is when the Bank decided; CompletedAt when the Store recorded the outcome.
	ProcessedAt *time.Time `json:"processed_at,omitempty"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	// NextAttemptAt is when the relay sends a pending purchase next (or when its current claim ends).
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

// Transaction is what the Store sends the Bank for p.
func (p Purchase) Transaction() payment.Transaction {
	return payment.Transaction{ID: p.ID, StoreID: p.StoreID, AccountID: p.AccountID, Amount: p.Amount,
		Currency: p.Currency, CreatedAt: p.CreatedAt}
}

// purchaseRow maps the purchases table (joined with outbox.next_attempt_at).
type purchaseRow struct {
	ID            uuid.UUID
	StoreID       string
	AccountID     string
	Amount        int64
	Currency      string
	Source        string
	Status        string
	Reason        string
	ErrorCode     string
	LastError     string
	Attempts      int
	CreatedAt     time.Time
	UpdatedAt     time.Time
	ProcessedAt   *time.Time
	CompletedAt   *time.Time
	NextAttemptAt *time.Time
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func (r purchaseRow) purchase() Purchase {
	return Purchase{
		ID: r.ID, StoreID: r.StoreID, AccountID: r.AccountID, Amount: r.Amount, Currency: r.Currency,
		Source: Source(r.Source), Status: Status(r.Status), Reason: payment.Reason(r.Reason),
		ErrorCode: r.ErrorCode, LastError: r.LastError, Attempts: r.Attempts, CreatedAt: r.CreatedAt.UTC(),
		UpdatedAt: r.UpdatedAt.UTC(), ProcessedAt: utcPtr(r.ProcessedAt), CompletedAt: utcPtr(r.CompletedAt),
		NextAttemptAt: utcPtr(r.NextAttemptAt),
	}
}

const selectPurchase = `
SELECT p.id, p.store_id, p.account_id, p.amount, p.currency, p.source, p.status, p.reason, p.error_code,
       p.last_error, p.attempts, p.created_at, p.updated_at, p.processed_at, p.completed_at, o.next_attempt_at
FROM purchases p LEFT JOIN outbox o ON o.purchase_id = p.id`

// Repository is the Store's PostgreSQL storage: purchases and their outbox.
type Repository struct {
	db      *gorm.DB
	storeID string
	created func()
	adds    creator
	done    completer
	// rideThrough is how long a purchase's statement is retried while store-db is unavailable.
	rideThrough time.Duration
}

// NewRepository returns a Repository over db; purchases it creates carry storeID.
func NewRepository(db *gorm.DB, storeID string) *Repository {
	return &Repository{db: db, storeID: storeID, created: func() {}, rideThrough: DefaultRideThrough}
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

// NewPurchase is a purchase to create.
type NewPurchase struct {
	AccountID string
	Amount    int64
	Currency  string
	Source    Source
	// IdempotencyKey, when not empty, makes Create idempotent: the same key returns the purchase it created.
	IdempotencyKey string
}

// createSQL writes purchases and their outbox rows in ONE statement, hence one transaction: a purchase is
// never stored without the row that gets it delivered. A purchase whose idempotency key was used already
// inserts nothing (a concurrent insert with the same key waits for the first one to commit, then inserts
// nothing); the ids returned are those inserted. The purchases are inserted in key order, so two statements
// (of two Store replicas) holding the same new keys wait for each other in one order, never in a cycle; the
// ids are new UUIDv7s and never conflict.
const createSQL = `
WITH r AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[]) WITH ORDINALITY AS r(id, account_id, amount, currency, source, key, created_at, ord)
), p AS (
    INSERT INTO purchases (id, store_id, account_id, amount, currency, source, idempotency_key, created_at,
                           updated_at)
    SELECT id::uuid, $8, account_id, amount, currency, source, NULLIF(key, ''), created_at, created_at
    FROM r ORDER BY key, ord
    ON CONFLICT DO NOTHING -- a reused idempotency key, or the id of an attempt that committed unanswered
    RETURNING id, created_at
), o AS (
    INSERT INTO outbox (purchase_id, created_at, next_attempt_at)
    SELECT id, created_at, now() FROM p
)
SELECT id::text FROM p`

// maxCreateBatch bounds one createSQL; createTimeout bounds its run.
const (
	maxCreateBatch = 256
	createTimeout  = 10 * time.Second
)

// creator coalesces concurrent Create calls into createSQL statements — group commit, as completer does
// for outcomes, with up to createWriters statements in flight: a caller that finds a writer's slot free
// writes what is queued with its own purchase at once; callers arriving while every slot is busy queue up,
// and a writer that finishes hands its slot to the first of them, who writes the queue. At low load a
// statement holds one purchase and nobody waits; under load each statement and its (synchronously
// replicated) commit accept many purchases, and while one waits for the standby the next is already being
// written (docs/performance.md). Each caller returns once its purchase is committed, with its statement's
// error: a 202 is durable as before, and a failed statement wrote nothing for anyone.
type creator struct {
	mu      sync.Mutex
	queue   []*creation
	writers int
}

// createWriters bounds the createSQL statements in flight.
const createWriters = 4

// creation is one caller's purchase.
type creation struct {
	tx       payment.Transaction
	source   Source
	key      string
	inserted bool  // set with err, before done closes
	err      error // the statement's
	done     chan struct{}
	lead     chan struct{} // closed when a finishing writer hands this caller its slot (it left the queue)
}

// insert writes a purchase through the creator; false when the idempotency key was taken (nothing written).
func (r *Repository) insert(ctx context.Context, tx payment.Transaction, in NewPurchase) (bool, error) {
	c := &creation{tx: tx, source: in.Source, key: in.IdempotencyKey, done: make(chan struct{}),
		lead: make(chan struct{})}
	q := &r.adds
	q.mu.Lock()
	if q.writers >= createWriters {
		q.queue = append(q.queue, c)
		q.mu.Unlock()
		select {
		case <-c.done: // written by another caller's statement
			return c.inserted, c.err
		case <-c.lead: // a slot: write it and what queued behind it
		}
		q.mu.Lock()
	} else {
		q.writers++
	}
	n := min(len(q.queue), maxCreateBatch-1)
	batch := append([]*creation{c}, q.queue[:n]...)
	q.queue = q.queue[n:]
	q.mu.Unlock()

	// The statement writes other callers' purchases too: the writer's client going away must not cancel it
	// (the others would get an error for purchases that may have committed). It keeps the writer's deadline,
	// or createTimeout (longer with a longer ride-through): a database that does not answer fails it then (an
	// error for each, as a failed insert).
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(max(createTimeout, r.rideThrough+2*time.Second))
	}
	wctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	err := r.insertRidingThrough(wctx, batch)
	cancel()
	for _, b := range batch {
		b.err = err
		b.inserted = b.inserted && err == nil
		close(b.done)
	}
	q.mu.Lock()
	if len(q.queue) > 0 {
		next := q.queue[0] // the slot passes on
		q.queue = q.queue[1:]
		close(next.lead)
	} else {
		q.writers--
		if q.writers == 0 {
			q.queue = nil
		}
	}
	q.mu.Unlock()
	return c.inserted, err
}

// insertRidingThrough runs insertBatch, retrying with backoff while the database is unavailable, for up
// to the ride-through: a switchover (a drain's planned primary change, a restart in place) makes a slower
// answer rather than a 503, and longer outages still fail the purchase instead of holding its client. A
// retry is safe: the ids are the same, so an attempt that committed unanswered makes the next one insert
// nothing for them (Create finds those purchases by id or key).
func (r *Repository) insertRidingThrough(ctx context.Context, batch []*creation) error {
	until := time.Now().Add(r.rideThrough)
	wait := 100 * time.Millisecond
	for {
		err := r.insertBatch(ctx, batch)
		left := time.Until(until)
		if err == nil || !postgres.Unavailable(err) || ctx.Err() != nil || left <= 0 {
			return err
		}
		for _, c := range batch {
			c.inserted = false
		}
		t := time.NewTimer(min(wait, left)) // the last attempt at the end of the ride-through
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// insertBatch runs createSQL for batch and marks the purchases it inserted. Arrays of text, cast in SQL:
// also right in the simple protocol (PgBouncer).
func (r *Repository) insertBatch(ctx context.Context, batch []*creation) error {
	n := len(batch)
	ids, accounts, currencies := make([]string, n), make([]string, n), make([]string, n)
	sources, keys := make([]string, n), make([]string, n)
	amounts, created := make([]int64, n), make([]time.Time, n)
	at := make(map[string]*creation, n)
	for i, c := range batch {
		ids[i], accounts[i], amounts[i], currencies[i] = c.tx.ID.String(), c.tx.AccountID, c.tx.Amount, c.tx.Currency
		sources[i], keys[i], created[i] = string(c.source), c.key, c.tx.CreatedAt
		at[ids[i]] = c
	}
	rows, err := r.db.ConnPool.QueryContext(ctx, createSQL, ids, accounts, amounts, currencies, sources, keys,
		created, r.storeID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		if c := at[id]; c != nil {
			c.inserted = true
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

// Create stores a new pending purchase with its outbox row. It returns created=false with the existing
// purchase when the idempotency key was used before for the same account, amount and currency, and
// ErrConflict when it was used for different ones. Invalid fields are a *payment.ValidationError.
func (r *Repository) Create(ctx context.Context, in NewPurchase) (Purchase, bool, error) {
	id, err := uuid.NewV7() // time-ordered: inserts stay at the right edge of the primary key indexes
	if err != nil {
		return Purchase{}, false, fmt.Errorf("new purchase id: %w", err)
	}
	tx := payment.Transaction{ID: id, StoreID: r.storeID, AccountID: in.AccountID, Amount: in.Amount,
		Currency: in.Currency, CreatedAt: time.Now()}.Normalize()
	if err := tx.Validate(); err != nil {
		return Purchase{}, false, err
	}
	inserted, err := r.insert(ctx, tx, in)
	if err != nil {
		return Purchase{}, false, fmt.Errorf("create purchase: %w", err)
	}
	if inserted {
		r.created()
		return Purchase{ID: tx.ID, StoreID: tx.StoreID, AccountID: tx.AccountID, Amount: tx.Amount,
			Currency: tx.Currency, Source: in.Source, Status: StatusPending, CreatedAt: tx.CreatedAt,
			UpdatedAt: tx.CreatedAt, NextAttemptAt: &tx.CreatedAt}, true, nil
	}
	if in.IdempotencyKey == "" {
		// Not inserted without a key: an earlier attempt of this very call committed (its answer lost to a
		// broken connection) and the retry skipped the id.
		p, err := r.get(ctx, "p.id = ?", tx.ID)
		if err != nil {
			return Purchase{}, false, fmt.Errorf("create purchase %s: neither inserted nor found: %w", tx.ID, err)
		}
		if err := postgres.WaitDurable(ctx, r.db.ConnPool); err != nil {
			return Purchase{}, false, fmt.Errorf("create purchase: %w", err)
		}
		r.created()
		return p, true, nil
	}
	// The key was used before: a replay (same fields → that purchase) or a conflict.
	p, err := r.get(ctx, "p.idempotency_key = ?", in.IdempotencyKey)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Purchase{}, false, fmt.Errorf("purchase with key %q neither inserted nor found", in.IdempotencyKey)
		}
		return Purchase{}, false, err
	}
	if p.AccountID != in.AccountID || p.Amount != in.Amount || p.Currency != in.Currency {
		return Purchase{}, false, ErrConflict
	}
	if p.ID == tx.ID {
		// This call's own purchase: an earlier attempt committed unanswered and the retry skipped it.
		if err := postgres.WaitDurable(ctx, r.db.ConnPool); err != nil {
			return Purchase{}, false, fmt.Errorf("create purchase: %w", err)
		}
		r.created()
		return p, true, nil
	}
	// A replay answers 202 as the first request did: the purchase must be as durable as that 202 promised.
	if err := postgres.WaitDurable(ctx, r.db.ConnPool); err != nil {
		return Purchase{}, false, fmt.Errorf("replay purchase: %w", err)
	}
	return p, false, nil
}

// Get returns a purchase by id.
func (r *Repository) Get(ctx context.Context, id uuid.UUID) (Purchase, error) {
	return r.get(ctx, "p.id = ?", id)
}

func (r *Repository) get(ctx context.Context, where string, arg any) (Purchase, error) {
	var rows []purchaseRow
	if err := r.db.WithContext(ctx).Raw(selectPurchase+" WHERE "+where+" LIMIT 1", arg).Scan(&rows).Error; err != nil {
		return Purchase{}, fmt.Errorf("read purchase: %w", err)
	}
	if len(rows) == 0 {
		return Purchase{}, ErrNotFound
	}
	return rows[0].purchase(), nil
}

// Backlog is the outbox's size and the age of its oldest purchase (0 when empty).
type Backlog struct {
	Size      int64
	OldestAge time.Duration
}

// Backlog measures the outbox.
func (r *Repository) Backlog(ctx context.Context) (Backlog, error) {
	var row struct {
		N   int64
		Age float64
	}
	err := r.db.WithContext(ctx).Raw(`
SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age FROM outbox`).
		Scan(&row).Error
	if err != nil {
		return Backlog{}, fmt.Errorf("measure outbox: %w", err)
	}
	return Backlog{Size: row.N, OldestAge: time.Duration(max(row.Age, 0) * float64(time.Second))}, nil
}

// CountByStatus counts purchases by status; every status is present.
func (r *Repository) CountByStatus(ctx context.Context) (map[Status]int64, error) {
	var rows []struct {
		Status string
		N      int64
	}
	if err := r.db.WithContext(ctx).Raw(`SELECT status, count(*) AS n FROM purchases GROUP BY status`).
		Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("count purchases: %w", err)
	}
	counts := make(map[Status]int64, len(Statuses))
	for _, s := range Statuses {
		counts[s] = 0
	}
	for _, row := range rows {
		counts[Status(row.Status)] = row.N
	}
	return counts, nil
}

// Claim is a purchase a relay took from the outbox to send, until its lease ends.
type Claim struct {
	Tx payment.Transaction
	// Attempts is how many sends were recorded before this claim.
	Attempts int
	// Token identifies this claim: Retry and Release only touch the outbox row while it is still this claim.
	Token uuid.UUID
}

// claimSQL takes up to @n due rows that no other relay holds (SKIP LOCKED: replicas never wait on each other)
// and leases them: next_attempt_at moves to the lease's end, so a crashed relay's rows come due again then.
// One statement, one short transaction: no lock outlives it and no session state is used, so it works
// through PgBouncer in transaction mode.
//
// The claim commits with the server's synchronous_commit, and that is what makes the send safe, not the
// lease: its commit record follows every purchase it claims in the WAL, so once it is confirmed by a
// synchronous standby, so are they (postgres.DurableSQL says why a visible purchase need not be: a commit
// whose wait for the standby was cancelled). Claim fails rather than hand out rows if that wait does not
// complete. TestNothingUnreplicatedLeavesTheStore proves it.
const claimSQL = `
WITH due AS (
    SELECT purchase_id FROM outbox
    WHERE next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT @n
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE outbox o
    SET next_attempt_at = now() + @lease_us * interval '1 microsecond', claim_token = @token, claimed_by = @owner
    FROM due WHERE o.purchase_id = due.purchase_id
    RETURNING o.purchase_id
)
SELECT p.id, p.store_id, p.account_id, p.amount, p.currency, p.created_at, p.attempts
FROM claimed c JOIN purchases p ON p.id = c.purchase_id
ORDER BY p.created_at`

// claimPositional is claimSQL with positional binds: Claim runs it on the pool directly (gorm's Raw + Scan
// rebuilt the statement and formatted it with its values for the logger on every call: a tenth of the
// relay's CPU during a drain, docs/performance.md).
var claimPositional = strings.NewReplacer("@n", "$1", "@lease_us", "$2", "@token", "$3", "@owner", "$4").
	Replace(claimSQL)

// Claim leases up to n due purchases to owner for lease.
func (r *Repository) Claim(ctx context.Context, owner string, n int, lease time.Duration) ([]Claim, error) {
	token := uuid.New()
	rows, err := r.db.ConnPool.QueryContext(ctx, claimPositional, n, lease.Microseconds(), token.String(), owner)
	if err != nil {
		return nil, fmt.Errorf("claim outbox rows: %w", err)
	}
	defer rows.Close()
	var claims []Claim
	for rows.Next() {
		var c Claim
		if err := rows.Scan(&c.Tx.ID, &c.Tx.StoreID, &c.Tx.AccountID, &c.Tx.Amount, &c.Tx.Currency, &c.Tx.CreatedAt,
			&c.Attempts); err != nil {
			return nil, fmt.Errorf("claim outbox rows: %w", err)
		}
		c.Tx.CreatedAt, c.Token = c.Tx.CreatedAt.UTC(), token
		claims = append(claims, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim outbox rows: %w", err)
	}
	// The rows arrive before the commit; Close waits for it (and for the synchronous standby). A context that
	// ended meanwhile cancelled that wait, which PostgreSQL reports only as a warning.
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("claim outbox rows: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("claim outbox rows: %w", err)
	}
	return claims, nil
}

// completeSQL records the outcome and removes the outbox row in ONE statement (last_error keeps the last
// failure before a decision, as history). It does not require the claim
// to be current: the Bank answers the same for the same id, so whichever relay records first wins and a later
// recording changes nothing (status is no longer pending).
const completeSQL = `
WITH done AS (
    DELETE FROM outbox WHERE purchase_id = @id
)
UPDATE purchases
SET status = @status, reason = @reason, error_code = @code, last_error = COALESCE(NULLIF(@error, ''), last_error),
    attempts = attempts + 1,
    processed_at = @processed, completed_at = now(), updated_at = now()
WHERE id = @id AND status = 'pending'`

// completeBatchSQL is completeSQL for many purchases at once (the Bank's decisions only: no error code, the
// last error kept): one statement, one commit, whatever the batch size.
const completeBatchSQL = `
WITH r AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) AS r(id, status, reason, processed_at)
), done AS (
    DELETE FROM outbox o USING r WHERE o.purchase_id = r.id
)
UPDATE purchases p
SET status = r.status, reason = r.reason, error_code = '', attempts = p.attempts + 1,
    processed_at = r.processed_at, completed_at = now(), updated_at = now()
FROM r WHERE p.id = r.id AND p.status = 'pending'`

// maxCompleteBatch bounds one completeBatchSQL, unless one call alone brings more.
const maxCompleteBatch = 256

// completer coalesces concurrent Complete and CompleteBatch calls into one statement — group commit: a
// caller that finds nothing being written writes what is queued (its own outcomes at least) at once;
// callers arriving meanwhile queue up, and the first of them writes the whole queue as soon as the write in
// progress ends. At low load a statement records one call and nobody waits; under load one commit records
// many outcomes instead of one each (the relay's drain rate, see docs/performance.md). Every caller returns
// once its outcomes are written, with that write's error, so the relay's failure handling is unchanged.
type completer struct {
	mu      sync.Mutex
	queue   []*completion
	writing bool
}

// completion is one caller's outcomes.
type completion struct {
	items []decided
	err   error
	done  chan struct{} // closed once written (err set)
	lead  chan struct{} // closed when this caller is to write the queue
}

type decided struct {
	id        [16]byte
	status    string
	reason    string
	processed time.Time
}

// Decision is the Bank's decision on one purchase, for CompleteBatch.
type Decision struct {
	ID     uuid.UUID
	Result payment.Result
}

// Complete records the Bank's decision on a purchase and removes it from the outbox.
func (r *Repository) Complete(ctx context.Context, id uuid.UUID, res payment.Result) error {
	return r.CompleteBatch(ctx, []Decision{{ID: id, Result: res}})
}

// CompleteBatch records the Bank's decisions on several purchases (those of one batch sent to the Bank) and
// removes them from the outbox, in one statement shared with concurrent callers.
func (r *Repository) CompleteBatch(ctx context.Context, ds []Decision) error {
	c := &completion{items: make([]decided, 0, len(ds)), done: make(chan struct{}), lead: make(chan struct{})}
	for _, d := range ds {
		var status Status
		switch d.Result.Status {
		case payment.StatusApproved:
			status = StatusApproved
		case payment.StatusDeclined:
			status = StatusDeclined
		default:
			return fmt.Errorf("complete purchase %s: unknown bank status %q", d.ID, d.Result.Status)
		}
		c.items = append(c.items, decided{id: d.ID, status: string(status), reason: string(d.Result.Reason),
			processed: d.Result.ProcessedAt})
	}
	if len(c.items) == 0 {
		return nil
	}
	q := &r.done
	q.mu.Lock()
	q.queue = append(q.queue, c)
	if q.writing {
		q.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-c.lead:
		}
		q.mu.Lock()
	}
	q.writing = true
	n, items := 0, 0 // whole calls, up to maxCompleteBatch outcomes (at least one call)
	for n < len(q.queue) && (n == 0 || items+len(q.queue[n].items) <= maxCompleteBatch) {
		items += len(q.queue[n].items)
		n++
	}
	batch := q.queue[:n]
	q.queue = q.queue[n:]
	q.mu.Unlock()

	err := r.completeBatch(ctx, batch, items)
	for _, b := range batch {
		b.err = err
		close(b.done)
	}
	q.mu.Lock()
	if len(q.queue) > 0 {
		close(q.queue[0].lead) // the next writer
	} else {
		q.writing = false
		q.queue = nil
	}
	q.mu.Unlock()
	return err
}

func (r *Repository) completeBatch(ctx context.Context, batch []*completion, n int) error {
	ids := make([]string, 0, n) // text, cast in SQL: also right in the simple protocol (PgBouncer)
	statuses := make([]string, 0, n)
	reasons := make([]string, 0, n)
	processed := make([]time.Time, 0, n)
	for _, c := range batch {
		for _, d := range c.items {
			ids = append(ids, uuid.UUID(d.id).String())
			statuses, reasons, processed = append(statuses, d.status), append(reasons, d.reason),
				append(processed, d.processed)
		}
	}
	if _, err := r.db.ConnPool.ExecContext(ctx, completeBatchSQL, ids, statuses, reasons, processed); err != nil {
		if len(ids) == 1 {
			return fmt.Errorf("complete purchase %s: %w", ids[0], err)
		}
		return fmt.Errorf("complete %d purchases (%s, …): %w", len(ids), ids[0], err)
	}
	return nil
}

// Reject dead-letters a purchase the Bank refused (a permanent 4xx): it is never sent again.
func (r *Repository) Reject(ctx context.Context, id uuid.UUID, code, msg string) error {
	return r.exec(ctx, "reject purchase", completeSQL, map[string]any{
		"id": id, "status": string(StatusRejected), "reason": "", "code": truncate(code, 64),
		"error": truncate(msg, 500), "processed": (*time.Time)(nil),
	})
}

// retrySQL schedules the next send of a claimed purchase after a failed one and counts the attempt.
const retrySQL = `
WITH o AS (
    UPDATE outbox SET next_attempt_at = now() + @delay_us * interval '1 microsecond', claim_token = NULL,
                      claimed_by = NULL
    WHERE purchase_id = @id AND claim_token = @token
)
UPDATE purchases SET attempts = attempts + 1, last_error = @error, updated_at = now()
WHERE id = @id AND status = 'pending'`

// Retry records a failed send of a claimed purchase and makes it due again after delay (unless the claim
// was lost meanwhile: then its new holder decides).
func (r *Repository) Retry(ctx context.Context, c Claim, delay time.Duration, cause string) error {
	return r.exec(ctx, "schedule retry", retrySQL, map[string]any{
		"id": c.Tx.ID, "token": c.Token, "delay_us": delay.Microseconds(), "error": truncate(cause, 500),
	})
}

// Release gives back a claimed purchase that was not sent; it is due again after delay.
func (r *Repository) Release(ctx context.Context, c Claim, delay time.Duration) error {
	return r.exec(ctx, "release claim", `
UPDATE outbox SET next_attempt_at = now() + @delay_us * interval '1 microsecond', claim_token = NULL,
                  claimed_by = NULL
WHERE purchase_id = @id AND claim_token = @token`, map[string]any{
		"id": c.Tx.ID, "token": c.Token, "delay_us": delay.Microseconds(),
	})
}

// NextDue returns how long until the next outbox row comes due (≤ 0: one is due now); ok is false when the
// outbox is empty.
func (r *Repository) NextDue(ctx context.Context) (d time.Duration, ok bool, err error) {
	var secs *float64
	if err := r.db.WithContext(ctx).Raw(
		`SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - now())::float8 FROM outbox`).Scan(&secs).Error; err != nil {
		return 0, false, fmt.Errorf("read next due time: %w", err)
	}
	if secs == nil {
		return 0, false, nil
	}
	return time.Duration(*secs * float64(time.Second)), true, nil
}

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
