-- +goose Up
-- Redrives: one row per dead-lettered purchase sent again by `store redrive`, written in the statement that
-- makes it pending again: who was rejected with what, and when it was redriven. The purchase keeps its id, so
-- the Bank's idempotency makes a redrive safe whatever the Bank holds.
CREATE TABLE redrives (
    purchase_id uuid        NOT NULL REFERENCES purchases (id),
    error_code  text        NOT NULL,
    last_error  text        NOT NULL,
    redriven_at timestamptz NOT NULL,
    PRIMARY KEY (purchase_id, redriven_at)
);

-- +goose Down
DROP TABLE redrives;
