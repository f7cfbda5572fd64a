// Package bankclient is the typed client of the Bank API that the Store's relay uses.
package bankclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// Error is an answer that is not a result: its HTTP status and error body, and whether the Bank itself gave
// it (Marked) or something between the Store and the Bank did (a sidecar's 403, a route's 404, a proxy's
// 503: Foreign).
type Error struct {
	StatusCode int
	Code       string
	Message    string
	RetryAfter time.Duration
	// Marked: the answer carries the Bank's marks — the Txmesh-Service: bank header, a problem document
	// (application/problem+json) and an error code in it (payment.ServiceHeader says why).
	Marked bool
}

func (e *Error) Error() string {
	who := "bank"
	if !e.Marked {
		who = "something between the store and the bank (no bank marks)"
	}
	return fmt.Sprintf("%s answered %d %s: %s", who, e.StatusCode, e.Code, e.Message)
}

// rejections are the Bank's answers that no resend of the same transaction can change: invalid (400), its id
// taken by other fields (409), too large (413), not JSON (415). Only these end a purchase, and only when the
// Bank marked them: a 403, a 404 or any other status, even from the Bank (a refused caller, a missing route),
// is the path or the configuration failing, which a fix turns into a delivery.
var rejections = map[int]string{
	http.StatusBadRequest:            payment.CodeInvalidRequest,
	http.StatusConflict:              payment.CodeIdempotencyConflict,
	http.StatusRequestEntityTooLarge: payment.CodePayloadTooLarge,
	http.StatusUnsupportedMediaType:  payment.CodeUnsupportedMediaType,
}

// Permanent reports whether the Bank itself rejected the transaction for good: a marked answer with one of
// the rejection statuses and its code.
func (e *Error) Permanent() bool {
	code, ok := rejections[e.StatusCode]
	return e.Marked && ok && e.Code == code
}

// Foreign reports whether the answer did not come from the Bank (no marks).
func (e *Error) Foreign() bool { return !e.Marked }

// IsPermanent reports whether err is a permanent rejection by the Bank (see Error.Permanent).
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent()
}

// IsMarked reports whether err is an answer the Bank gave itself (a rejection, a refusal, a 503).
func IsMarked(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Marked
}

// Client talks to one Bank base URL.
type Client struct {
	endpoint string
	batch    string
	hc       *http.Client
}

// New returns a client for the Bank at baseURL (http or https) using hc.
func New(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("bank url %q: must be http(s)://host[:port]", baseURL)
	}
	base := strings.TrimRight(u.String(), "/")
	return &Client{endpoint: base + "/v1/transactions", batch: base + "/v1/transactions/batch", hc: hc}, nil
}

// marked reports whether resp carries the Bank's header (the problem document is checked with its body).
func marked(resp *http.Response) bool {
	return resp.Header.Get(payment.ServiceHeader) == payment.ServiceBank
}

// Submit sends a transaction with its id as the Idempotency-Key and returns the Bank's result, whether it was
// processed now (201) or earlier (200). Any other answer is an *Error; transport failures are returned wrapped.
func (c *Client) Submit(ctx context.Context, tx payment.Transaction) (payment.Result, error) {
	body, err := json.Marshal(tx)
	if err != nil {
		return payment.Result{}, fmt.Errorf("encode transaction: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return payment.Result{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(payment.IdempotencyHeader, tx.ID.String())
	resp, err := c.hc.Do(req)
	if err != nil {
		return payment.Result{}, fmt.Errorf("post transaction %s: %w", tx.ID, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return payment.Result{}, fmt.Errorf("read bank answer for %s: %w", tx.ID, err)
	}
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated {
		var res payment.Result
		if err := json.Unmarshal(data, &res); err != nil || res.ID != tx.ID {
			return payment.Result{}, fmt.Errorf("bank answered %d with an unreadable result for %s: %q",
				resp.StatusCode, tx.ID, truncate(data))
		}
		return res, nil
	}
	return payment.Result{}, answerError(resp.StatusCode, resp.Header, data, marked(resp))
}

// answerError is the *Error of an answer that is not a result. fromBank says whether the response (for a
// batch item: the batch's response) carried the Bank's header; the answer is Marked when, in addition, its
// body is a problem document with an error code (an item's body has no headers: its batch's problem marks
// stand for it, and its body must still hold the code).
func answerError(status int, hdr http.Header, data []byte, fromBank bool) *Error {
	e := &Error{StatusCode: status}
	var eb payment.ErrorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
		e.Code, e.Message = eb.Error.Code, eb.Error.Message
		e.Marked = fromBank && (hdr == nil || payment.IsProblem(hdr.Get("Content-Type")))
	} else {
		e.Code, e.Message = "http_"+strconv.Itoa(status), truncate(data)
	}
	if s, err := strconv.Atoi(hdr.Get("Retry-After")); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// ErrNoSuchTransaction is the Bank's own 404 to a lookup: it has no transaction with that id.
var ErrNoSuchTransaction = errors.New("the bank has no transaction with this id")

// Lookup asks the Bank for the transaction id (GET /v1/transactions/{id}): its record when the Bank answers
// with one (marked: only the Bank's own word is a record), ErrNoSuchTransaction when the Bank itself says it
// has none, and otherwise an *Error or a transport error — the Bank's state is then unknown.
func (c *Client) Lookup(ctx context.Context, id uuid.UUID) (payment.Record, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.endpoint+"/"+id.String(), nil)
	if err != nil {
		return payment.Record{}, fmt.Errorf("build request: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return payment.Record{}, fmt.Errorf("look up transaction %s: %w", id, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return payment.Record{}, fmt.Errorf("read bank answer for %s: %w", id, err)
	}
	if resp.StatusCode == http.StatusOK && marked(resp) {
		var rec payment.Record
		if err := json.Unmarshal(data, &rec); err != nil || rec.ID != id {
			return payment.Record{}, fmt.Errorf("bank answered 200 with an unreadable record for %s: %q", id,
				truncate(data))
		}
		return rec, nil
	}
	e := answerError(resp.StatusCode, resp.Header, data, marked(resp))
	if e.Marked && e.StatusCode == http.StatusNotFound && e.Code == payment.CodeNotFound {
		return payment.Record{}, ErrNoSuchTransaction
	}
	return payment.Record{}, fmt.Errorf("look up transaction %s: %w", id, e)
}

// Answer is the Bank's answer for one transaction of a batch: its result (processed now or earlier), or an
// *Error with the status code and error body POST /v1/transactions would have answered (a 409, 400 or 413:
// permanent, see Error.Permanent).
type Answer struct {
	Result payment.Result
	Err    error
}

// SubmitBatch sends up to payment.MaxBatchItems transactions in one POST /v1/transactions/batch and
// returns one answer per transaction, in order. A request the Bank did not answer with 200 is an *Error for
// the whole batch (as from Submit: a 503 + Retry-After when its database fails; a 404 from a Bank that has
// no batch endpoint); transport failures and unreadable answers are returned wrapped. Each id is its own
// idempotency key: resending a batch, or any of its transactions, is safe.
func (c *Client) SubmitBatch(ctx context.Context, txs []payment.Transaction) ([]Answer, error) {
	body, err := payment.AppendBatchRequest(make([]byte, 0, 24+200*len(txs)), txs)
	if err != nil {
		return nil, fmt.Errorf("encode batch: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.batch, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post batch of %d (%s, …): %w", len(txs), txs[0].ID, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("read bank answer for a batch of %d (%s, …): %w", len(txs), txs[0].ID, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, answerError(resp.StatusCode, resp.Header, data, marked(resp))
	}
	fromBank := marked(resp)
	results, err := payment.DecodeBatchResponse(data)
	if err != nil || len(results) != len(txs) {
		return nil, fmt.Errorf("bank answered 200 with an unreadable batch answer for %d (%s, …): %q", len(txs),
			txs[0].ID, truncate(data))
	}
	out := make([]Answer, len(txs))
	for i, it := range results {
		switch it.Status {
		case http.StatusOK, http.StatusCreated:
			res, err := payment.DecodeResult(it.Body)
			if err != nil || res.ID != txs[i].ID {
				out[i].Err = fmt.Errorf("bank answered %d with an unreadable result for %s: %q", it.Status,
					txs[i].ID, truncate(it.Body))
				continue
			}
			out[i].Result = res
		default:
			out[i].Err = answerError(it.Status, nil, it.Body, fromBank)
		}
	}
	return out, nil
}

func truncate(b []byte) string {
	const n = 200
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// TLSConfig builds the client side of (m)TLS: caFile verifies the Bank (system roots when empty), and
// certFile/keyFile, when both are set, are presented as the client certificate.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read bank CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bank CA %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("client certificate and key must be given together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// HTTPClient returns an http.Client that keeps connections to the Bank alive (up to maxConns) and gives every
// request timeout to complete. tlsCfg may be nil for plain HTTP.
func HTTPClient(timeout time.Duration, maxConns int, tlsCfg *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConns = maxConns
	tr.MaxIdleConnsPerHost = maxConns
	tr.MaxConnsPerHost = maxConns
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: tr, Timeout: timeout}
}
