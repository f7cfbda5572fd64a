package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/txmesh/txmesh/src/localenv/pki"
)

// certFiles are the PEM files pki.Write made, with the CA pool and client certificate loaded.
type certFiles struct {
	pki.Files
	pool   *x509.CertPool
	client tls.Certificate
}

func writeCerts(dir string) (certFiles, error) {
	f, err := pki.Write(dir, "store", "127.0.0.1", "localhost")
	if err != nil {
		return certFiles{}, err
	}
	c := certFiles{Files: f, pool: x509.NewCertPool()}
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		return certFiles{}, err
	}
	if !c.pool.AppendCertsFromPEM(ca) {
		return certFiles{}, fmt.Errorf("%s holds no certificate", f.CA)
	}
	if c.client, err = tls.LoadX509KeyPair(f.ClientCert, f.ClientKey); err != nil {
		return certFiles{}, err
	}
	return c, nil
}

// httpClient speaks mTLS to the Bank the way the Store's bankclient does: keep-alive connections (up to
// maxConns, all kept idle between requests), TLS session resumption, TLS 1.2+.
func httpClient(c certFiles, maxConns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.pool,
		Certificates: []tls.Certificate{c.client}, ClientSessionCache: tls.NewLRUClientSessionCache(64)}
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = maxConns, maxConns, maxConns
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// txBody is the Bank's POST /v1/transactions body (payment.Transaction on the wire).
type txBody struct {
	ID        string    `json:"id"`
	StoreID   string    `json:"store_id"`
	AccountID string    `json:"account_id"`
	Amount    int64     `json:"amount"`
	Currency  string    `json:"currency"`
	CreatedAt time.Time `json:"created_at"`
}

type bankClient struct {
	url string
	hc  *http.Client
}

// submit posts one new transaction; anything but 201 approved is an error.
func (c *bankClient) submit(ctx context.Context, tx txBody) error {
	body, _ := json.Marshal(tx)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", tx.ID)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("bank answered %d: %.200s", resp.StatusCode, data)
	}
	var res struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(data, &res); err != nil || res.Status != "approved" {
		return fmt.Errorf("bank answered 201 %.200s", data)
	}
	return nil
}

// newUUID is a random (version 4) UUID, as the Store assigns.
func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

// leanClient is the load generator's default client: one keep-alive connection per worker (mTLS for the
// Bank, plain HTTP for the Store), the request written by hand and the answer parsed by net/http's
// ReadResponse, with no Transport goroutines or channel hand-offs in between. It is measurement apparatus,
// like pgbench's C client: the less CPU it takes from the shared cores, the more of the machine the
// contenders get. (-loadgen nethttp uses net/http's Transport, as the Store's bankclient does.)
type leanClient struct {
	addr   string
	tlsCfg *tls.Config // nil: plain HTTP
	conn   net.Conn
	r      *bufio.Reader
	buf    []byte
	body   []byte
	// retryAfter is the last answer's Retry-After header.
	retryAfter string
}

var sessionCache = tls.NewLRUClientSessionCache(256)

// newLeanClient connects lazily to url (http://host:port or https://host:port; https uses the certificates).
func newLeanClient(url string, c certFiles) *leanClient {
	if host, ok := strings.CutPrefix(url, "http://"); ok {
		return &leanClient{addr: host}
	}
	return &leanClient{addr: strings.TrimPrefix(url, "https://"), tlsCfg: &tls.Config{MinVersion: tls.VersionTLS12,
		RootCAs: c.pool, Certificates: []tls.Certificate{c.client}, ClientSessionCache: sessionCache}}
}

func (c *leanClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// post sends a JSON body to path and returns the status and the answer's body (valid until the next call).
func (c *leanClient) post(ctx context.Context, path, idemKey string, body []byte) (int, []byte, error) {
	if c.conn == nil {
		var err error
		if c.tlsCfg != nil {
			d := tls.Dialer{Config: c.tlsCfg}
			c.conn, err = d.DialContext(ctx, "tcp", c.addr)
		} else {
			var d net.Dialer
			c.conn, err = d.DialContext(ctx, "tcp", c.addr)
		}
		if err != nil {
			c.conn = nil
			return 0, nil, err
		}
		c.r = bufio.NewReaderSize(c.conn, 4096)
	}
	w := c.buf[:0]
	w = append(w, "POST "...)
	w = append(w, path...)
	w = append(w, " HTTP/1.1\r\nHost: "...)
	w = append(w, c.addr...)
	w = append(w, "\r\nContent-Type: application/json\r\n"...)
	if idemKey != "" {
		w = append(w, "Idempotency-Key: "...)
		w = append(w, idemKey...)
		w = append(w, "\r\n"...)
	}
	w = append(w, "Content-Length: "...)
	w = strconv.AppendInt(w, int64(len(body)), 10)
	w = append(w, "\r\n\r\n"...)
	w = append(w, body...)
	c.buf = w
	if _, err := c.conn.Write(w); err != nil {
		c.close()
		return 0, nil, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.close()
		return 0, nil, err
	}
	c.retryAfter = resp.Header.Get("Retry-After")
	data := bytes.NewBuffer(c.body[:0])
	_, err = data.ReadFrom(resp.Body)
	resp.Body.Close()
	c.body = data.Bytes()
	if err != nil {
		c.close()
		return 0, nil, err
	}
	if resp.Close {
		c.close()
	}
	return resp.StatusCode, c.body, nil
}

// submit posts one new transaction to the Bank; anything but 201 approved is an error.
func (c *leanClient) submit(ctx context.Context, tx txBody) error {
	status, data, err := c.post(ctx, "/v1/transactions", tx.ID, appendTx(make([]byte, 0, 192), tx))
	if err != nil {
		return err
	}
	if status != http.StatusCreated || !bytes.Contains(data, []byte(`"status":"approved"`)) {
		return fmt.Errorf("bank answered %d: %.200s", status, data)
	}
	return nil
}

// submitBatch posts new transactions in one batch to the Bank; anything but 200 with every item 201
// approved is an error.
func (c *leanClient) submitBatch(ctx context.Context, txs []txBody) error {
	b := make([]byte, 0, 24+200*len(txs))
	b = append(b, `{"transactions":[`...)
	for i, tx := range txs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTx(b, tx)
	}
	b = append(b, "]}"...)
	status, data, err := c.post(ctx, "/v1/transactions/batch", "", b)
	if err != nil {
		return err
	}
	if status != http.StatusOK || bytes.Count(data, []byte(`"status":201`)) != len(txs) ||
		bytes.Count(data, []byte(`"status":"approved"`)) != len(txs) {
		return fmt.Errorf("bank answered %d: %.200s", status, data)
	}
	return nil
}

// appendTx appends a transaction's JSON (payment.Transaction on the wire) to b.
func appendTx(b []byte, tx txBody) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, tx.ID...)
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
	return append(b, `"}`...)
}

// errShed is the Store's answer to a purchase beyond its HTTP_MAX_IN_FLIGHT: 503 overloaded with
// Retry-After, the purchase not written (the client may send it again).
const errShed = constError("store shed the purchase: 503 overloaded with Retry-After")

// purchase posts one purchase to the Store and returns its id once the Store answered 202 (errShed when it
// shed it).
func (c *leanClient) purchase(ctx context.Context, account string, amount int64) (string, error) {
	b := make([]byte, 0, 96)
	b = append(b, `{"account_id":"`...)
	b = append(b, account...)
	b = append(b, `","amount":`...)
	b = strconv.AppendInt(b, amount, 10)
	b = append(b, `,"currency":"EUR"}`...)
	status, data, err := c.post(ctx, "/v1/purchases", "", b)
	if err != nil {
		return "", err
	}
	if status == http.StatusServiceUnavailable && c.retryAfter != "" &&
		bytes.Contains(data, []byte(`"code":"overloaded"`)) {
		return "", errShed
	}
	_, rest, ok := bytes.Cut(data, []byte(`"id":"`))
	if status != http.StatusAccepted || !ok || len(rest) < 36 {
		return "", fmt.Errorf("store answered %d: %.200s", status, data)
	}
	return string(rest[:36]), nil
}
