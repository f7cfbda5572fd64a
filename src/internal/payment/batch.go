package payment

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"strconv"
	"time"

	"github.com/google/uuid"
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

// AppendBatchRequest appends the JSON of BatchRequest{txs} to b: encoding/json's bytes, written without its
// reflection (the relay's encoding cost per batch; FuzzBatchWire proves them equal). A transaction whose
// strings are not plain identifiers, or whose time is outside JSON's years, goes through encoding/json.
func AppendBatchRequest(b []byte, txs []Transaction) ([]byte, error) {
	b = append(b, `{"transactions":[`...)
	for i, tx := range txs {
		if i > 0 {
			b = append(b, ',')
		}
		if !ValidIdentifier(tx.StoreID) || !ValidIdentifier(tx.AccountID) || !ValidIdentifier(tx.Currency) ||
			tx.CreatedAt.Year() < 0 || tx.CreatedAt.Year() > 9999 {
			js, err := json.Marshal(tx)
			if err != nil {
				return nil, err
			}
			b = append(b, js...)
			continue
		}
		b = append(b, `{"id":"`...)
		b = AppendUUID(b, tx.ID)
		b = append(b, `","store_id":"`...)
		b = append(b, tx.StoreID...)
		b = append(b, `","account_id":"`...)
		b = append(b, tx.AccountID...)
		b = append(b, `","amount":`...)
		b = strconv.AppendInt(b, tx.Amount, 10)
		b = append(b, `,"currency":"`...)
		b = append(b, tx.Currency...)
		b = append(b, `","created_at":"`...)
		b = tx.CreatedAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `"}`...)
	}
	return append(b, "]}"...), nil
}

// DecodeBatchResponse decodes a batch's 200 answer as json.Unmarshal into a BatchResponse does, with a fast
// path for what the Bank writes (FuzzBatchWire proves them equal).
func DecodeBatchResponse(data []byte) ([]BatchItem, error) {
	if json.Valid(data) {
		if items, ok := scanBatchResponse(data); ok {
			return items, nil
		}
	}
	var resp BatchResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, err
	}
	return resp.Results, nil
}

// scanBatchResponse is DecodeBatchResponse's fast path for valid JSON of the exact shape
// {"results":[{"status":N,"body":…},…]}; ok is false for anything else.
func scanBatchResponse(data []byte) ([]BatchItem, bool) {
	members, ok := scanValid(data, []string{"results"})
	if !ok {
		return nil, false
	}
	raws, ok := splitArray(members["results"], 1<<30)
	if !ok {
		return nil, false
	}
	items := make([]BatchItem, len(raws))
	for i, raw := range raws {
		m, ok := scanValid(raw, []string{"status", "body"})
		if !ok || len(m) != 2 || !isInteger(m["status"]) || len(m["status"]) > 4 || m["status"][0] == '-' {
			return nil, false
		}
		status, _ := strconv.Atoi(string(m["status"]))
		items[i] = BatchItem{Status: status, Body: m["body"]}
	}
	return items, true
}

// DecodeResult decodes a Result as json.Unmarshal does, with a fast path for what the Bank writes — the four
// members as plain strings, each decoded by the method encoding/json would call (FuzzBatchWire proves them
// equal).
func DecodeResult(data []byte) (Result, error) {
	if json.Valid(data) {
		if res, ok := scanResult(data); ok {
			return res, nil
		}
	}
	var res Result
	err := json.Unmarshal(data, &res)
	return res, err
}

func scanResult(data []byte) (Result, bool) {
	m, ok := scanValid(data, []string{"id", "status", "reason", "processed_at"})
	if !ok || len(m) != 4 {
		return Result{}, false
	}
	var res Result
	id, ok1 := plainString(m["id"])
	status, ok2 := plainString(m["status"])
	reason, ok3 := plainString(m["reason"])
	if !ok1 || !ok2 || !ok3 || res.ID.UnmarshalText([]byte(id)) != nil ||
		res.ProcessedAt.UnmarshalJSON(m["processed_at"]) != nil {
		return Result{}, false
	}
	res.Status, res.Reason = Status(status), Reason(reason)
	return res, true
}

// AppendUUID appends id's canonical text form (uuid.UUID.String's) to b.
func AppendUUID(b []byte, id uuid.UUID) []byte {
	var s [36]byte
	hex.Encode(s[0:8], id[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], id[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], id[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], id[8:10])
	s[23] = '-'
	hex.Encode(s[24:], id[10:])
	return append(b, s[:]...)
}
