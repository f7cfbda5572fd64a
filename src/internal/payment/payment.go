// Package payment is the contract between the Store and the Bank: the transaction a Store sends, the result the
// Bank returns, their JSON wire format and the validation rules both sides apply.
package payment

import (
	"strings"
	"time"

	"github.com/google/uuid"
)

// Status is the Bank's decision on a transaction.
type Status string

// Statuses.
const (
	StatusApproved Status = "approved"
	StatusDeclined Status = "declined"
)

// Reason explains a decline; it is empty for an approval.
type Reason string

// Decline reasons.
const (
	ReasonNone              Reason = ""
	ReasonInsufficientFunds Reason = "insufficient_funds"
	ReasonUnknownAccount    Reason = "unknown_account"
	ReasonCurrencyMismatch  Reason = "currency_mismatch"
)

// Amount limits, in minor units.
const (
	MinAmount int64 = 1
	MaxAmount int64 = 1_000_000_000
)

// MaxBodyBytes is the largest request body the APIs accept.
const MaxBodyBytes = 16 << 10

// IdempotencyHeader carries the transaction id on requests to the Bank.
const IdempotencyHeader = "Idempotency-Key"

// Transaction is a payment a Store asks the Bank to apply. Its ID is the idempotency key.
type Transaction struct {
	ID        uuid.UUID `json:"id"`
	StoreID   string    `json:"store_id"`
	AccountID string    `json:"account_id"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	CreatedAt time.Time `json:"created_at"`
}

// Result is the Bank's answer for one transaction.
type Result struct {
	ID          uuid.UUID `json:"id"`
	Status      Status    `json:"status"`
	Reason      Reason    `json:"reason"`
	ProcessedAt time.Time `json:"processed_at"`
}

// Record is a stored transaction with its result, as GET /v1/transactions/{id} returns it.
type Record struct {
	Transaction
	Status      Status    `json:"status"`
	Reason      Reason    `json:"reason"`
	ProcessedAt time.Time `json:"processed_at"`
}

// Result returns the result part of a record.
func (r Record) Result() Result {
	return Result{ID: r.ID, Status: r.Status, Reason: r.Reason, ProcessedAt: r.ProcessedAt}
}

// Account is a Bank account as GET /v1/accounts/{id} returns it.
type Account struct {
	ID       string `json:"id"`
	Currency string `json:"currency"`
	Balance  int64  `json:"balance"`
}

// CanaryAccountPrefix starts the id of every canary account (CANARY-000001, …): accounts the Bank's seed
// creates for Flagger's acceptance and load tests alone, so that canary traffic never spends a customer's
// money and audits can count it apart. Customer accounts never carry it.
const CanaryAccountPrefix = "CANARY-"

// IsCanaryAccount reports whether id is a canary account's.
func IsCanaryAccount(id string) bool { return strings.HasPrefix(id, CanaryAccountPrefix) }

// ValidIdentifier reports whether s is a valid store or account id: 1–64 chars of [A-Za-z0-9._-]
// (^[A-Za-z0-9._-]{1,64}$, the database's CHECK; a loop, not a regexp: it runs twice per request).
func ValidIdentifier(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Normalize puts a transaction in the canonical form the Bank stores: created_at in UTC with microsecond
// precision (PostgreSQL's), so that a replay compares equal to what was stored.
func (t Transaction) Normalize() Transaction {
	t.CreatedAt = t.CreatedAt.UTC().Round(time.Microsecond)
	return t
}

// SameFields reports whether two transactions carry the same fields once normalized.
func (t Transaction) SameFields(o Transaction) bool {
	a, b := t.Normalize(), o.Normalize()
	return a.ID == b.ID && a.StoreID == b.StoreID && a.AccountID == b.AccountID && a.Amount == b.Amount &&
		a.Currency == b.Currency && a.CreatedAt.Equal(b.CreatedAt)
}
