-- +goose Up
-- The identity of the caller that created each transaction (its SPIFFE ID or certificate subject, or
-- "anonymous" on a Bank without an identity source): only that caller may replay or read it. '' is a row
-- whose caller is unknown — recorded before this migration, or during a rolling upgrade by a Bank that
-- predates it (hence the default: its inserts name no caller and must keep working) — and stays readable by
-- every allowed caller. Adding a column with a constant default rewrites nothing.
ALTER TABLE transactions ADD COLUMN caller text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE transactions DROP COLUMN caller;
