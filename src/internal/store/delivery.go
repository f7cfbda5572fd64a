// Delivery bookkeeping: the Bank's decisions and dead letters recorded on purchases, in group commits.

package store

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/internal/payment"
)

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

// Redriven is a dead-lettered purchase made pending again by Redrive: what the Bank had rejected it with.
type Redriven struct {
	ID         uuid.UUID `json:"purchase_id"`
	ErrorCode  string    `json:"error_code"`
	LastError  string    `json:"last_error"`
	RedrivenAt time.Time `json:"redriven_at"`
}

// redriveSQL makes dead-lettered purchases ($1, or all when NULL) pending again with a new outbox row, and
// records each in redrives, in ONE statement: the relays send them again, with the same ids (the Bank's
// idempotency key), so a purchase the Bank did apply gets its stored answer. Purchases that are not
// rejected are left alone: redriving twice sends nothing twice.
const redriveSQL = `
WITH dead AS (
    SELECT id, error_code, last_error FROM purchases
    WHERE status = 'rejected' AND ($1::uuid IS NULL OR id = $1::uuid)
    ORDER BY id
    FOR UPDATE
), p AS (
    UPDATE purchases p SET status = 'pending', error_code = '', processed_at = NULL, completed_at = NULL,
                           updated_at = now()
    FROM dead WHERE p.id = dead.id
    RETURNING p.id
), o AS (
    INSERT INTO outbox (purchase_id, created_at, next_attempt_at) SELECT id, now(), now() FROM p
), h AS (
    INSERT INTO redrives (purchase_id, error_code, last_error, redriven_at)
    SELECT id, error_code, last_error, now() FROM dead
)
SELECT id::text, error_code, last_error, now() FROM dead ORDER BY id`

// Redrive makes the dead-lettered purchase id (all of them when id is nil) pending again, to be sent again
// by the relays, and returns what it redrove. A purchase that is not dead-lettered is left alone (none
// returned); an unknown id is ErrNotFound.
func (r *Repository) Redrive(ctx context.Context, id *uuid.UUID) ([]Redriven, error) {
	var arg any
	if id != nil {
		arg = id.String()
	}
	rows, err := r.db.ConnPool.QueryContext(ctx, redriveSQL, arg)
	if err != nil {
		return nil, fmt.Errorf("redrive: %w", err)
	}
	defer rows.Close()
	var out []Redriven
	for rows.Next() {
		var d Redriven
		if err := rows.Scan(&d.ID, &d.ErrorCode, &d.LastError, &d.RedrivenAt); err != nil {
			return nil, fmt.Errorf("redrive: %w", err)
		}
		d.RedrivenAt = d.RedrivenAt.UTC()
		out = append(out, d)
	}
	if err := rows.Close(); err != nil { // the commit
		return nil, fmt.Errorf("redrive: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("redrive: %w", err)
	}
	if len(out) == 0 && id != nil {
		if _, err := r.Get(ctx, *id); err != nil {
			return nil, fmt.Errorf("redrive %s: %w", id, err)
		}
	}
	r.created()
	return out, nil
}
