package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// hooksPort is where Flagger reaches the harness's webhooks (kustomize/overlays/e2e-cd/canary-bank.yaml).
const hooksPort = 5002

// flaggerHooks is make e2e's stand-in for flagger-loadtester, an image of which built here would hold its binary only (no curl,
// no shell for the webhooks of components/canary): Flagger calls these webhooks on the host's bridge address
// as it calls the load tester, and they send what production's do — the acceptance test (a transaction on the
// canary, read back, replayed: the same answer) and a load test (transactions with unique ids) — to the
// Service the webhook's metadata names, over the harness's mTLS client, on the canary accounts its metadata
// names (accounts: CANARY-000001..CANARY-000010; the e2e overlay's seed creates them): never a customer's.
// Their transactions carry the probe store ids the audit counts apart (audit.ProbeStores).
type flaggerHooks struct {
	addr    string
	resolve func(ctx context.Context, svc string) (string, error) // Service → https://<ClusterIP>:8080
	tls     *tls.Config

	mu      sync.Mutex
	loading map[string]*loadRun // Services with a load test running

	acceptanceOK, acceptanceFailed               atomic.Int64
	loadCalls, loadOK, load4xx, load5xx, loadErr atomic.Int64
	lastFailure                                  atomic.Value // string: why the last acceptance test failed
}

// hookStats is what the webhooks did, for a row's checks (a difference of two snapshots).
type hookStats struct {
	AcceptanceOK, AcceptanceFailed, LoadCalls, LoadOK, Load4xx, Load5xx, LoadErr int64
	LastFailure                                                                  string
}

func (h *flaggerHooks) stats() hookStats {
	last, _ := h.lastFailure.Load().(string)
	return hookStats{h.acceptanceOK.Load(), h.acceptanceFailed.Load(), h.loadCalls.Load(), h.loadOK.Load(),
		h.load4xx.Load(), h.load5xx.Load(), h.loadErr.Load(), last}
}

func (a hookStats) since(b hookStats) hookStats {
	d := hookStats{a.AcceptanceOK - b.AcceptanceOK, a.AcceptanceFailed - b.AcceptanceFailed,
		a.LoadCalls - b.LoadCalls, a.LoadOK - b.LoadOK, a.Load4xx - b.Load4xx, a.Load5xx - b.Load5xx,
		a.LoadErr - b.LoadErr, ""}
	if d.AcceptanceFailed > 0 {
		d.LastFailure = a.LastFailure
	}
	return d
}

func (a hookStats) String() string {
	s := fmt.Sprintf("acceptance test %d passed, %d failed; load test called %d times: %d transactions answered "+
		"2xx, %d 4xx, %d 5xx, %d no answer", a.AcceptanceOK, a.AcceptanceFailed, a.LoadCalls, a.LoadOK, a.Load4xx,
		a.Load5xx, a.LoadErr)
	if a.LastFailure != "" {
		s += "; the last acceptance failure: " + a.LastFailure
	}
	return s
}

// startHooks serves the webhooks on addr until ctx ends.
func startHooks(ctx context.Context, addr string, base *tls.Config,
	resolve func(ctx context.Context, svc string) (string, error)) (*flaggerHooks, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("flagger webhooks: %w", err)
	}
	h := &flaggerHooks{addr: ln.Addr().String(), resolve: resolve, tls: base, loading: map[string]*loadRun{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /acceptance", h.serveAcceptance(ctx))
	mux.HandleFunc("POST /load", h.serveLoad(ctx))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return h, nil
}

// webhookPayload is what Flagger posts to a webhook (pkg/apis/flagger/v1beta1 CanaryWebhookPayload).
type webhookPayload struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Phase     string            `json:"phase"`
	Metadata  map[string]string `json:"metadata"`
	accounts  []string
}

func decodePayload(r *http.Request) (webhookPayload, error) {
	var p webhookPayload
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil {
		return p, fmt.Errorf("webhook payload: %w", err)
	}
	if p.Metadata["service"] == "" {
		return p, errors.New("webhook metadata names no service")
	}
	var err error
	p.accounts, err = canaryAccounts(p.Metadata["accounts"])
	return p, err
}

// canaryPrefix starts every canary account's id (the main module's payment.CanaryAccountPrefix).
const canaryPrefix = "CANARY-"

// canaryAccounts parses metadata.accounts: ids and ranges FIRST..LAST of canary accounts, separated by spaces
// or commas. Anything else is refused: canary load never spends a customer's account.
func canaryAccounts(s string) ([]string, error) {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		first, last, isRange := strings.Cut(f, "..")
		if !isRange {
			last = first
		}
		a, errA := canaryNumber(first)
		b, errB := canaryNumber(last)
		switch {
		case errA != nil:
			return nil, errA
		case errB != nil:
			return nil, errB
		case b < a || b-a >= 1000:
			return nil, fmt.Errorf("webhook metadata accounts: range %q: want FIRST..LAST, at most 1000", f)
		}
		for n := a; n <= b; n++ {
			out = append(out, fmt.Sprintf("%s%06d", canaryPrefix, n))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("webhook metadata names no accounts: want canary accounts (accounts: " +
			canaryPrefix + "000001..)")
	}
	return out, nil
}

func canaryNumber(id string) (int, error) {
	digits, ok := strings.CutPrefix(id, canaryPrefix)
	n, err := strconv.Atoi(digits)
	if !ok || err != nil || len(digits) != 6 || n < 1 {
		return 0, fmt.Errorf("webhook metadata accounts: %q is not a canary account (%s000001…%s999999): "+
			"canary load never spends a customer's account", id, canaryPrefix, canaryPrefix)
	}
	return n, nil
}

// client talks to svc (bank-canary): the certificate is the app's (bank), whose Service name it carries.
func (h *flaggerHooks) client(svc string) *http.Client {
	c := h.tls.Clone()
	c.ServerName = strings.TrimSuffix(svc, "-canary") + "." + namespace + ".svc.cluster.local"
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c, MaxIdleConnsPerHost: 16}}
}

func (h *flaggerHooks) serveAcceptance(ctx context.Context) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := decodePayload(r)
		if err == nil {
			err = h.acceptance(r.Context(), p.Metadata["service"], p.accounts[0])
		}
		if err != nil {
			h.lastFailure.Store(err.Error())
			h.acceptanceFailed.Add(1)
			http.Error(w, err.Error(), http.StatusInternalServerError) // Flagger: a failed check
			return
		}
		h.acceptanceOK.Add(1)
		_, _ = io.WriteString(w, "acceptance test passed\n")
	}
}

// probe is one transaction of the acceptance or load test.
func probe(store, account string) (string, []byte) {
	id := uuid.NewString()
	b, _ := json.Marshal(map[string]any{"id": id, "store_id": store, "account_id": account, "amount": 1,
		"currency": "EUR", "created_at": time.Now().UTC().Format(time.RFC3339)})
	return id, b
}

func post(ctx context.Context, c *http.Client, url, id string, body []byte) (int, map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/transactions", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", id)
	return do(c, req)
}

func do(c *http.Client, req *http.Request) (int, map[string]any, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m, nil
}

// acceptance is components/canary's acceptance test: a transaction on the canary (on a canary account) is
// approved, can be read back, and its replay (same id, same body) gets the same answer.
func (h *flaggerHooks) acceptance(ctx context.Context, svc, account string) error {
	url, err := h.resolve(ctx, svc)
	if err != nil {
		return err
	}
	c := h.client(svc)
	id, body := probe("flagger-acceptance", account)
	code, first, err := post(ctx, c, url, id, body)
	if err != nil {
		return fmt.Errorf("POST %s/v1/transactions: %w", svc, err)
	}
	if code != http.StatusCreated || first["status"] != "approved" {
		return fmt.Errorf("POST %s/v1/transactions: %d %v, want 201 approved", svc, code, first)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/transactions/"+id, nil)
	code, got, err := do(c, req)
	if err != nil {
		return fmt.Errorf("GET %s/v1/transactions/%s: %w", svc, id, err)
	}
	if code != http.StatusOK || got["id"] != id {
		return fmt.Errorf("GET %s/v1/transactions/%s: %d %v, want 200 and the transaction", svc, id, code, got)
	}
	code, again, err := post(ctx, c, url, id, body)
	if err != nil {
		return fmt.Errorf("replay on %s: %w", svc, err)
	}
	if code != http.StatusOK || again["status"] != first["status"] {
		return fmt.Errorf("replay on %s: %d %v, want 200 %v", svc, code, again, first["status"])
	}
	return nil
}

// loadRun is one Service's load test: it sends until end, which a later call may push on; done closes once
// every transaction it sent has its answer.
type loadRun struct {
	end  time.Time
	done chan struct{}
}

// serveLoad starts a load test on the canary and answers at once, as the load tester runs a `cmd` in the
// background: metadata rate (transactions/s) for duration. One at a time per Service: a call while one runs
// extends it to now+duration, so calls every analysis interval keep the canary's traffic unbroken (a gap
// leaves a check without data, which Flagger counts as failed). With metadata blocking: "true" it answers
// once the load is over, as the load tester runs a `bash` webhook: a pre-rollout warm-up, so that the first
// analysis already finds the canary's traffic in Prometheus.
func (h *flaggerHooks) serveLoad(ctx context.Context) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := decodePayload(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rate, err := strconv.ParseFloat(p.Metadata["rate"], 64)
		if err != nil || rate <= 0 {
			http.Error(w, "metadata rate: want transactions per second > 0", http.StatusBadRequest)
			return
		}
		d, err := time.ParseDuration(p.Metadata["duration"])
		if err != nil || d <= 0 {
			http.Error(w, "metadata duration: want a duration > 0", http.StatusBadRequest)
			return
		}
		blocking := false
		if b, ok := p.Metadata["blocking"]; ok {
			if blocking, err = strconv.ParseBool(b); err != nil {
				http.Error(w, "metadata blocking: want true or false", http.StatusBadRequest)
				return
			}
		}
		h.loadCalls.Add(1)
		svc := p.Metadata["service"]
		end := time.Now().Add(d)
		h.mu.Lock()
		run := h.loading[svc]
		if run == nil {
			run = &loadRun{end: end, done: make(chan struct{})}
			h.loading[svc] = run
			go func() {
				defer close(run.done)
				h.load(ctx, svc, p.accounts, rate, run)
			}()
		} else if end.After(run.end) {
			run.end = end
		}
		h.mu.Unlock()
		if !blocking {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		select {
		case <-run.done:
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	}
}

// over reports whether run has reached its end, and if so takes it off the running loads in the same step,
// so that a call extending it either lands before (and is honoured) or starts a new run.
func (h *flaggerHooks) over(svc string, run *loadRun) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Now().Before(run.end) {
		return false
	}
	if h.loading[svc] == run {
		delete(h.loading, svc)
	}
	return true
}

func (h *flaggerHooks) load(ctx context.Context, svc string, accounts []string, rate float64, run *loadRun) {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() { // a run cut short (no Service, the harness ending) is over too
		h.mu.Lock()
		if h.loading[svc] == run {
			delete(h.loading, svc)
		}
		h.mu.Unlock()
	}()
	url, err := h.resolve(ctx, svc)
	if err != nil {
		h.loadErr.Add(1)
		return
	}
	c := h.client(svc)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := 0; !h.over(svc, run); i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, body := probe("flagger-load", accounts[i%len(accounts)])
			switch code, _, err := post(ctx, c, url, id, body); {
			case err != nil:
				h.loadErr.Add(1)
			case code >= 500:
				h.load5xx.Add(1)
			case code < 300:
				h.loadOK.Add(1)
			default:
				h.load4xx.Add(1)
			}
		}()
	}
}
