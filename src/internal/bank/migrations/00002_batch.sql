-- +goose Up
-- The batch statement (processBatchSQL in ledger.go) calls this when a concurrent request recorded one of its
-- ids between the statement's snapshot and its insert: its decisions may then rest on a debit that did not
-- happen, so it fails as a serialization failure (the whole statement rolls back) and the Bank runs it again.
-- +goose StatementBegin
CREATE FUNCTION bank_batch_raced() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bank batch: a concurrent request recorded one of the batch''s ids first; run it again'
        USING ERRCODE = 'serialization_failure';
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION bank_batch_raced();
