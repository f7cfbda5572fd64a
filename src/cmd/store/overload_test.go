package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/internal/audit"
	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/banktest"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/web"
	"github.com/txmesh/txmesh/src/internal/webtest"
)

// overloadClient posts purchases to a Store over mTLS, one keep-alive connection per concurrent caller.
type overloadClient struct {
	base string
	hc   *http.Client
}

// post sends one purchase with an Idempotency-Key and reads the whole answer.
func (c overloadClient) post(ctx context.Context, key string) (webtest.Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/purchases",
		strings.NewReader(`{"account_id":"ACC-000007","amount":3,"currency":"EUR"}`))
	if err != nil {
		return webtest.Answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.hc.Do(req)
	if err != nil {
		return webtest.Answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return webtest.Answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, err
}

func (c overloadClient) metric(t *testing.T, name string) float64 {
	t.Helper()
	v, err := webtest.Metric(c.hc, c.base+web.PathMetrics, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOverloadShedsBeyondTheBound runs the store binary over HTTPS with client certificates, on a real
// PostgreSQL, relaying to a real Bank, with HTTP_MAX_IN_FLIGHT=8.
//
//  1. The bound, exactly: with purchases locked against inserts (a test transaction holds LOCK TABLE … SHARE),
//     8 purchases stay in the Store's handler; a burst of 200 more is answered 503 overloaded with
//     Retry-After at once — while the 8 still wait, so nothing queued — /healthz, /readyz and /metrics answer
//     meanwhile, and the metrics say 8 in flight and 200 shed. Unlocked, the 8 are accepted.
//  2. A burst, freely: 1,500 purchases from 200 concurrent connections, 25 times the bound; /metrics
//     sampled throughout never shows more than 8 in flight; every answer is a 202 or a 503 overloaded, the
//     Store's shed counter equals the 503s.
//
// Then the database holds exactly the purchases answered 202 (by id) and none with a shed request's key, the
// relay delivers them all, and the audit of both databases is clean.
func TestOverloadShedsBeyondTheBound(t *testing.T) {
	const bound, burst, clients, total = 8, 200, 200, 1500
	bin := buildStore(t)
	bank := banktest.Start(t, banktest.Options{Accounts: 10})
	dsn := pgtest.NewDatabase(t)
	c := bank.Certs
	p := startProcess(t, bin, "store-overload", withBank(bank, map[string]string{"DATABASE_URL": dsn,
		"STORE_ID": "store-overload", "LOG_LEVEL": "info", "GENERATOR_INTERVAL": "0",
		"HTTP_MAX_IN_FLIGHT": fmt.Sprint(bound), "DB_MAX_CONNS": "16", "RELAY_POLL_INTERVAL": "100ms",
		"TLS_CERT_FILE": c.ServerCert, "TLS_KEY_FILE": c.ServerKey, "TLS_CLIENT_CA_FILE": c.CA}))
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("store serves %s, want https", p.url)
	}
	tlsCfg, err := bankclient.TLSConfig(c.CA, c.ClientCert, c.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cli := overloadClient{base: p.url, hc: bankclient.HTTPClient(10*time.Second, clients, tlsCfg)}
	ctx := context.Background()
	if v := cli.metric(t, "store_http_max_requests_in_flight"); v != bound {
		t.Fatalf("store_http_max_requests_in_flight %v, want %d", v, bound)
	}

	accepted := map[string]bool{} // purchase ids answered 202
	var shedKeys []string
	record := func(key string, a webtest.Answer) {
		switch {
		case a.Status == http.StatusAccepted:
			var body struct{ ID string }
			if err := json.Unmarshal([]byte(a.Body), &body); err != nil || body.ID == "" {
				t.Errorf("202 without an id: %s", a.Body)
			}
			accepted[body.ID] = true
		case webtest.IsOverloaded(a):
			shedKeys = append(shedKeys, key)
		default:
			t.Errorf("purchase %s: %d %v %s; want 202, or 503 overloaded with Retry-After", key, a.Status, a.Header, a.Body)
		}
	}

	// 1. The bound, exactly.
	lock, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	if _, err := lock.Exec(ctx, "BEGIN; LOCK TABLE purchases IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		key string
		a   webtest.Answer
	}
	heldAnswers := make(chan answer, bound)
	for i := range bound {
		go func() {
			key := fmt.Sprintf("held-%d", i)
			a, err := cli.post(ctx, key)
			if err != nil {
				t.Errorf("held purchase %d: %v", i, err)
			}
			heldAnswers <- answer{key, a}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for cli.metric(t, "store_http_requests_in_flight") < bound {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d purchases in flight after 20s", bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var wg sync.WaitGroup
	shedAnswers := make([]answer, burst)
	var slowest atomic.Int64
	for i := range burst {
		wg.Go(func() {
			key := fmt.Sprintf("burst-%d", i)
			start := time.Now()
			a, err := cli.post(ctx, key)
			d := time.Since(start)
			for s := slowest.Load(); int64(d) > s && !slowest.CompareAndSwap(s, int64(d)); s = slowest.Load() {
			}
			if err != nil {
				t.Errorf("burst purchase %d: %v", i, err)
			}
			shedAnswers[i] = answer{key, a}
		})
	}
	wg.Wait()
	for _, s := range shedAnswers {
		webtest.WantOverloaded(t, s.a, "purchase beyond the bound")
		shedKeys = append(shedKeys, s.key)
	}
	for _, path := range []string{web.PathHealthz, web.PathReadyz} {
		a, err := webtest.Get(cli.hc, p.url+path)
		if err != nil || a.Status != http.StatusOK {
			t.Fatalf("GET %s with the bound full: %d %v %s", path, a.Status, err, a.Body)
		}
	}
	if v := cli.metric(t, "store_http_requests_in_flight"); v != bound {
		t.Fatalf("in flight %v with the bound full, want %d", v, bound)
	}
	if v := cli.metric(t, "store_http_requests_shed_total"); v != burst {
		t.Fatalf("shed %v, want %d", v, burst)
	}
	t.Logf("bound full: %d purchases held in the handler, %d more shed, the slowest answer in %s", bound, burst,
		time.Duration(slowest.Load()))
	if _, err := lock.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	for range bound {
		h := <-heldAnswers
		if h.a.Status != http.StatusAccepted {
			t.Fatalf("held purchase %s after the unlock: %d %s", h.key, h.a.Status, h.a.Body)
		}
		record(h.key, h.a)
	}

	// 2. A burst far above the bound, with the in-flight gauge sampled throughout.
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	var samples atomic.Int64
	sampler.Go(func() {
		for {
			select {
			case <-stopSampling:
				return
			default:
			}
			if v, err := webtest.Metric(cli.hc, p.url+web.PathMetrics, "store_http_requests_in_flight"); err == nil {
				samples.Add(1)
				for m := peak.Load(); int64(v) > m && !peak.CompareAndSwap(m, int64(v)); m = peak.Load() {
				}
			}
		}
	})
	var next atomic.Int64
	results := make([]answer, total)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < total; i = int(next.Add(1)) - 1 {
				key := fmt.Sprintf("free-%d", i)
				a, err := cli.post(ctx, key)
				if err != nil {
					t.Errorf("purchase %d: %v", i, err)
				}
				results[i] = answer{key, a}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopSampling)
	sampler.Wait()
	before := len(shedKeys)
	for _, r := range results {
		record(r.key, r.a)
	}
	free202, free503 := len(accepted)-bound, len(shedKeys)-before
	if free202 == 0 || free503 == 0 {
		t.Fatalf("burst: %d accepted, %d shed; want both", free202, free503)
	}
	if m := peak.Load(); m > bound || samples.Load() < 5 {
		t.Fatalf("in flight peaked at %d over %d samples, bound %d", m, samples.Load(), bound)
	}
	if v := cli.metric(t, "store_http_requests_shed_total"); int(v) != burst+free503 {
		t.Fatalf("the Store counted %v shed, the clients saw %d", v, burst+free503)
	}
	t.Logf("burst: %d purchases from %d connections in %s: %d accepted, %d shed; in flight peaked at %d (%d samples)",
		total, clients, elapsed.Round(time.Millisecond), free202, free503, peak.Load(), samples.Load())

	// The database holds exactly what was accepted, nothing that was shed; all of it reaches the Bank once.
	db, err := postgres.Open(postgres.Config{URL: dsn, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer postgres.Close(db)
	var ids []string
	if err := db.Raw("SELECT id::text FROM purchases").Scan(&ids).Error; err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !accepted[id] {
			t.Errorf("purchase %s is in the database but was never answered 202", id)
		}
	}
	if len(ids) != len(accepted) {
		t.Fatalf("%d purchases in the database, %d answered 202", len(ids), len(accepted))
	}
	var shedStored int64
	if err := db.Raw("SELECT count(*) FROM purchases WHERE idempotency_key IN ?", shedKeys).Scan(&shedStored).Error; err != nil {
		t.Fatal(err)
	}
	if shedStored != 0 {
		t.Fatalf("%d shed purchases were written", shedStored)
	}
	storeDB, _ := db.DB()
	if left, err := audit.WaitDrained(ctx, storeDB, 60*time.Second, 100*time.Millisecond); err != nil || left != 0 {
		t.Fatalf("backlog %d after the burst (%v)", left, err)
	}
	bankDB, _ := bank.DB.DB()
	rep, err := audit.Run(ctx, storeDB, bankDB)
	if err != nil {
		t.Fatal(err)
	}
	decided := rep.Purchases["approved"] + rep.Purchases["declined"] + rep.Purchases["rejected"]
	if !rep.Clean || decided != int64(len(accepted)) || rep.Bank.Transactions != decided {
		var out strings.Builder
		_ = rep.WriteText(&out)
		t.Fatalf("audit after the overload (%d accepted):\n%s", len(accepted), out.String())
	}
}
