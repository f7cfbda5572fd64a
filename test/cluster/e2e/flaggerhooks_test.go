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
		id, _ := tx["id"].(string)
		store, _ := tx["store_id"].(string)
		b.stores[store]++
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

func TestAcceptanceHookPassesOnAnIdempotentBankAndFailsOtherwise(t *testing.T) {
	bank := &fakeBank{seen: map[string]map[string]any{}, stores: map[string]int{}}
	h, url := startFakeHooks(t, bank)
	if code := callHook(t, url+"/acceptance", strings.Replace(hookPayload, "%s", "", 1)); code != http.StatusOK {
		t.Fatalf("acceptance on an idempotent Bank: %d, want 200", code)
	}
	if bank.stores["flagger-acceptance"] != 2 {
		t.Errorf("the Bank saw %v, want 2 posts (first and replay) from flagger-acceptance", bank.stores)
	}
	bank.mu.Lock()
	bank.replayStatus = "declined"
	bank.mu.Unlock()
	if code := callHook(t, url+"/acceptance", strings.Replace(hookPayload, "%s", "", 1)); code != http.StatusInternalServerError {
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
	bank := &fakeBank{seen: map[string]map[string]any{}, stores: map[string]int{}}
	h, url := startFakeHooks(t, bank)
	for _, bad := range []string{`,"rate":"0","duration":"1s"`, `,"rate":"10"`, `,"rate":"x","duration":"1s"`} {
		if code := callHook(t, url+"/load", strings.Replace(hookPayload, "%s", bad, 1)); code != http.StatusBadRequest {
			t.Errorf("load with metadata %s: %d, want 400", bad, code)
		}
	}
	start := time.Now()
	if code := callHook(t, url+"/load", strings.Replace(hookPayload, "%s", `,"rate":"50","duration":"400ms"`, 1)); code != http.StatusAccepted {
		t.Fatalf("load: %d, want 202", code)
	}
	if time.Since(start) > 300*time.Millisecond {
		t.Errorf("the load webhook answered after %s: it must not wait for the load", time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.stats().LoadOK < 10 && time.Now().Before(deadline) {
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
}
