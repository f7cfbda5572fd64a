package postgres

import (
	"context"
	"database/sql"
	"fmt"
)

// DurableSQL is the durability barrier: a transaction that writes WAL under a transaction id — here a
// transactional logical-decoding message, the smallest such write, allowed to any role — commits with a
// commit record, and with synchronous replication that commit waits until a synchronous standby has the WAL
// up to it: every commit visible before it is replicated too. (An id alone is not enough: a transaction
// that wrote no WAL does not wait, pg_current_xact_id() included.)
//
// Why it is needed: PostgreSQL makes a commit that is waiting for its synchronous standby visible on the
// primary when the wait is cancelled or its client goes away ("the transaction has already committed locally
// and might not have been replicated"). On a primary cut off from its standbys that is a row no failover
// keeps. Whoever confirms such a row to someone else (the Store's relay sending a purchase to the Bank, a
// replay answering "already done") must first pass the barrier, or it confirms what may vanish. The e2e
// found it: a node holding both primaries cut off left Bank transactions the Store no longer knew.
const DurableSQL = "SELECT pg_logical_emit_message(true, 'txmesh.durable', '')::text"

// WaitDurable runs the barrier on db in a transaction of its own. An error — including ctx ending while it
// waits, which PostgreSQL reports only as a warning — means the rows read before it may not be durable.
func WaitDurable(ctx context.Context, db interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) error {
	var lsn string
	if err := db.QueryRowContext(ctx, DurableSQL).Scan(&lsn); err != nil {
		return fmt.Errorf("wait for the synchronous standby: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("wait for the synchronous standby: %w", err)
	}
	return nil
}
