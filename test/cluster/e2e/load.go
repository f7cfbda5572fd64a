package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

// driver is a purchase client outside the cluster: it posts purchases to the Store's Service (ClusterIP,
// mTLS) at a steady rate, as a well-behaved client does — one Idempotency-Key per purchase, retries of
// failures with the same key (honouring Retry-After) — and counts what a client sees.
type driver struct {
	url     func() string // the Store's Service: a scenario that rebuilds the system moves it
	client  *http.Client
	rate    float64
	rng     *rand.Rand
	rngMu   sync.Mutex
	seq     atomic.Int64
	scenar  string
	mu      sync.Mutex
	ok202   map[string]bool // purchase id → accepted
	wg      sync.WaitGroup
	stopped chan struct{}

	attempts, accepted, failed, skipped atomic.Int64
	status5xx, connErrors, status4xx    atomic.Int64
	other5xx                            atomic.Int64     // 5xx outside the contract's retryable answers
	why5xx                              map[string]int64 // "503 unavailable: <message>" → count (under mu)
}

func newClient(t txmesh.TLS) (*http.Client, error) {
	ca, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s", t.CA)
	}
	cert, err := tls.LoadX509KeyPair(t.ClientCert, t.ClientKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 20 * time.Second, // above the Store's DB_RIDE_THROUGH (15 s): a switchover is a slow answer, not a timeout
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert},
				ServerName: "store.txmesh.svc.cluster.local", MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
	}, nil
}

func newDriver(url func() string, client *http.Client, rate float64, seed uint64, scenario string) *driver {
	return &driver{url: url, client: client, rate: rate, rng: rand.New(rand.NewPCG(seed, 7)), scenar: scenario,
		ok202: map[string]bool{}, why5xx: map[string]int64{}, stopped: make(chan struct{})}
}

// run sends until ctx ends, then waits for the requests in flight.
func (d *driver) run(ctx context.Context) {
	defer close(d.stopped)
	tick := time.NewTicker(time.Duration(float64(time.Second) / d.rate))
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	for {
		select {
		case <-ctx.Done():
			d.wg.Wait()
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			d.skipped.Add(1) // 64 purchases in flight: the system is not keeping up; say so, do not queue
			continue
		}
		n := d.seq.Add(1)
		d.wg.Add(1)
		go func() {
			defer func() { <-sem; d.wg.Done() }()
			d.send(n)
		}()
	}
}

func (d *driver) body() []byte {
	d.rngMu.Lock()
	acct, amount := 1+d.rng.IntN(100), 100+d.rng.Int64N(9900)
	d.rngMu.Unlock()
	b, _ := json.Marshal(map[string]any{"account_id": fmt.Sprintf("ACC-%06d", acct), "amount": amount, "currency": "EUR"})
	return b
}

// send posts one purchase, retrying up to 30 s in all (a client's patience), and records the outcome.
func (d *driver) send(n int64) {
	body := d.body()
	key := "e2e-" + d.scenar + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(n, 10)
	deadline := time.Now().Add(30 * time.Second)
	backoff := 200 * time.Millisecond
	for {
		d.attempts.Add(1)
		wait, done := d.try(key, body)
		if done {
			return
		}
		if wait == 0 {
			wait = backoff
			backoff = min(2*backoff, 2*time.Second)
		}
		if time.Now().Add(wait).After(deadline) {
			d.failed.Add(1)
			return
		}
		time.Sleep(wait)
	}
}

// try makes one attempt; done when the purchase is accepted or refused for good.
func (d *driver) try(key string, body []byte) (retryAfter time.Duration, done bool) {
	req, err := http.NewRequest(http.MethodPost, d.url()+"/v1/purchases", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := d.client.Do(req)
	if err != nil {
		d.connErrors.Add(1)
		return 0, false
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusAccepted:
		var out struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(b, &out) != nil || out.ID == "" {
			d.status5xx.Add(1) // a 202 without an id is a server bug; count it where it hurts
			d.other5xx.Add(1)
			return 0, false
		}
		d.mu.Lock()
		d.ok202[out.ID] = true
		d.mu.Unlock()
		d.accepted.Add(1)
		return 0, true
	case resp.StatusCode >= 500:
		d.status5xx.Add(1)
		d.note5xx(resp.StatusCode, b)
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			return time.Duration(s) * time.Second, false
		}
		return 0, false
	default:
		d.status4xx.Add(1)
		d.failed.Add(1)
		return 0, true
	}
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// retryable5xx: the Store's API answers (docs/api.md) that tell a client to retry with the same key.
func retryable5xx(status int, body []byte) bool {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return false
	}
	switch status {
	case http.StatusServiceUnavailable:
		return e.Error.Code == "unavailable" || e.Error.Code == "overloaded"
	case http.StatusGatewayTimeout:
		return e.Error.Code == "outcome_unknown"
	}
	return false
}

// note5xx tallies a 5xx answer by status, error code and message (cut at 120 bytes), so a
// failed scenario says what the clients were told.
func (d *driver) note5xx(status int, body []byte) {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	why := fmt.Sprintf("%d", status)
	if !retryable5xx(status, body) {
		d.other5xx.Add(1)
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		msg := uuidRE.ReplaceAllString(e.Error.Message, "<id>") // one line per kind of answer, not per purchase
		if len(msg) > 120 {
			msg = msg[:120]
		}
		why += " " + e.Error.Code + ": " + msg
	} else {
		why += " (no JSON error body)"
	}
	d.mu.Lock()
	if len(d.why5xx) < 20 {
		d.why5xx[why]++
	} else if _, ok := d.why5xx[why]; ok {
		d.why5xx[why]++
	}
	d.mu.Unlock()
}

// accepted202 lists the ids the Store answered 202 for.
func (d *driver) accepted202() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make([]string, 0, len(d.ok202))
	for id := range d.ok202 {
		ids = append(ids, id)
	}
	return ids
}

// clientStats is what purchase clients saw during one scenario.
type clientStats struct {
	Sent        int64 `json:"sent"`         // purchases attempted
	Accepted    int64 `json:"accepted"`     // 202
	Failed      int64 `json:"failed"`       // given up after retries, or refused (4xx)
	Skipped     int64 `json:"skipped"`      // not sent: 64 already in flight
	Attempts    int64 `json:"attempts"`     // HTTP requests
	Status5xx   int64 `json:"status_5xx"`   // 5xx answers seen (retried)
	Status4xx   int64 `json:"status_4xx"`   // 4xx answers (not retried)
	ConnErrors  int64 `json:"conn_errors"`  // requests without an answer (retried)
	MissingFrom int64 `json:"missing_202"`  // 202-answered purchases the Store does not have, or not final
	NotFinal    int64 `json:"not_final"`    // of those: present but still pending after the drain
	Checked     int64 `json:"checked_202s"` // 202s looked up after the audit
	// Other5xx are the 5xx answers that are not the contract's "retry" (503 unavailable or overloaded:
	// nothing written; 504 outcome_unknown: retry with the same key), and 202s without an id.
	Other5xx int64 `json:"status_5xx_outside_contract"`
	// Why5xx counts the 5xx answers by status, error code and message (at most 20 distinct).
	Why5xx map[string]int64 `json:"status_5xx_by,omitempty"`
}

func (d *driver) stats() clientStats {
	return clientStats{Sent: d.seq.Load(), Accepted: d.accepted.Load(), Failed: d.failed.Load(),
		Skipped: d.skipped.Load(), Attempts: d.attempts.Load(), Status5xx: d.status5xx.Load(),
		Status4xx: d.status4xx.Load(), ConnErrors: d.connErrors.Load(), Other5xx: d.other5xx.Load(),
		Why5xx: d.why5xxCopy()}
}

func (d *driver) why5xxCopy() map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.why5xx) == 0 {
		return nil
	}
	return maps.Clone(d.why5xx)
}

// verify202s looks every accepted purchase up in the Store after the drain: each must exist and be final
// (approved or declined by the Bank).
func verify202s(ctx context.Context, client *http.Client, url string, ids []string) (missing, notFinal int64, err error) {
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r, err := lookup(ctx, client, url, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && firstErr == nil:
				firstErr = err
			case r == "missing":
				missing++
			case r != "approved" && r != "declined":
				notFinal++
			}
		}()
	}
	wg.Wait()
	return missing, notFinal, firstErr
}

func lookup(ctx context.Context, client *http.Client, url, id string) (string, error) {
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/purchases/"+id, nil)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				var p struct {
					Status string `json:"status"`
				}
				if err := json.Unmarshal(b, &p); err != nil {
					return "", err
				}
				return p.Status, nil
			case http.StatusNotFound:
				return "missing", nil
			}
			err = fmt.Errorf("GET purchase %s: %d %s", id, resp.StatusCode, b)
		}
		if attempt == 5 {
			return "", err
		}
		time.Sleep(time.Second)
	}
}
