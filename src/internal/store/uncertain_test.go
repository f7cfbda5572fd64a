package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/banktest"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/web"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// Uncertain commits: store-db's synchronous standby stops answering (PostgreSQL then holds every commit until
// it returns, and makes one whose wait ends — its client gone, its deadline over — visible on the primary
// anyway), or the connection breaks during COMMIT. The API never answers 503 for a purchase that is or later
// becomes committed, always names the purchase, and accepts again as soon as commits are acknowledged.

// syncPair starts a primary whose every commit waits for one synchronous standby, and that standby.
func syncPair(t *testing.T) (primary, standby *pglocal.Server) {
	t.Helper()
	ctx := context.Background()
	primary, err := pglocal.Start(ctx, pglocal.Options{Settings: map[string]string{
		"synchronous_standby_names": "store_standby"}})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = primary.Close() })
	standby, err = primary.Standby(ctx, "store_standby", pglocal.Options{})
	if err != nil {
		t.Fatalf("start the standby: %v", err)
	}
	t.Cleanup(func() { _ = standby.Close() })
	if err := primary.CreateDatabase(ctx, "store"); err != nil {
		t.Fatal(err)
	}
	return primary, standby
}

// storeAPI serves the Store API over real HTTP as cmd/store does (purchase ids first, readiness on the
// database), each request bounded by timeout.
func storeAPI(t *testing.T, db *gorm.DB, timeout time.Duration) (*Repository, string) {
	t.Helper()
	repo := NewRepository(db, "store-test")
	sqlDB, _ := db.DB()
	reg := prometheus.NewRegistry()
	h := NewServer(repo, NewMetrics(reg), func() string { return "closed" },
		web.NewHealth(postgres.ReadyCheck(sqlDB, Migrations())), reg, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(web.Bounded(PurchaseIDs(h), web.ServerConfig{ReadBodyTimeout: 5 * time.Second,
		RequestTimeout: timeout}))
	t.Cleanup(srv.Close)
	return repo, srv.URL
}

type answer struct {
	status int
	header http.Header
	body   string
	err    error
}

// id is the purchase an answer names (Purchase-Id).
func (a answer) id() string { return a.header.Get(PurchaseIDHeader) }

func (a answer) String() string {
	if a.err != nil {
		return a.err.Error()
	}
	return fmt.Sprintf("%d %s %s", a.status, a.id(), a.body)
}

var client = &http.Client{Timeout: 30 * time.Second}

func post(base, key string) answer {
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/purchases", strings.NewReader(validPurchase))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(payment.IdempotencyHeader, key)
	}
	return do(req)
}

func get(url string) answer {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	return do(req)
}

func do(req *http.Request) answer {
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

// wantUnconfirmed fails unless a is the 504 naming its purchase: Purchase-Id, the same id in Location,
// Retry-After, code outcome_unknown.
func wantUnconfirmed(t *testing.T, a answer, what string) {
	t.Helper()
	var e payment.ErrorBody
	if a.err != nil || a.status != http.StatusGatewayTimeout || a.id() == "" ||
		a.header.Get("Location") != "/v1/purchases/"+a.id() || a.header.Get("Retry-After") == "" ||
		json.Unmarshal([]byte(a.body), &e) != nil || e.Error.Code != payment.CodeOutcomeUnknown {
		t.Fatalf("%s: %v %v; want 504 outcome_unknown naming the purchase", what, a, a.header)
	}
}

// want202 fails unless a is a 202 whose body, Purchase-Id and Location name one purchase; it returns its id.
func want202(t *testing.T, a answer, what string) string {
	t.Helper()
	var p Purchase
	if a.err != nil || a.status != http.StatusAccepted || json.Unmarshal([]byte(a.body), &p) != nil ||
		p.ID.String() != a.id() || a.header.Get("Location") != "/v1/purchases/"+a.id() {
		t.Fatalf("%s: %v; want 202 naming its purchase", what, a)
	}
	return a.id()
}

// TestStandbyGoneNeverA503: store-db's synchronous standby stops, purchases arrive with a 4 s request
// deadline — with a key, without, and a flood of 30 clients retrying with their keys on a pool of 6
// connections. Every answer is a 504 naming its purchase, never a 503 (the purchases are committed on the
// primary: a client told "nothing was written" would pay twice); a retry with the same key names the same
// purchase; readiness holds (no connection is left to wait for the standby beyond the bounded writers and
// one durability barrier). Once the standby is back the API accepts within 5 s, the keyed retries answer 202
// with their first ids, the keyless purchases answered 504 are found by their ids, and nothing was stored
// twice.
func TestStandbyGoneNeverA503(t *testing.T) {
	primary, standby := syncPair(t)
	db, err := postgres.Open(postgres.Config{URL: primary.DSN("store"), MaxConns: 6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { postgres.Close(db) })
	sqlDB, _ := db.DB()
	if _, err := postgres.Migrate(context.Background(), sqlDB, Migrations(), MigrationLockID,
		slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	_, base := storeAPI(t, db, 4*time.Second)
	want202(t, post(base, "warm-up"), "with the standby")

	if err := standby.Stop(); err != nil {
		t.Fatal(err)
	}
	first := map[string]answer{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, key := range []string{"order-1", "", ""} {
		wg.Go(func() {
			a := post(base, key)
			mu.Lock()
			first[fmt.Sprint(key, len(first))] = a
			mu.Unlock()
		})
	}
	wg.Wait()
	for k, a := range first {
		wantUnconfirmed(t, a, "a purchase ("+k+") without the standby")
	}
	var keyed, keyless []string
	for k, a := range first {
		if strings.HasPrefix(k, "order-1") {
			keyed = append(keyed, a.id())
		} else {
			keyless = append(keyless, a.id())
		}
	}
	retry := post(base, "order-1")
	wantUnconfirmed(t, retry, "the keyed retry without the standby")
	if retry.id() != keyed[0] {
		t.Fatalf("the retry of order-1 names %s, the first answer %s", retry.id(), keyed[0])
	}

	// A flood of keyed retries, and readiness sampled meanwhile. With every writer waiting for the standby,
	// a new purchase may leave the queue unwritten at its deadline: a 503, true as long as it never exists.
	var stop atomic.Bool
	var flood, ready sync.WaitGroup
	var notReady, readyChecks atomic.Int64
	var floodAnswers []answer
	for i := range 30 {
		flood.Go(func() {
			key := fmt.Sprintf("flood-%d", i)
			for !stop.Load() {
				a := post(base, key)
				mu.Lock()
				floodAnswers = append(floodAnswers, a)
				mu.Unlock()
				switch a.status {
				case http.StatusAccepted, http.StatusServiceUnavailable:
				case http.StatusGatewayTimeout:
					wantUnconfirmed(t, a, "flood "+key)
				default:
					t.Errorf("flood %s without the standby: %v", key, a)
					return
				}
			}
		})
	}
	ready.Go(func() {
		for !stop.Load() {
			a := get(base + "/readyz")
			readyChecks.Add(1)
			if a.status != http.StatusOK {
				notReady.Add(1)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	time.Sleep(10 * time.Second)
	if n := notReady.Load(); n > 0 {
		t.Errorf("/readyz failed %d of %d times while the flood waited for the standby", n, readyChecks.Load())
	}

	if err := standby.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for {
		a := post(base, "")
		if a.status == http.StatusAccepted {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatalf("5 s after the standby returned, a purchase still gets %v", a)
		}
		if a.status != http.StatusGatewayTimeout {
			t.Fatalf("a purchase just after the standby returned: %v", a)
		}
	}
	t.Logf("accepting %v after the standby returned", time.Since(back).Round(time.Millisecond))
	stop.Store(true)
	flood.Wait()
	ready.Wait()

	replay := post(base, "order-1")
	if want202(t, replay, "the keyed retry with the standby back") != keyed[0] ||
		replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("order-1 replayed as %v, first named %s", replay, keyed[0])
	}
	for _, id := range keyless {
		if a := get(base + "/v1/purchases/" + id); a.status != http.StatusOK {
			t.Fatalf("keyless purchase %s answered 504: now %v", id, a)
		}
	}
	statuses := map[int]int{}
	for _, a := range floodAnswers {
		statuses[a.status]++
		var n int64
		if err := db.Raw("SELECT count(*) FROM purchases WHERE id = ?", a.id()).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if a.status == http.StatusServiceUnavailable && n != 0 {
			t.Errorf("purchase %s was answered 503 and is stored", a.id())
		}
		if strings.Contains(a.body, "stored but") && n != 1 {
			t.Errorf("purchase %s was answered 504 stored, and is not", a.id())
		}
	}
	t.Logf("flood answers by status while the standby was away: %v", statuses)
	var dup int64
	if err := db.Raw(`SELECT count(*) FROM (SELECT idempotency_key FROM purchases WHERE idempotency_key IS NOT NULL
		GROUP BY idempotency_key HAVING count(*) > 1) d`).Scan(&dup).Error; err != nil || dup != 0 {
		t.Fatalf("%d keys stored twice (%v)", dup, err)
	}
	var keys int64
	if err := db.Raw(`SELECT count(*) FROM purchases WHERE idempotency_key LIKE 'flood-%'`).Scan(&keys).Error; err != nil ||
		keys > 30 {
		t.Fatalf("%d flood purchases for 30 keys (%v)", keys, err)
	}
}

// TestCommitConnectionLost: the connection to store-db breaks while a purchase's COMMIT waits for the
// synchronous standby; the standby returns within the request's deadline. The purchase is committed (the
// server made it visible when its client went away): the answer is its 202 — after the durability barrier —
// not a 503, and it is stored once.
func TestCommitConnectionLost(t *testing.T) {
	primary, standby := syncPair(t)
	openDB(t, primary.DSN("store")) // migrate directly
	proxy := banktest.NewProxy(t, primary.Addr())
	db := openDB(t, strings.Replace(primary.DSN("store"), primary.Addr(), proxy.Addr(), 1))
	_, base := storeAPI(t, db, 8*time.Second)
	want202(t, post(base, ""), "with the standby")

	if err := standby.Stop(); err != nil {
		t.Fatal(err)
	}
	answered := make(chan answer, 1)
	go func() { answered <- post(base, "") }()
	waitForSyncRep(t, primary)
	proxy.Down() // the COMMIT's connection breaks
	time.Sleep(300 * time.Millisecond)
	if err := proxy.Up(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := <-answered
	id := want202(t, a, "a purchase whose COMMIT lost its connection")
	var n int64
	if err := db.Raw("SELECT count(*) FROM purchases WHERE id = ?", id).Scan(&n).Error; err != nil || n != 1 {
		t.Fatalf("purchase %s stored %d times (%v)", id, n, err)
	}
	if total := count(t, db, "purchases"); total != 2 {
		t.Fatalf("%d purchases, want 2", total)
	}
}

// waitForSyncRep waits until a backend of primary waits for its synchronous standby.
func waitForSyncRep(t *testing.T, primary *pglocal.Server) {
	t.Helper()
	mon := openDBNoMigrate(t, primary.DSN("store"))
	for deadline := time.Now().Add(10 * time.Second); ; {
		var n int64
		if err := mon.Raw(`SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'`).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no commit waits for the synchronous standby after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func openDBNoMigrate(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := postgres.Open(postgres.Config{URL: dsn, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { postgres.Close(db) })
	return db
}
