package payment

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ValidationError is bad input: a message and, when a field is at fault, a message per field.
type ValidationError struct {
	Message string
	Fields  map[string]string
}

func (e *ValidationError) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+e.Fields[k])
	}
	return e.Message + " (" + strings.Join(parts, "; ") + ")"
}

// Fields collects field-level errors while a request is decoded.
type Fields map[string]string

// Add records the first error for a field.
func (f Fields) Add(field, msg string) {
	if _, ok := f[field]; !ok {
		f[field] = msg
	}
}

// Err returns a ValidationError when any field failed, nil otherwise.
func (f Fields) Err() error {
	if len(f) == 0 {
		return nil
	}
	return &ValidationError{Message: "invalid fields", Fields: f}
}

// DecodeObject reads one JSON object whose keys must all be in allowed, and returns its members undecoded.
// Malformed JSON, trailing data, duplicate keys and unknown keys are validation errors.
func DecodeObject(r io.Reader, allowed ...string) (map[string]json.RawMessage, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err // the caller maps body-size errors
	}
	if members, ok := scanObject(data, allowed); ok {
		return members, nil
	}
	return decodeObject(data, allowed)
}

// scanObject is DecodeObject's fast path for what clients send: a valid JSON object whose keys are distinct,
// unescaped and all allowed. It slices the members out of data without json.Decoder's per-token allocations
// (the Bank's request decoding cost halves, see docs/performance.md). Anything else returns ok=false and
// decodeObject, the general decoder, gives the answer and its exact error message; a fuzz test proves the
// two agree.
func scanObject(data []byte, allowed []string) (map[string]json.RawMessage, bool) {
	if !json.Valid(data) {
		return nil, false
	}
	return scanValid(data, allowed)
}

// scanValid is scanObject for data known to be one valid JSON value with optional surrounding whitespace
// (an element of a batch DecodeBatch accepted: validated once, with the whole body).
func scanValid(data []byte, allowed []string) (map[string]json.RawMessage, bool) {
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return nil, false
	}
	members := make(map[string]json.RawMessage, len(allowed))
	if i = skipSpace(data, i+1); data[i] == '}' {
		return members, true
	}
	for {
		end := i + 1 // data[i] is the key's opening quote
		for data[end] != '"' {
			if data[end] == '\\' {
				return nil, false // an escaped key: the general decoder unescapes it
			}
			end++
		}
		name := ""
		for _, a := range allowed {
			if string(data[i+1:end]) == a {
				name = a
				break
			}
		}
		if _, dup := members[name]; name == "" || dup {
			return nil, false // unknown or duplicate: the general decoder reports it
		}
		i = skipSpace(data, skipSpace(data, end+1)+1) // past the colon
		end = valueEnd(data, i)
		members[name] = json.RawMessage(data[i:end:end])
		if i = skipSpace(data, end); data[i] == '}' {
			return members, true
		}
		i = skipSpace(data, i+1) // past the comma
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the valid JSON value starting at data[i].
func valueEnd(data []byte, i int) int {
	depth := 0
	for j := i; j < len(data); j++ {
		switch c := data[j]; c {
		case '"':
			for j++; data[j] != '"'; j++ {
				if data[j] == '\\' {
					j++
				}
			}
			if depth == 0 {
				return j + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j
			}
			if depth--; depth == 0 {
				return j + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return j
			}
		}
	}
	return len(data)
}

// decodeObject is the general decoder behind DecodeObject.
func decodeObject(data []byte, allowed []string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, &ValidationError{Message: "malformed JSON: " + jsonErrText(err)}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &ValidationError{Message: "request body must be a JSON object"}
	}
	members := make(map[string]json.RawMessage, len(allowed))
	fields := Fields{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &ValidationError{Message: "malformed JSON: " + jsonErrText(err)}
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, &ValidationError{Message: "malformed JSON: " + jsonErrText(err)}
		}
		switch {
		case !contains(allowed, key):
			fields.Add(key, "unknown field")
		case members[key] != nil:
			fields.Add(key, "duplicate field")
		default:
			members[key] = raw
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, &ValidationError{Message: "malformed JSON: " + jsonErrText(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &ValidationError{Message: "malformed JSON: unexpected data after the object"}
	}
	if err := fields.Err(); err != nil {
		return nil, err
	}
	return members, nil
}

func jsonErrText(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return err.Error()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// String decodes a required JSON string member.
func String(members map[string]json.RawMessage, fields Fields, name string) (string, bool) {
	raw, ok := members[name]
	if !ok || string(raw) == "null" {
		fields.Add(name, "is required")
		return "", false
	}
	if s, ok := plainString(raw); ok {
		return s, true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		fields.Add(name, "must be a string")
		return "", false
	}
	return s, true
}

// plainString decodes a JSON string of printable ASCII without escapes (what json.Unmarshal would return,
// without its reflection); ok=false for anything else.
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return "", false
		}
	}
	return string(raw[1 : len(raw)-1]), true
}

// ParseID decodes a required UUID member.
func ParseID(members map[string]json.RawMessage, fields Fields, name string) uuid.UUID {
	s, ok := String(members, fields, name)
	if !ok {
		return uuid.Nil
	}
	id, err := ParseUUID(s)
	if err != nil {
		fields.Add(name, err.Error())
	}
	return id
}

// ParseUUID accepts the canonical 36-character textual form only.
func ParseUUID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.Nil, errors.New("must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
	}
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, errors.New("must be a non-nil UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
	}
	return id, nil
}

// ParseIdentifier decodes a required store or account id.
func ParseIdentifier(members map[string]json.RawMessage, fields Fields, name string) string {
	s, ok := String(members, fields, name)
	if ok && !ValidIdentifier(s) {
		fields.Add(name, "must be 1-64 characters of [A-Za-z0-9._-]")
	}
	return s
}

// isInteger reports whether raw is a JSON integer: ^-?(0|[1-9][0-9]*)$.
func isInteger(raw []byte) bool {
	if len(raw) > 0 && raw[0] == '-' {
		raw = raw[1:]
	}
	if len(raw) == 0 || (raw[0] == '0' && len(raw) > 1) {
		return false
	}
	for _, c := range raw {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ParseAmount decodes a required amount: a JSON integer (no fraction, exponent or string) in minor units.
func ParseAmount(members map[string]json.RawMessage, fields Fields, name string) int64 {
	raw, ok := members[name]
	if !ok || string(raw) == "null" {
		fields.Add(name, "is required")
		return 0
	}
	if !isInteger(raw) {
		fields.Add(name, "must be a JSON integer in minor units (no fraction, exponent or string)")
		return 0
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < MinAmount || n > MaxAmount {
		fields.Add(name, fmt.Sprintf("must be between %d and %d", MinAmount, MaxAmount))
		return 0
	}
	return n
}

// ParseCurrency decodes a required ISO 4217 alphabetic code in upper case.
func ParseCurrency(members map[string]json.RawMessage, fields Fields, name string) string {
	s, ok := String(members, fields, name)
	if ok && !ValidCurrency(s) {
		fields.Add(name, "must be an ISO 4217 alphabetic currency code in upper case")
	}
	return s
}

// ParseTime decodes a required RFC 3339 timestamp.
func ParseTime(members map[string]json.RawMessage, fields Fields, name string) time.Time {
	s, ok := String(members, fields, name)
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		fields.Add(name, "must be an RFC 3339 timestamp")
		return time.Time{}
	}
	if !validTime(t) {
		fields.Add(name, timeRangeMsg)
	}
	return t
}

var (
	minTime      = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime      = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	timeRangeMsg = "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z"
)

// validTime reports whether t, rounded to PostgreSQL's microseconds, is in the range both JSON and the
// database represent.
func validTime(t time.Time) bool {
	t = t.UTC().Round(time.Microsecond)
	return !t.Before(minTime) && !t.After(maxTime)
}

// transactionFields are the members of a transaction's JSON.
var transactionFields = []string{"id", "store_id", "account_id", "amount", "currency", "created_at"}

// DecodeTransaction reads and validates a transaction as POST /v1/transactions receives it.
func DecodeTransaction(r io.Reader) (Transaction, error) {
	members, err := DecodeObject(r, transactionFields...)
	if err != nil {
		return Transaction{}, err
	}
	return transactionFrom(members)
}

// DecodeBatchTransaction decodes one element of a batch that DecodeBatch returned (so valid JSON, which it
// does not check again): the transaction, or the very error DecodeTransaction returns for the same bytes.
func DecodeBatchTransaction(raw json.RawMessage) (Transaction, error) {
	members, ok := scanValid(raw, transactionFields)
	if !ok {
		var err error
		if members, err = decodeObject(raw, transactionFields); err != nil {
			return Transaction{}, err
		}
	}
	return transactionFrom(members)
}

func transactionFrom(members map[string]json.RawMessage) (Transaction, error) {
	fields := Fields{}
	tx := Transaction{
		ID:        ParseID(members, fields, "id"),
		StoreID:   ParseIdentifier(members, fields, "store_id"),
		AccountID: ParseIdentifier(members, fields, "account_id"),
		Amount:    ParseAmount(members, fields, "amount"),
		Currency:  ParseCurrency(members, fields, "currency"),
		CreatedAt: ParseTime(members, fields, "created_at"),
	}
	if err := fields.Err(); err != nil {
		return Transaction{}, err
	}
	return tx.Normalize(), nil
}

// Validate checks a transaction built in code (the Store's side of the contract).
func (t Transaction) Validate() error {
	fields := Fields{}
	if t.ID == uuid.Nil {
		fields.Add("id", "is required")
	}
	if !ValidIdentifier(t.StoreID) {
		fields.Add("store_id", "must be 1-64 characters of [A-Za-z0-9._-]")
	}
	if !ValidIdentifier(t.AccountID) {
		fields.Add("account_id", "must be 1-64 characters of [A-Za-z0-9._-]")
	}
	if t.Amount < MinAmount || t.Amount > MaxAmount {
		fields.Add("amount", fmt.Sprintf("must be between %d and %d", MinAmount, MaxAmount))
	}
	if !ValidCurrency(t.Currency) {
		fields.Add("currency", "must be an ISO 4217 alphabetic currency code in upper case")
	}
	if !validTime(t.CreatedAt) {
		fields.Add("created_at", timeRangeMsg)
	}
	return fields.Err()
}
