// Purchases: what a purchase is, creating one (group commit, ride-through, idempotency keys) and reading it.

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
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

// NewPurchase is a purchase to create.
type NewPurchase struct {
	AccountID string
	Amount    int64
	Currency  string
	Source    Source
	// IdempotencyKey, when not empty, makes Create idempotent: the same key returns the purchase it created.
	IdempotencyKey string
	// ID is the new purchase's id (NewID); a new one when zero.
	ID uuid.UUID
}

// createSQL writes purchases and their outbox rows in ONE statement, hence one transaction: a purchase is
// never stored without the row that gets it delivered. A purchase whose idempotency key was used already
// inserts nothing (a concurrent insert with the same key waits for the first one to commit, then inserts
// nothing); the ids returned are those inserted, with the transaction's id and backend (resolve). The
// purchases are inserted in key order, so two statements (of two Store replicas) holding the same new keys
// wait for each other in one order, never in a cycle; the ids are new UUIDv7s and never conflict.
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
    SELECT id, now(), now() FROM p -- the database's clock: the backlog's age must not depend on a pod's
)
SELECT id::text, pg_current_xact_id()::text, pg_backend_pid() FROM p`

// maxCreateBatch bounds one createSQL; createTimeout bounds a creation whose context has no deadline.
const (
	maxCreateBatch = 256
	createTimeout  = 10 * time.Second
)

// ResolveBudget is the part of a creation's time kept to learn the outcome of a commit that failed
// unanswered (resolve) and to pass the durability barrier: the statement must end that much before the
// caller's deadline (a quarter of the time left, when less). answerMargin is kept from resolve's end to the
// deadline, so that the writer's answer reaches its callers before they stop waiting.
const (
	ResolveBudget = 2 * time.Second
	answerMargin  = 50 * time.Millisecond
)

// ErrUnconfirmed is a purchase that is or may become committed while the Store cannot confirm it durable:
// neither a 202 (it may still vanish, or not exist yet) nor a 503 (it may exist). See UnconfirmedError.
var ErrUnconfirmed = errors.New("purchase not confirmed")

// UnconfirmedError is ErrUnconfirmed for one purchase: the API's 504 with its id.
type UnconfirmedError struct {
	ID uuid.UUID
	// Committed: the purchase is committed on the primary, its synchronous standby has not confirmed it
	// (yet). Otherwise its commit's outcome is unknown: the database did not say within the deadline.
	Committed bool
	Err       error
}

func (e *UnconfirmedError) Error() string {
	if e.Committed {
		return fmt.Sprintf("purchase %s committed, not confirmed durable: %v", e.ID, e.Err)
	}
	return fmt.Sprintf("purchase %s: outcome of its commit unknown: %v", e.ID, e.Err)
}

func (e *UnconfirmedError) Unwrap() []error { return []error{ErrUnconfirmed, e.Err} }

// unconfirmed returns err as an UnconfirmedError about id when it is one (the creator's errors carry no id).
func unconfirmed(err error, id uuid.UUID) error {
	var u *UnconfirmedError
	if !errors.As(err, &u) {
		return err
	}
	cp := *u
	cp.ID = id
	return &cp
}

// creator coalesces concurrent Create calls into createSQL statements — group commit, as completer does
// for outcomes — with up to createWriters statements in flight: a caller queues its purchase and, when a
// writer's slot is free, starts a writer, which writes what is queued at once; callers arriving while every
// slot is busy queue up, and a writer that finishes writes the queue next. At low load a statement holds one
// purchase and nobody waits; under load each statement and its (synchronously replicated) commit accept
// many purchases, and while one waits for the standby the next is already being written
// (docs/performance.md). Each caller learns its purchase's outcome, the statement's: committed and durable,
// not committed (nothing written for anyone), or unconfirmed (UnconfirmedError). A caller still queued at its
// statement deadline leaves the queue (not written), and one whose statement has not ended by its deadline
// stops waiting (unconfirmed): a standby that stops answering never holds a caller past its deadline, and
// the writers' connections are bounded (createWriters) whatever the load.
type creator struct {
	mu      sync.Mutex
	queue   []*creation
	writers int
}

// createWriters bounds the createSQL statements in flight.
const createWriters = 4

// creation is one caller's purchase.
type creation struct {
	tx      payment.Transaction
	source  Source
	key     string
	writeBy time.Time // its statement must end by then
	hard    time.Time // its outcome is due by then: the caller's deadline
	// inserted and err are set before done closes.
	inserted bool
	err      error
	done     chan struct{}
}

// errNotWritten marks a creation that never reached a statement: nothing of it was written.
var errNotWritten = errors.New("not written")

// insert writes a purchase through the creator; false when the idempotency key was taken (nothing written).
func (r *Repository) insert(ctx context.Context, tx payment.Transaction, in NewPurchase) (bool, error) {
	hard, ok := ctx.Deadline()
	if !ok {
		hard = time.Now().Add(max(createTimeout, r.rideThrough+ResolveBudget+2*time.Second))
	}
	c := &creation{tx: tx, source: in.Source, key: in.IdempotencyKey, hard: hard,
		writeBy: hard.Add(-min(ResolveBudget, time.Until(hard)/4)), done: make(chan struct{})}
	q := &r.adds
	q.mu.Lock()
	q.queue = append(q.queue, c)
	if q.writers < createWriters {
		q.writers++
		go r.write()
	}
	q.mu.Unlock()

	t := time.NewTimer(time.Until(c.writeBy))
	defer t.Stop()
	select {
	case <-c.done:
		return c.inserted, c.err
	case <-t.C:
	case <-ctx.Done():
	}
	q.mu.Lock()
	if i := slices.Index(q.queue, c); i >= 0 {
		q.queue = slices.Delete(q.queue, i, i+1)
		q.mu.Unlock()
		err := ctx.Err()
		if err == nil {
			err = context.DeadlineExceeded
		}
		return false, fmt.Errorf("%w: queued behind %d statements until its deadline: %w", errNotWritten,
			createWriters, err)
	}
	q.mu.Unlock()
	t.Reset(time.Until(c.hard))
	select {
	case <-c.done:
		return c.inserted, c.err
	case <-t.C:
		return false, &UnconfirmedError{Err: errors.New("its statement had not ended at the deadline")}
	}
}

// write is a writer: it writes the queue, a batch per statement, until it is empty.
func (r *Repository) write() {
	q := &r.adds
	for {
		q.mu.Lock()
		n := min(len(q.queue), maxCreateBatch)
		if n == 0 {
			q.writers--
			q.queue = nil
			q.mu.Unlock()
			return
		}
		taken := slices.Clone(q.queue[:n])
		q.queue = q.queue[n:]
		q.mu.Unlock()

		// A purchase whose statement deadline is (nearly) over is not written: it would cut the others' short.
		batch := taken[:0]
		soon := time.Now().Add(answerMargin)
		for _, c := range taken {
			if c.writeBy.Before(soon) {
				c.err = fmt.Errorf("%w: its deadline came before a statement: %w", errNotWritten, context.DeadlineExceeded)
				close(c.done)
				continue
			}
			batch = append(batch, c)
		}
		if len(batch) == 0 {
			continue
		}
		writeBy, hard := batch[0].writeBy, batch[0].hard
		for _, c := range batch[1:] {
			writeBy, hard = minTime(writeBy, c.writeBy), minTime(hard, c.hard)
		}
		err := r.writeBatch(writeBy, hard, batch)
		for _, c := range batch {
			c.err = err
			c.inserted = c.inserted && err == nil
			close(c.done)
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// writeBatch writes batch: its statement ends by writeBy, its outcome is known by hard (or unconfirmed).
//
// It retries with backoff while the database is unavailable, for up to the ride-through: a switchover (a
// drain's planned primary change, a restart in place) makes a slower answer rather than a 503, and longer
// outages still fail the purchase instead of holding its client. A retry is safe: the ids are the same, and
// an attempt is retried only when it provably did not commit.
//
// A commit that failed unanswered (deadline while waiting for the synchronous standby, connection lost
// during COMMIT) is resolved by its transaction id (resolve): committed — then the barrier must confirm it
// durable (postgres.WaitDurable) — or not committed, or unknown by hard: UnconfirmedError.
func (r *Repository) writeBatch(writeBy, hard time.Time, batch []*creation) error {
	ctx, cancel := context.WithDeadline(context.Background(), writeBy)
	defer cancel()
	until := time.Now().Add(r.rideThrough)
	wait := 100 * time.Millisecond
	for {
		err := r.insertBatch(ctx, batch)
		var u *uncertainCommit
		if errors.As(err, &u) {
			rctx, rcancel := context.WithDeadline(context.Background(), hard.Add(-answerMargin))
			committed, known := r.resolve(rctx, u)
			switch {
			case !known:
				rcancel()
				return &UnconfirmedError{Err: u.err}
			case committed:
				derr := r.durable.wait(rctx, r.sqlDB)
				rcancel()
				if derr != nil {
					return &UnconfirmedError{Committed: true, Err: derr}
				}
				return nil
			}
			rcancel()
			err = u.err // not committed: as a failed statement
		}
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

// uncertainCommit is a COMMIT that failed without an answer: the transaction xid (xid8), on backend pid,
// which inserted purchase id (and the batch's others), may or may not have committed.
type uncertainCommit struct {
	xid string
	pid int64
	id  string
	err error
}

func (u *uncertainCommit) Error() string {
	return fmt.Sprintf("commit of transaction %s unanswered: %v", u.xid, u.err)
}

func (u *uncertainCommit) Unwrap() error { return u.err }

// insertBatch runs createSQL for batch in a transaction and marks the purchases it inserted. Arrays of
// text, cast in SQL: also right in the simple protocol (PgBouncer). The transaction is explicit because its
// rows (the inserted ids, its transaction id and backend) must arrive before its COMMIT is sent: an
// autocommit statement's rows reach the client only after its commit — after the synchronous standby's
// confirmation, or never when that wait fails. BEGIN travels with the statement (one round trip, COMMIT the
// second). An error before COMMIT means nothing was committed; a COMMIT that fails is an *uncertainCommit.
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
	conn, err := r.sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c := dc.(*stdlib.Conn).Conn()
		u := uncertainCommit{}
		b := &pgx.Batch{}
		b.Queue("BEGIN")
		b.Queue(createSQL, ids, accounts, amounts, currencies, sources, keys, created, r.storeID)
		err := func() error {
			br := c.SendBatch(ctx, b)
			defer br.Close()
			if _, err := br.Exec(); err != nil {
				return err
			}
			rows, err := br.Query()
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				if err := rows.Scan(&id, &u.xid, &u.pid); err != nil {
					rows.Close()
					return err
				}
				if c := at[id]; c != nil {
					c.inserted = true
					u.id = id
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			return br.Close()
		}()
		if err != nil {
			// Not committed. A connection still in the transaction would hold its rows' locks until the pool
			// drops it: roll back now (a broken one is closed already).
			if !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
				if _, rerr := c.Exec(rctx, "ROLLBACK"); rerr != nil {
					_ = c.PgConn().Close(rctx)
				}
				cancel()
			}
			return err
		}
		tag, err := c.Exec(ctx, "COMMIT")
		if err == nil && tag.String() != "COMMIT" {
			return fmt.Errorf("commit answered %q", tag.String()) // rolled back: nothing committed
		}
		if err != nil {
			if u.id == "" {
				return err // it inserted nothing: whatever became of it, nothing was written
			}
			u.err = err
			return &u
		}
		return nil
	})
}

// resolveSQL tells what became of transaction $1 (xid8), which inserted purchase $2 on backend $3 ($4: the
// transaction's 32-bit xid, as pg_stat_activity shows it): its commit status, whether the purchase is
// visible, whether that backend still runs that transaction (e.g. waiting for the synchronous standby).
const resolveSQL = `
SELECT pg_xact_status($1::xid8)::text,
       EXISTS (SELECT 1 FROM purchases WHERE id = $2::uuid),
       EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $3 AND backend_xid::text = $4)`

// resolve learns whether u committed, asking the database on another connection until ctx ends (known false
// then). The purchase visible: committed. The transaction still on its backend — waiting for the
// synchronous standby, whose wait its client's lost connection may not end for long — the backend is
// terminated, which ends the wait (PostgreSQL then makes the commit visible on the primary alone: "committed
// locally") or aborts a transaction whose COMMIT never arrived, and it asks again. Aborted, or not visible
// twice in a row with its backend gone (a transaction id of another timeline, after a failover, may even
// read "committed"), or an id this server never assigned: not committed.
func (r *Repository) resolve(ctx context.Context, u *uncertainCommit) (committed, known bool) {
	x, err := strconv.ParseUint(u.xid, 10, 64)
	if err != nil {
		return false, false
	}
	xid32 := strconv.FormatUint(x&0xffff_ffff, 10)
	wait, gone := 10*time.Millisecond, 0
	for {
		var status sql.NullString
		var visible, running bool
		err := r.sqlDB.QueryRowContext(ctx, resolveSQL, u.xid, u.id, u.pid, xid32).Scan(&status, &visible, &running)
		var pgErr *pgconn.PgError
		switch {
		case err == nil && visible:
			return true, true
		case err == nil && running:
			gone = 0
			_, _ = r.sqlDB.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
				WHERE pid = $1 AND backend_xid::text = $2`, u.pid, xid32)
		case err == nil && status.String == "in progress":
			gone = 0 // between its backend and the end of its commit: ask again
		case err == nil:
			if gone++; status.String == "aborted" || gone == 2 {
				return false, true
			}
		case errors.As(err, &pgErr) && pgErr.Code == "22023": // "transaction ID … is in the future"
			return false, true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, false
		case <-t.C:
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// barrier coalesces durability barriers (postgres.WaitDurable): however many callers wait for the
// synchronous standby's confirmation, one barrier at a time holds a connection. A caller waits for the
// next round — one that starts after it asked, so that it covers every commit the caller saw — and rounds
// follow each other while callers wait.
type barrier struct {
	mu      sync.Mutex
	next    *round
	running bool
}

type round struct {
	done chan struct{}
	err  error
}

// barrierTimeout bounds one round: while the standby is away a round fails then, and the next starts.
const barrierTimeout = 30 * time.Second

// wait returns once a barrier that started after the call has passed, with its error, or ctx's.
func (b *barrier) wait(ctx context.Context, db *sql.DB) error {
	b.mu.Lock()
	if b.next == nil {
		b.next = &round{done: make(chan struct{})}
	}
	r := b.next
	if !b.running {
		b.running = true
		go b.run(db)
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("wait for the synchronous standby: %w", ctx.Err())
	}
}

func (b *barrier) run(db *sql.DB) {
	for {
		b.mu.Lock()
		r := b.next
		b.next = nil
		if r == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), barrierTimeout)
		r.err = postgres.WaitDurable(ctx, db)
		cancel()
		close(r.done)
	}
}

// Create stores a new pending purchase with its outbox row (with in.ID, or a new id). It returns
// created=false with the existing purchase when the idempotency key was used before for the same account,
// amount and currency, and ErrConflict when it was used for different ones. Invalid fields are a
// *payment.ValidationError. A purchase that is or may be committed but is not confirmed durable within
// ctx's deadline (its synchronous standby gone) is an *UnconfirmedError naming it; any other error means
// nothing was written.
func (r *Repository) Create(ctx context.Context, in NewPurchase) (Purchase, bool, error) {
	id := in.ID
	if id == uuid.Nil {
		var err error
		if id, err = NewID(); err != nil {
			return Purchase{}, false, err
		}
	}
	tx := payment.Transaction{ID: id, StoreID: r.storeID, AccountID: in.AccountID, Amount: in.Amount,
		Currency: in.Currency, CreatedAt: r.now()}.Normalize()
	if err := tx.Validate(); err != nil {
		return Purchase{}, false, err
	}
	inserted, err := r.insert(ctx, tx, in)
	if err != nil {
		return Purchase{}, false, fmt.Errorf("create purchase: %w", unconfirmed(err, tx.ID))
	}
	if inserted {
		r.created()
		return Purchase{ID: tx.ID, StoreID: tx.StoreID, AccountID: tx.AccountID, Amount: tx.Amount,
			Currency: tx.Currency, Source: in.Source, Status: StatusPending, CreatedAt: tx.CreatedAt,
			UpdatedAt: tx.CreatedAt, NextAttemptAt: &tx.CreatedAt}, true, nil
	}
	if in.IdempotencyKey == "" {
		// Not inserted without a key: its id was there already — an attempt of this very call committed.
		p, err := r.get(ctx, "p.id = ?", tx.ID)
		if err != nil {
			return Purchase{}, false, &UnconfirmedError{ID: tx.ID, Committed: true, Err: err}
		}
		if err := r.durable.wait(ctx, r.sqlDB); err != nil {
			return Purchase{}, false, &UnconfirmedError{ID: p.ID, Committed: true, Err: err}
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
	// A replay answers 202 as the first request did: the purchase must be as durable as that 202 promises.
	// Until then it exists (on the primary) unconfirmed: not a 503.
	if err := r.durable.wait(ctx, r.sqlDB); err != nil {
		return Purchase{}, false, &UnconfirmedError{ID: p.ID, Committed: true, Err: err}
	}
	if p.ID == tx.ID { // this call's own purchase (an attempt committed unanswered)
		r.created()
		return p, true, nil
	}
	return p, false, nil
}

// NewID returns a new purchase id: a UUIDv7, time-ordered, so inserts stay at the right edge of the primary
// key indexes.
func NewID() (uuid.UUID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.Nil, fmt.Errorf("new purchase id: %w", err)
	}
	return id, nil
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
