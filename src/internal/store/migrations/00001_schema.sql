-- +goose Up
-- Purchases: one row per purchase the Store accepted. The id is the transaction id the Bank receives (and its
-- idempotency key). status moves once, from pending to approved/declined (the Bank's decision) or rejected
-- (the Bank refused the request itself: dead letter, never retried).
CREATE TABLE purchases (
    id              uuid        PRIMARY KEY,
    store_id        text        NOT NULL CHECK (store_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    account_id      text        NOT NULL CHECK (account_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    amount          bigint      NOT NULL CHECK (amount BETWEEN 1 AND 1000000000),
    currency        char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    source          text        NOT NULL CHECK (source IN ('api', 'generator')),
    -- The client's Idempotency-Key of POST /v1/purchases, when it sent one.
    idempotency_key text        UNIQUE,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'approved', 'declined', 'rejected')),
    reason          text        NOT NULL DEFAULT '',  -- the Bank's decline reason
    error_code      text        NOT NULL DEFAULT '',  -- the Bank's error code of a rejection
    last_error      text        NOT NULL DEFAULT '',  -- the last delivery failure
    attempts        integer     NOT NULL DEFAULT 0,   -- sends to the Bank whose outcome was recorded
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    processed_at    timestamptz,                      -- the Bank's processed_at
    completed_at    timestamptz,                      -- when the Store recorded the outcome
    CHECK ((status = 'pending') = (completed_at IS NULL))
);

CREATE INDEX purchases_status_idx ON purchases (status);

-- Outbox: one row per purchase still to deliver, written in the same transaction as the purchase and deleted
-- in the same statement that records the outcome. A relay claims due rows (FOR UPDATE SKIP LOCKED) by moving
-- next_attempt_at forward by its lease and stamping claim_token; a crashed relay's claims come due again
-- when the lease ends.
CREATE TABLE outbox (
    purchase_id     uuid        PRIMARY KEY REFERENCES purchases (id),
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    claim_token     uuid,
    claimed_by      text
);

CREATE INDEX outbox_next_attempt_at_idx ON outbox (next_attempt_at);

-- +goose Down
DROP TABLE outbox;
DROP TABLE purchases;
