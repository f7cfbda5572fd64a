-- +goose Up
-- Accounts: the balance can never go negative; initial_balance is what the account was seeded with, so an
-- audit can prove balance = initial_balance - approved debits.
CREATE TABLE accounts (
    id              text        PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$'),
    currency        char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance         bigint      NOT NULL CHECK (balance >= 0),
    initial_balance bigint      NOT NULL CHECK (initial_balance >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Transactions: one row per id (the idempotency key), whatever the decision. No foreign key to accounts: a
-- transaction for an unknown account is recorded as declined.
CREATE TABLE transactions (
    id           uuid        PRIMARY KEY,
    store_id     text        NOT NULL CHECK (store_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    account_id   text        NOT NULL CHECK (account_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    amount       bigint      NOT NULL CHECK (amount BETWEEN 1 AND 1000000000),
    currency     char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at   timestamptz NOT NULL,
    status       text        NOT NULL CHECK (status IN ('approved', 'declined')),
    reason       text        NOT NULL DEFAULT '' CHECK (
        (status = 'approved' AND reason = '') OR
        (status = 'declined' AND reason IN ('insufficient_funds', 'unknown_account', 'currency_mismatch'))),
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX transactions_account_id_idx ON transactions (account_id);

-- +goose Down
DROP TABLE transactions;
DROP TABLE accounts;
