package payment_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/internal/payment"
)

const validBody = `{"id":"6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11","store_id":"store-1","account_id":"ACC-000001",` +
	`"amount":1250,"currency":"EUR","created_at":"2026-11-25T10:00:00.1234567+01:00"}`

func TestDecodeTransactionValid(t *testing.T) {
	tx, err := payment.DecodeTransaction(strings.NewReader(validBody))
	if err != nil {
		t.Fatalf("valid body rejected: %v", err)
	}
	want := payment.Transaction{
		ID:        uuid.MustParse("6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11"),
		StoreID:   "store-1",
		AccountID: "ACC-000001",
		Amount:    1250,
		Currency:  "EUR",
		// Normalized: UTC, rounded to PostgreSQL's microseconds.
		CreatedAt: time.Date(2026, 11, 25, 9, 0, 0, 123457000, time.UTC),
	}
	if tx != want {
		t.Fatalf("decoded %+v, want %+v", tx, want)
	}
	if err := tx.Validate(); err != nil {
		t.Fatalf("decoded transaction does not validate: %v", err)
	}
}

// with returns validBody with one member replaced (or removed when value is "").
func with(t *testing.T, key, value string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(validBody), &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(value)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecodeTransactionRejects(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string // the field at fault; "" when the error is about the whole body
	}{
		{"empty body", ``, ""},
		{"not an object", `[1,2]`, ""},
		{"malformed", `{"id":`, ""},
		{"trailing data", validBody + `{}`, ""},
		{"unknown field", with(t, "extra", `1`), "extra"},
		{"duplicate field", strings.Replace(validBody, `"amount":1250`, `"amount":1250,"amount":1`, 1), "amount"},
		{"missing id", with(t, "id", ""), "id"},
		{"id not a uuid", with(t, "id", `"123"`), "id"},
		{"id nil uuid", with(t, "id", `"00000000-0000-0000-0000-000000000000"`), "id"},
		{"id braces form", with(t, "id", `"{6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11}"`), "id"},
		{"id number", with(t, "id", `42`), "id"},
		{"store_id empty", with(t, "store_id", `""`), "store_id"},
		{"store_id too long", with(t, "store_id", `"`+strings.Repeat("s", 65)+`"`), "store_id"},
		{"account_id bad chars", with(t, "account_id", `"ACC 1"`), "account_id"},
		{"account_id null", with(t, "account_id", `null`), "account_id"},
		{"amount zero", with(t, "amount", `0`), "amount"},
		{"amount negative", with(t, "amount", `-5`), "amount"},
		{"amount too large", with(t, "amount", `1000000001`), "amount"},
		{"amount overflow", with(t, "amount", `99999999999999999999999`), "amount"},
		{"amount fraction", with(t, "amount", `12.5`), "amount"},
		{"amount integral fraction", with(t, "amount", `12.0`), "amount"},
		{"amount exponent", with(t, "amount", `1e3`), "amount"},
		{"amount string", with(t, "amount", `"1250"`), "amount"},
		{"amount leading zero", strings.Replace(validBody, `1250`, `01250`, 1), ""}, // invalid JSON number
		{"missing amount", with(t, "amount", ""), "amount"},
		{"currency lower case", with(t, "currency", `"eur"`), "currency"},
		{"currency unknown", with(t, "currency", `"XYZ"`), "currency"},
		{"currency number", with(t, "currency", `978`), "currency"},
		{"created_at not rfc3339", with(t, "created_at", `"2026-11-25 10:00:00"`), "created_at"},
		{"created_at no zone", with(t, "created_at", `"2026-11-25T10:00:00"`), "created_at"},
		{"created_at before 1970", with(t, "created_at", `"1969-12-31T23:59:59Z"`), "created_at"},
		{"created_at rounds past 9999", with(t, "created_at", `"9999-12-31T23:59:59.9999999Z"`), "created_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := payment.DecodeTransaction(strings.NewReader(tt.body))
			var verr *payment.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			if tt.field == "" {
				if len(verr.Fields) != 0 {
					t.Fatalf("got field errors %v, want a body-level error", verr.Fields)
				}
				return
			}
			if _, ok := verr.Fields[tt.field]; !ok || len(verr.Fields) != 1 {
				t.Fatalf("field errors %v, want exactly one for %q", verr.Fields, tt.field)
			}
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	err := payment.Transaction{}.Validate()
	var verr *payment.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("got %v, want a *ValidationError", err)
	}
	for _, f := range []string{"id", "store_id", "account_id", "amount", "currency", "created_at"} {
		if _, ok := verr.Fields[f]; !ok {
			t.Errorf("no error for %s in %v", f, verr.Fields)
		}
	}
}

func TestSameFieldsIgnoresRepresentation(t *testing.T) {
	tx, err := payment.DecodeTransaction(strings.NewReader(validBody))
	if err != nil {
		t.Fatal(err)
	}
	other := tx
	other.CreatedAt = tx.CreatedAt.In(time.FixedZone("X", 3600)).Add(300 * time.Nanosecond)
	if !tx.SameFields(other) {
		t.Fatal("same instant in another zone, below a microsecond apart, must compare equal")
	}
	other.Amount++
	if tx.SameFields(other) {
		t.Fatal("different amounts compare equal")
	}
}

// FuzzDecodeTransaction checks that decoding never panics, that whatever it accepts validates and survives a
// JSON round trip unchanged, and that rejections are always validation errors (never anything a server would
// turn into a 500). Its seed corpus runs in `make test`; `make fuzz` explores further.
func FuzzDecodeTransaction(f *testing.F) {
	f.Add([]byte(validBody))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"id":"6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11","amount":1e3}`))
	f.Add([]byte(`{"amount":-0,"currency":"EUR"}`))
	f.Add([]byte(`{"created_at":"0000-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte("{\"store_id\":\"\xff\"}"))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		tx, err := payment.DecodeTransaction(bytes.NewReader(body))
		if json.Valid(body) { // as an element of a batch: the same answer
			btx, berr := payment.DecodeBatchTransaction(body)
			if btx != tx || (err == nil) != (berr == nil) || (err != nil && err.Error() != berr.Error()) {
				t.Fatalf("%q: DecodeTransaction %+v, %v; DecodeBatchTransaction %+v, %v", body, tx, err, btx, berr)
			}
		}
		if err != nil {
			var verr *payment.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("rejection is not a ValidationError: %T %v", err, err)
			}
			return
		}
		if err := tx.Validate(); err != nil {
			t.Fatalf("accepted %q but Validate says %v", body, err)
		}
		out, err := json.Marshal(tx)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", body, err)
		}
		again, err := payment.DecodeTransaction(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("re-decoding %s: %v", out, err)
		}
		if again != tx {
			t.Fatalf("round trip changed %+v into %+v", tx, again)
		}
	})
}

// FuzzDecodeObjectFastPath proves DecodeObject's fast path (scanObject) and its general decoder agree: whenever
// the fast path answers, the general decoder accepts the same body with the same members.
func FuzzDecodeObjectFastPath(f *testing.F) {
	f.Add([]byte(validBody))
	f.Add([]byte(` { "id" : "x" , "amount" : [1, {"a": "]"}], "currency": {"b": "\"}"} } `))
	f.Add([]byte(`{"id":"a\"b","amount":-12.5e3,"currency":null}`))
	f.Add([]byte(`{"\u0069d":"x"}`))
	f.Add([]byte(`{"id":1,"id":2}`))
	f.Add([]byte(`{"id":1} {}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	allowed := []string{"id", "store_id", "account_id", "amount", "currency", "created_at"}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := payment.ScanObject(body, allowed)
		if !ok {
			return
		}
		slow, err := payment.DecodeObjectGeneral(body, allowed)
		if err != nil {
			t.Fatalf("fast path accepted %q, general decoder says %v", body, err)
		}
		if len(fast) != len(slow) {
			t.Fatalf("%q: fast %d members, general %d", body, len(fast), len(slow))
		}
		for k, v := range slow {
			if !bytes.Equal(fast[k], v) {
				t.Fatalf("%q: member %s: fast %q, general %q", body, k, fast[k], v)
			}
		}
	})
}

// FuzzPlainString proves the string fast path returns what json.Unmarshal returns.
func FuzzPlainString(f *testing.F) {
	for _, s := range []string{`"abc"`, `""`, `"a\"b"`, `"é"`, `1`, `"`, `"a\tb"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, ok := payment.PlainString(raw)
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal(raw, &want); err != nil || got != want {
			t.Fatalf("%q: fast %q, json.Unmarshal %q (%v)", raw, got, want, err)
		}
	})
}

// FuzzDecodeBatch proves DecodeBatch slices out the very elements encoding/json finds in the array, and
// accepts exactly the envelopes holding 1-MaxBatchItems of them.
func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`{"transactions":[` + validBody + `, 1 ,"x]",[{"a":"]"}],null, {}]}`))
	f.Add([]byte(`{"transactions":[]}`))
	f.Add([]byte(`{"transactions":[ ]}`))
	f.Add([]byte(`{"transactions":{}}`))
	f.Add([]byte(`{"transactions":"[1]"}`))
	f.Add([]byte(`{"transactions":[1],"x":2}`))
	f.Add([]byte(`[1]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := payment.DecodeBatch(bytes.NewReader(body))
		var env struct {
			Transactions []json.RawMessage `json:"transactions"`
		}
		var verr *payment.ValidationError
		switch {
		case err != nil && !errors.As(err, &verr):
			t.Fatalf("rejection is not a ValidationError: %T %v", err, err)
		case err != nil:
			return
		case json.Unmarshal(body, &env) != nil || len(env.Transactions) != len(items) ||
			len(items) < 1 || len(items) > payment.MaxBatchItems:
			t.Fatalf("%q: accepted %d items, encoding/json finds %d", body, len(items), len(env.Transactions))
		}
		for i := range items {
			if !bytes.Equal(items[i], env.Transactions[i]) {
				t.Fatalf("%q: item %d is %q, encoding/json says %q", body, i, items[i], env.Transactions[i])
			}
		}
	})
}

// FuzzBatchWire proves the relay's hand-written batch wire format equal to encoding/json's: the request
// AppendBatchRequest writes for decoded transactions, and what DecodeBatchResponse and DecodeResult make of
// any answer.
func FuzzBatchWire(f *testing.F) {
	f.Add([]byte(validBody), []byte(`{"results":[{"status":201,"body":{"id":"6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11","status":"approved","reason":"","processed_at":"2026-11-25T10:00:00.123456Z"}},{"status":409,"body":{"error":{"code":"x","message":"y"}}}]}`))
	f.Add([]byte(`{}`), []byte(`{"results":[{"status":201.0,"body":{}}]}`))
	f.Add([]byte(`{}`), []byte(`{"results":[{"body":{"ID":"6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11"},"status":1}],"x":[]}`))
	f.Add([]byte(`{}`), []byte(`{"id":"{6f1c9a8e-2b9d-4e35-9a53-0c8a1f0e7b11}","status":"a","reason":"b","processed_at":"2026-11-25T10:00:00+01:00"}`))
	f.Fuzz(func(t *testing.T, body, answer []byte) {
		if tx, err := payment.DecodeTransaction(bytes.NewReader(body)); err == nil {
			got, err := payment.AppendBatchRequest(nil, []payment.Transaction{tx, tx})
			want, werr := json.Marshal(payment.BatchRequest{Transactions: []payment.Transaction{tx, tx}})
			if err != nil || werr != nil || !bytes.Equal(got, want) {
				t.Fatalf("request for %+v:\n%s (%v)\nencoding/json:\n%s (%v)", tx, got, err, want, werr)
			}
		}
		items, err := payment.DecodeBatchResponse(answer)
		var resp payment.BatchResponse
		werr := json.Unmarshal(answer, &resp)
		if (err == nil) != (werr == nil) || (err == nil && len(items) != len(resp.Results)) {
			t.Fatalf("%q: %d items, %v; encoding/json %d, %v", answer, len(items), err, len(resp.Results), werr)
		}
		for i := range items {
			if items[i].Status != resp.Results[i].Status || !bytes.Equal(items[i].Body, resp.Results[i].Body) {
				t.Fatalf("%q: item %d %+v, encoding/json %+v", answer, i, items[i], resp.Results[i])
			}
		}
		res, err := payment.DecodeResult(answer)
		var wres payment.Result
		werr = json.Unmarshal(answer, &wres)
		if (err == nil) != (werr == nil) || (err == nil && (res.ID != wres.ID || res.Status != wres.Status ||
			res.Reason != wres.Reason || !res.ProcessedAt.Equal(wres.ProcessedAt) ||
			res.ProcessedAt.Location().String() != wres.ProcessedAt.Location().String())) {
			t.Fatalf("%q: %+v, %v; encoding/json %+v, %v", answer, res, err, wres, werr)
		}
	})
}
