// The outbox: leasing due purchases to relays, retries, releases and the backlog.

package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// Backlog is the outbox's size, the age of its oldest purchase (0 when empty) and the dead letters
// (purchases the Bank rejected, until redriven).
type Backlog struct {
	Size        int64
	OldestAge   time.Duration
	DeadLetters int64
}

// Backlog measures the outbox.
func (r *Repository) Backlog(ctx context.Context) (Backlog, error) {
	var row struct {
		N    int64
		Age  float64
		Dead int64
	}
	err := r.db.WithContext(ctx).Raw(`
SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age,
       (SELECT count(*) FROM purchases WHERE status = 'rejected') AS dead
FROM outbox`).Scan(&row).Error
	if err != nil {
		return Backlog{}, fmt.Errorf("measure outbox: %w", err)
	}
	return Backlog{Size: row.N, OldestAge: time.Duration(max(row.Age, 0) * float64(time.Second)),
		DeadLetters: row.Dead}, nil
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
