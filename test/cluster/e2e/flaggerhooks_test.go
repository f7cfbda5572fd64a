package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBank answers as the Bank's API does: 201 for a new transaction, 200 and the stored answer for a replay,
// the transaction for GET. replayStatus, when set, is what a replay answers instead (a broken canary).
type fakeBank struct {
	mu           sync.Mutex
	seen         map[string]map[string]any
	replayStatus string
	stores       map[string]int
	accounts     map[string]int
	posted       []time.Time
}

func newFakeBank() *fakeBank {
	return &fakeBank{seen: map[string]map[string]any{}, stores: map[string]int{}, accounts: map[string]int{}}
}

func (b *fakeBank) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/transactions":
		var tx map[string]any
		if err := json.NewDecoder(r.Body).Decode(&tx); err != nil || r.Header.Get("Idempotency-Key") != tx["id"] {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		b.posted = append(b.posted, time.Now())
		id, _ := tx["id"].(string)
		store, _ := tx["store_id"].(string)
		b.stores[store]++
		account, _ := tx["account_id"].(string)
		b.accounts[account]++
		if prev, ok := b.seen[id]; ok {
			if b.replayStatus != "" {
				prev = map[string]any{"id": id, "status": b.replayStatus}
			}
			_ = json.NewEncoder(w).Encode(prev)
			return
		}
		res := map[string]any{"id": id, "status": "approved"}
		b.seen[id] = res
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(res)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/transactions/"):
		if res, ok := b.seen[strings.TrimPrefix(r.URL.Path, "/v1/transactions/")]; ok {
			_ = json.NewEncoder(w).Encode(res)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func startFakeHooks(t *testing.T, bank *fakeBank) (*flaggerHooks, string) {
	t.Helper()
	srv := httptest.NewTLSServer(bank)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The fake's certificate is httptest's, not one for bank.txmesh.svc.cluster.local.
	base := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a test's own throwaway server
	h, err := startHooks(ctx, "127.0.0.1:0", base, func(_ context.Context, svc string) (string, error) {
		if svc != "bank-canary" {
			t.Errorf("resolved %q, want bank-canary", svc)
		}
		return srv.URL, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, "http://" + h.addr
}

func callHook(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

const hookPayload = `{"name":"bank","namespace":"txmesh","phase":"Progressing","metadata":{"service":"bank-canary"%s}}`

// canary is the accounts metadata of kustomize/overlays/e2e-cd/canary-bank.yaml's webhooks.
const canary = `,"accounts":"CANARY-000001"`

func TestAcceptanceHookPassesOnAnIdempotentBankAndFailsOtherwise(t *testing.T) {
	bank := newFakeBank()
	h, url := startFakeHooks(t, bank)
	if code := callHook(t, url+"/acceptance", strings.Replace(hookPayload, "%s", canary, 1)); code != http.StatusOK {
		t.Fatalf("acceptance on an idempotent Bank: %d, want 200", code)
	}
	if bank.stores["flagger-acceptance"] != 2 || bank.accounts["CANARY-000001"] != 2 || len(bank.accounts) != 1 {
		t.Errorf("the Bank saw stores %v, accounts %v; want 2 posts (first and replay) from flagger-acceptance "+
			"on CANARY-000001", bank.stores, bank.accounts)
	}
	bank.mu.Lock()
	bank.replayStatus = "declined"
	bank.mu.Unlock()
	if code := callHook(t, url+"/acceptance", strings.Replace(hookPayload, "%s", canary, 1)); code != http.StatusInternalServerError {
		t.Fatalf("acceptance on a Bank whose replay differs: %d, want 500 (a failed check)", code)
	}
	if code := callHook(t, url+"/acceptance", `{"metadata":{}}`); code != http.StatusInternalServerError {
		t.Fatalf("acceptance without a service: %d, want 500", code)
	}
	if s := h.stats(); s.AcceptanceOK != 1 || s.AcceptanceFailed != 2 {
		t.Errorf("stats %+v, want 1 passed and 2 failed", s)
	}
}

func TestLoadHookSendsInTheBackground(t *testing.T) {
	bank := newFakeBank()
	h, url := startFakeHooks(t, bank)
	for _, bad := range []string{canary + `,"rate":"0","duration":"1s"`, canary + `,"rate":"10"`,
		canary + `,"rate":"x","duration":"1s"`} {
		if code := callHook(t, url+"/load", strings.Replace(hookPayload, "%s", bad, 1)); code != http.StatusBadRequest {
			t.Errorf("load with metadata %s: %d, want 400", bad, code)
		}
	}
	start := time.Now()
	if code := callHook(t, url+"/load", strings.Replace(hookPayload, "%s",
		`,"accounts":"CANARY-000001..CANARY-000003","rate":"50","duration":"400ms"`, 1)); code != http.StatusAccepted {
		t.Fatalf("load: %d, want 202", code)
	}
	if time.Since(start) > 300*time.Millisecond {
		t.Errorf("the load webhook answered after %s: it must not wait for the load", time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.stats().LoadOK < 10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// The load runs on after the tenth answer (20 transactions in 400 ms): compare the counts once it is over,
	// or a transaction the Bank has counted and the hook not yet reads as a mismatch.
	for time.Now().Before(deadline) {
		h.mu.Lock()
		busy := h.loading["bank-canary"] != nil
		h.mu.Unlock()
		if !busy {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := h.stats()
	if s.LoadCalls != 1 || s.LoadOK < 10 || s.Load4xx+s.Load5xx+s.LoadErr != 0 {
		t.Errorf("stats %+v: want 1 call and ≥ 10 transactions answered 2xx", s)
	}
	bank.mu.Lock()
	defer bank.mu.Unlock()
	if bank.stores["flagger-load"] != int(s.LoadOK) {
		t.Errorf("the Bank saw %v, the hook counted %d", bank.stores, s.LoadOK)
	}
	for acc, n := range bank.accounts {
		if n == 0 || (acc != "CANARY-000001" && acc != "CANARY-000002" && acc != "CANARY-000003") {
			t.Errorf("the load spent %s (%d times): want CANARY-000001..CANARY-000003 only", acc, n)
		}
	}
	if len(bank.accounts) != 3 {
		t.Errorf("the load spent %v: want each of the three canary accounts", bank.accounts)
	}
}

// TestLoadHookCallsKeepTheLoadUnbroken: Flagger calls the load test every interval; a call while a load runs
// extends it, so the canary's traffic has no gap a check could fall into (the old hook ignored the call).
func TestLoadHookCallsKeepTheLoadUnbroken(t *testing.T) {
	bank := newFakeBank()
	h, url := startFakeHooks(t, bank)
	load := strings.Replace(hookPayload, "%s", canary+`,"rate":"50","duration":"400ms"`, 1)
	start := time.Now()
	for range 3 {
		if code := callHook(t, url+"/load", load); code != http.StatusAccepted {
			t.Fatalf("load: %d, want 202", code)
		}
		time.Sleep(250 * time.Millisecond)
	}
	waitLoadOver(t, h)
	bank.mu.Lock()
	defer bank.mu.Unlock()
	if len(bank.posted) == 0 {
		t.Fatal("no transaction sent")
	}
	if last := bank.posted[len(bank.posted)-1].Sub(start); last < 850*time.Millisecond {
		t.Errorf("the last transaction came %s after the first call: want the load to run until the third call's "+
			"end (0.9 s)", last)
	}
	for i := 1; i < len(bank.posted); i++ {
		if gap := bank.posted[i].Sub(bank.posted[i-1]); gap > 200*time.Millisecond {
			t.Errorf("a gap of %s in the load after transaction %d: want one unbroken load", gap, i)
		}
	}
	if s := h.stats(); s.LoadCalls != 3 || int(s.LoadOK) != len(bank.posted) {
		t.Errorf("stats %+v: want 3 calls and every one of the Bank's %d transactions answered 2xx", s, len(bank.posted))
	}
}

// TestLoadHookBlockingAnswersOnceTheLoadIsOver: the pre-rollout warm-up (blocking: "true") answers after its
// load, every transaction of it answered, so the first analysis finds the canary's traffic.
func TestLoadHookBlockingAnswersOnceTheLoadIsOver(t *testing.T) {
	bank := newFakeBank()
	h, url := startFakeHooks(t, bank)
	if code := callHook(t, url+"/load", strings.Replace(hookPayload, "%s",
		canary+`,"rate":"50","duration":"100ms","blocking":"maybe"`, 1)); code != http.StatusBadRequest {
		t.Errorf("load with blocking maybe: %d, want 400", code)
	}
	start := time.Now()
	if code := callHook(t, url+"/load", strings.Replace(hookPayload, "%s",
		canary+`,"rate":"50","duration":"400ms","blocking":"true"`, 1)); code != http.StatusOK {
		t.Fatalf("blocking load: %d, want 200", code)
	}
	if took := time.Since(start); took < 400*time.Millisecond {
		t.Errorf("the blocking load answered after %s: want after its 400 ms of load", took)
	}
	bank.mu.Lock()
	sent := len(bank.posted)
	bank.mu.Unlock()
	if s := h.stats(); sent < 10 || int(s.LoadOK) != sent {
		t.Errorf("at the answer the Bank had %d transactions and the hook %+v: want ≥ 10, each answered 2xx", sent, s)
	}
}

func waitLoadOver(t *testing.T, h *flaggerHooks) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		h.mu.Lock()
		busy := len(h.loading) > 0
		h.mu.Unlock()
		if !busy {
			return
		}
	}
	t.Fatal("the load still runs after 5 s")
}

// TestHooksNeverSpendCustomerAccounts: without canary accounts in the metadata, or with a customer's
// (the old webhooks' ACC-000001), neither test sends anything.
func TestHooksNeverSpendCustomerAccounts(t *testing.T) {
	bank := newFakeBank()
	_, url := startFakeHooks(t, bank)
	for _, meta := range []string{"", `,"accounts":""`, `,"accounts":"ACC-000001"`,
		`,"accounts":"CANARY-000001 ACC-000002"`, `,"accounts":"CANARY-000001..ACC-000050"`,
		`,"accounts":"CANARY-000005..CANARY-000001"`, `,"accounts":"CANARY-1"`, `,"accounts":"CANARY-000000"`} {
		if code := callHook(t, url+"/acceptance", strings.Replace(hookPayload, "%s", meta, 1)); code != http.StatusInternalServerError {
			t.Errorf("acceptance with metadata %q: %d, want 500 (a failed check)", meta, code)
		}
		if code := callHook(t, url+"/load", strings.Replace(hookPayload, "%s", meta+`,"rate":"50","duration":"100ms"`, 1)); code != http.StatusBadRequest {
			t.Errorf("load with metadata %q: %d, want 400", meta, code)
		}
	}
	// Both answered before sending anything (the load is refused before it starts): nothing can come later.
	bank.mu.Lock()
	defer bank.mu.Unlock()
	if len(bank.accounts) != 0 {
		t.Errorf("the Bank saw %v: want nothing", bank.accounts)
	}
}

func TestCanaryAccounts(t *testing.T) {
	got, err := canaryAccounts("CANARY-000001, CANARY-000009..CANARY-000011")
	if want := "CANARY-000001 CANARY-000009 CANARY-000010 CANARY-000011"; err != nil || strings.Join(got, " ") != want {
		t.Fatalf("canaryAccounts: %v %v, want %s", got, err, want)
	}
}
