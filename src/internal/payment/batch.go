package payment

import (
	"encoding/json"
	"io"
	"strconv"
)

// Limits of a batch (POST /v1/transactions/batch): at most MaxBatchItems transactions and MaxBatchBytes of
// body; each transaction's own JSON is held to MaxBodyBytes, as a single request's body.
const (
	MaxBatchItems = 256
	MaxBatchBytes = 256 << 10
)

// BatchRequest is the body of POST /v1/transactions/batch.
type BatchRequest struct {
	Transactions []Transaction `json:"transactions"`
}

// BatchResponse is the 200 answer to a batch: one item per transaction, in the request's order.
type BatchResponse struct {
	Results []BatchItem `json:"results"`
}

// BatchItem is the answer POST /v1/transactions would have given the transaction: its status code (201,
// 200, 409, 400 or 413) and its body (a Result for 201 and 200, an ErrorBody otherwise).
type BatchItem struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// DecodeBatch reads a batch's envelope, {"transactions": [...]}, and returns each transaction's JSON
// undecoded (DecodeTransaction decodes each, as the single endpoint decodes its body). An envelope that is
// malformed, has other members, or holds no or more than MaxBatchItems transactions is a ValidationError.
func DecodeBatch(r io.Reader) ([]json.RawMessage, error) {
	members, err := DecodeObject(r, "transactions")
	if err != nil {
		return nil, err
	}
	msg := "must be an array of 1-" + strconv.Itoa(MaxBatchItems) + " transactions"
	raw, ok := members["transactions"]
	if !ok || string(raw) == "null" {
		return nil, &ValidationError{Message: "invalid fields", Fields: map[string]string{"transactions": "is required"}}
	}
	items, ok := splitArray(raw, MaxBatchItems)
	if !ok || len(items) == 0 {
		return nil, &ValidationError{Message: "invalid fields", Fields: map[string]string{"transactions": msg}}
	}
	return items, nil
}

// splitArray slices the elements out of raw, a valid JSON value (DecodeObject validated the whole body),
// without decoding them again; ok is false when raw is not an array or holds more than maxItems elements.
func splitArray(raw json.RawMessage, maxItems int) ([]json.RawMessage, bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	items := make([]json.RawMessage, 0, 16)
	i := skipSpace(raw, 1)
	if raw[i] == ']' {
		return items, true
	}
	for {
		end := valueEnd(raw, i)
		if len(items) == maxItems {
			return nil, false
		}
		items = append(items, raw[i:end:end])
		if i = skipSpace(raw, end); raw[i] == ']' {
			return items, true
		}
		i = skipSpace(raw, i+1) // past the comma
	}
}
