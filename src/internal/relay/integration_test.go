package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/audit"
	"github.com/txmesh/txmesh/src/internal/banktest"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/store"
)

// The relay against a real Bank (in-process server, own database, HTTPS with client certificates, faults
// injected for real: refused and reset connections, 503s, answers slower than the client's timeout).

// createMany creates n purchases on random accounts of the first ten (amounts small enough to approve).
func createMany(t *testing.T, repo *store.Repository, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = createPurchase(t, repo, store.AccountID(1+rand.IntN(10)), 1+rand.Int64N(1000)).ID
	}
	return ids
}

func waitDrained(t *testing.T, repo *store.Repository, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "the outbox to drain", func() bool {
		b, err := repo.Backlog(context.Background())
		return err == nil && b.Size == 0
	})
}

// checkExactlyOnce proves each purchase reached the Bank once in effect: the Bank holds one row per purchase
// with the same fields and decision, no other row, and every account's balance is its seed minus its
// approved debits. rejected lists purchases expected dead-lettered (and absent from the Bank's decisions).
func checkExactlyOnce(t *testing.T, repo *store.Repository, db *gorm.DB, bank *banktest.Bank, ids []uuid.UUID,
	rejected ...uuid.UUID) {
	t.Helper()
	dead := map[uuid.UUID]bool{}
	for _, id := range rejected {
		dead[id] = true
	}
	debits := map[string]int64{}
	decided := int64(0)
	for _, id := range ids {
		p := getPurchase(t, repo, id)
		if dead[id] {
			if p.Status != store.StatusRejected {
				t.Errorf("purchase %s: %s, want rejected", id, p.Status)
			}
			continue
		}
		rec, ok := bank.Record(t, id)
		switch {
		case !ok:
			t.Errorf("purchase %s (%s) is not in the Bank", id, p.Status)
			continue
		case !rec.SameFields(p.Transaction()):
			t.Errorf("purchase %s: Bank holds %+v, Store sent %+v", id, rec.Transaction, p.Transaction())
		case string(rec.Status) != string(p.Status) || rec.Reason != p.Reason:
			t.Errorf("purchase %s: Store says %s/%s, Bank %s/%s", id, p.Status, p.Reason, rec.Status, rec.Reason)
		}
		decided++
		if rec.Status == payment.StatusApproved {
			debits[rec.AccountID] += rec.Amount
		}
	}
	if n := bank.Transactions(t) - int64(len(rejected)); n != decided {
		t.Errorf("the Bank holds %d decisions for %d purchases", n, decided)
	}
	for i := 1; i <= 10; i++ {
		acc := store.AccountID(i)
		if got, want := bank.Balance(t, acc), 1_000_000-debits[acc]; got != want {
			t.Errorf("%s balance %d, want %d", acc, got, want)
		}
	}
	if st := bank.Stats(); st.Created != decided {
		t.Errorf("the Bank processed %d transactions for the first time, want %d", st.Created, decided)
	}
	// And txaudit's verdict: clean, unless a purchase was dead-lettered against a foreign Bank row.
	storeDB, _ := db.DB()
	bankDB, _ := bank.DB.DB()
	rep, err := audit.Run(context.Background(), storeDB, bankDB)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(rejected); rep.Defects[audit.Mismatch] != want || rep.Defects[audit.Lost]+rep.Defects[audit.Unknown]+
		rep.Defects[audit.Duplicate]+rep.Defects[audit.Imbalance] != 0 {
		t.Errorf("audit: %v %+v", rep.Defects, rep.Findings)
	}
}

// forEachMode runs a relay test in single and in batch mode (fastConfig otherwise).
func forEachMode(t *testing.T, test func(*testing.T, Config)) {
	for _, mode := range []string{ModeSingle, ModeBatch} {
		t.Run("mode="+mode, func(t *testing.T) {
			cfg := fastConfig()
			cfg.Mode = mode
			test(t, cfg)
		})
	}
}

// checkMode proves the relay sent what the mode says: batch requests in batch mode, none in single mode.
func checkMode(t *testing.T, cfg Config, bank *banktest.Bank) {
	t.Helper()
	if st := bank.Stats(); (cfg.Mode == ModeBatch) != (st.Batches > 0) {
		t.Errorf("mode %s: %d batch requests reached the Bank (%d transactions)", cfg.Mode, st.Batches, st.Requests)
	}
}

func TestBankDownThenUp(t *testing.T) { forEachMode(t, testBankDownThenUp) }

func testBankDownThenUp(t *testing.T, cfg Config) {
	repo, db, _ := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{})
	bank.Proxy.Down()
	cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
	cfg.BreakerFailures, cfg.BreakerOpenTimeout = 5, 200*time.Millisecond
	r := startRelay(t, repo, bank.Client(t, time.Second, cfg.Concurrency), "relay-1", cfg)
	repo.OnCreate(r.Wake)
	ids := createMany(t, repo, 50)
	// The relay keeps trying (the breaker opens and probes) while every purchase stays pending.
	waitFor(t, 10*time.Second, "the breaker to open and probe", func() bool {
		return testutil.ToFloat64(r.m.transitions.WithLabelValues("half-open", "open")) >= 2
	})
	counts, err := repo.CountByStatus(context.Background())
	if err != nil || counts[store.StatusPending] != 50 || bank.Transactions(t) != 0 {
		t.Fatalf("with the Bank down: %v %v, bank rows %d", counts, err, bank.Transactions(t))
	}
	if err := bank.Proxy.Up(); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, repo, 30*time.Second)
	checkExactlyOnce(t, repo, db, bank, ids)
	checkMode(t, cfg, bank)
	t.Logf("the Bank received %d transactions for 50 purchases (down: refused before reaching it); breaker opened %v times",
		bank.Stats().Requests, testutil.ToFloat64(r.m.transitions.WithLabelValues("closed", "open"))+
			testutil.ToFloat64(r.m.transitions.WithLabelValues("half-open", "open")))
}

func TestIntermittentFaultsDeliverExactlyOnce(t *testing.T) {
	forEachMode(t, testIntermittentFaultsDeliverExactlyOnce)
}

func testIntermittentFaultsDeliverExactlyOnce(t *testing.T, cfg Config) {
	repo, db, _ := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{})
	// 45% of requests fail: 503s, resets before processing, resets after processing (the answer is lost),
	// answers held past the client's timeout (processed, then the client gives up).
	bank.SetFaults(banktest.Faults{Unavailable: 0.15, ResetBefore: 0.1, ResetAfter: 0.1, SlowAfter: 0.1,
		Delay: 500 * time.Millisecond})
	cfg.Concurrency, cfg.Timeout = 8, 250*time.Millisecond
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 100*time.Millisecond
	cfg.BreakerFailures, cfg.BreakerOpenTimeout = 5, 100*time.Millisecond
	r := startRelay(t, repo, bank.Client(t, cfg.Timeout, cfg.Concurrency), "relay-1", cfg)
	repo.OnCreate(r.Wake)
	ids := createMany(t, repo, 200)
	waitDrained(t, repo, 60*time.Second)
	checkExactlyOnce(t, repo, db, bank, ids)
	checkMode(t, cfg, bank)
	st := bank.Stats()
	retries := testutil.ToFloat64(r.m.deliveries.WithLabelValues("retry"))
	t.Logf("200 purchases: %d requests reached the Bank (%d repeated an id), %v failed sends, "+
		"breaker opened %v times", st.Requests, st.Duplicates(), retries,
		testutil.ToFloat64(r.m.transitions.WithLabelValues("closed", "open"))+
			testutil.ToFloat64(r.m.transitions.WithLabelValues("half-open", "open")))
	if retries == 0 || st.Duplicates() == 0 {
		t.Fatal("no fault was injected: the test proves nothing")
	}
}

func TestTwoRelaysShareOneOutbox(t *testing.T) { forEachMode(t, testTwoRelaysShareOneOutbox) }

func testTwoRelaysShareOneOutbox(t *testing.T, cfg Config) {
	repo, db, dsn := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{})
	cfg.Concurrency = 4
	// The second relay works through a pool that never uses named prepared statements, as behind PgBouncer
	// in transaction mode.
	repo2 := store.NewRepository(openStoreDB(t, dsn, "simple_protocol"), "store-test")
	r1 := startRelay(t, repo, bank.Client(t, time.Second, cfg.Concurrency), "relay-1", cfg)
	r2 := startRelay(t, repo2, bank.Client(t, time.Second, cfg.Concurrency), "relay-2", cfg)
	// Purchases arrive while both relays run, through both replicas (each wakes its own relay).
	repo.OnCreate(r1.Wake)
	repo2.OnCreate(r2.Wake)
	var ids []uuid.UUID
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, rp := range []*store.Repository{repo, repo2} {
		wg.Go(func() {
			got := createMany(t, rp, 150)
			mu.Lock()
			ids = append(ids, got...)
			mu.Unlock()
		})
	}
	wg.Wait()
	waitDrained(t, repo, 60*time.Second)
	checkExactlyOnce(t, repo, db, bank, ids)
	checkMode(t, cfg, bank)
	sent := func(r *running) float64 {
		return testutil.ToFloat64(r.m.deliveries.WithLabelValues("approved")) +
			testutil.ToFloat64(r.m.deliveries.WithLabelValues("declined"))
	}
	st := bank.Stats()
	t.Logf("300 purchases: relay-1 delivered %v, relay-2 %v; %d requests, %d duplicate sends",
		sent(r1), sent(r2), st.Requests, st.Duplicates())
	if sent(r1) == 0 || sent(r2) == 0 {
		t.Fatalf("one relay did all the work (%v, %v): the test proves nothing", sent(r1), sent(r2))
	}
	// SKIP LOCKED claims with leases longer than a send: a duplicate needs a lease to end mid-send.
	if st.Duplicates() > 3 {
		t.Fatalf("%d duplicate sends, want at most 3", st.Duplicates())
	}
}

func TestBreakerOpensAndNothingReachesTheBankUntilTheProbe(t *testing.T) {
	forEachMode(t, testBreakerOpensAndNothingReachesTheBankUntilTheProbe)
}

func testBreakerOpensAndNothingReachesTheBankUntilTheProbe(t *testing.T, cfg Config) {
	repo, db, _ := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{})
	bank.SetFaults(banktest.Faults{Unavailable: 1})
	var mu sync.Mutex
	var arrivals []time.Time
	bank.OnRequest(func(*http.Request) {
		mu.Lock()
		defer mu.Unlock()
		arrivals = append(arrivals, time.Now())
	})
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(arrivals)
	}
	const failures, openFor = 3, 500 * time.Millisecond
	cfg.Concurrency, cfg.BreakerFailures, cfg.BreakerOpenTimeout = 1, failures, openFor
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, time.Millisecond
	r := startRelay(t, repo, bank.Client(t, time.Second, 1), "relay-1", cfg)
	ids := createMany(t, repo, 20)
	transitions := func(from, to string) float64 {
		return testutil.ToFloat64(r.m.transitions.WithLabelValues(from, to))
	}
	// 1. N consecutive failures open the breaker: exactly N requests reached the Bank.
	waitFor(t, 10*time.Second, "the breaker to open", func() bool { return transitions("closed", "open") == 1 })
	if n := received(); n != failures {
		t.Fatalf("%d requests reached the Bank when the breaker opened, want %d", n, failures)
	}
	// 2. The half-open probe fails (the Bank still answers 503): open again, after exactly one request.
	waitFor(t, 10*time.Second, "the failed probe", func() bool { return transitions("half-open", "open") == 1 })
	if n := received(); n != failures+1 {
		t.Fatalf("%d requests after the first probe, want %d", n, failures+1)
	}
	bank.SetFaults(banktest.Faults{})
	// 3. The next probe succeeds and closes it; everything drains.
	waitDrained(t, repo, 30*time.Second)
	if transitions("half-open", "closed") != 1 || r.BreakerState() != "closed" {
		t.Fatalf("breaker %s; half-open→closed %v", r.BreakerState(), transitions("half-open", "closed"))
	}
	checkExactlyOnce(t, repo, db, bank, ids)
	checkMode(t, cfg, bank)
	// While open, nothing reached the Bank: each probe came at least the open timeout after the failure
	// before it (the clocks are the server's arrivals).
	mu.Lock()
	defer mu.Unlock()
	for _, i := range []int{failures, failures + 1} {
		if gap := arrivals[i].Sub(arrivals[i-1]); gap < openFor {
			t.Errorf("request %d came %s after request %d, within the open timeout %s", i+1, gap, i, openFor)
		}
	}
	if v := testutil.ToFloat64(r.m.breakerState); v != 0 {
		t.Errorf("store_breaker_state = %v at the end, want 0", v)
	}
}

func TestPoisonPurchaseIsDeadLetteredWhileOthersFlow(t *testing.T) {
	forEachMode(t, testPoisonPurchaseIsDeadLetteredWhileOthersFlow)
}

func testPoisonPurchaseIsDeadLetteredWhileOthersFlow(t *testing.T, cfg Config) {
	repo, db, _ := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{})
	ids := createMany(t, repo, 30)
	poison := getPurchase(t, repo, ids[7])
	// The Bank already holds this id with other fields: it answers 409 idempotency_conflict, for ever.
	insertConflicting(t, bank.DB, poison)
	cfg.BreakerFailures = 3
	r := startRelay(t, repo, bank.Client(t, time.Second, cfg.Concurrency), "relay-1", cfg)
	waitDrained(t, repo, 30*time.Second)
	got := getPurchase(t, repo, poison.ID)
	if got.Status != store.StatusRejected || got.ErrorCode != payment.CodeIdempotencyConflict ||
		got.Attempts != 1 || got.LastError == "" {
		t.Fatalf("poison purchase: %+v", got)
	}
	if n := bank.Sends(poison.ID); n != 1 {
		t.Fatalf("poison purchase sent %d times, want 1", n)
	}
	checkExactlyOnce(t, repo, db, bank, ids, poison.ID)
	checkMode(t, cfg, bank)
	if r.BreakerState() != "closed" || testutil.ToFloat64(r.m.deliveries.WithLabelValues("rejected")) != 1 {
		t.Fatalf("breaker %s, rejected %v", r.BreakerState(), testutil.ToFloat64(r.m.deliveries.WithLabelValues("rejected")))
	}
}

// insertConflicting stores, in the Bank, a transaction with p's id and a different amount.
func insertConflicting(t *testing.T, bankDB *gorm.DB, p store.Purchase) {
	t.Helper()
	err := bankDB.Exec(`INSERT INTO transactions (id, store_id, account_id, amount, currency, created_at, status, reason)
VALUES (?, ?, ?, ?, ?, ?, 'declined', 'insufficient_funds')`,
		p.ID, p.StoreID, p.AccountID, p.Amount+1, p.Currency, p.CreatedAt).Error
	if err != nil {
		t.Fatal(fmt.Errorf("insert conflicting row: %w", err))
	}
}

func TestStoreDatabaseOutageDuringDelivery(t *testing.T) {
	forEachMode(t, testStoreDatabaseOutageDuringDelivery)
}

func testStoreDatabaseOutageDuringDelivery(t *testing.T, cfg Config) {
	_, db, dsn := newOutbox(t, "")
	pg := pgtest.Server(t)
	proxy := banktest.NewProxy(t, pg.Addr())
	// The relay reaches its database through a proxy that goes down for a while (a failover, say).
	repo := store.NewRepository(openStoreDB(t, strings.Replace(dsn, pg.Addr(), proxy.Addr(), 1), ""), "store-test")
	direct := store.NewRepository(db, "store-test")
	bank := banktest.Start(t, banktest.Options{})
	bank.SetFaults(banktest.Faults{Latency: 20 * time.Millisecond})
	cfg.Timeout, cfg.Lease, cfg.PollInterval = 250*time.Millisecond, 6*time.Second, 50*time.Millisecond
	cfg.BatchSize = 2 // batches of 16 would deliver everything before the outage
	r := startRelay(t, repo, bank.Client(t, cfg.Timeout, cfg.Concurrency), "relay-1", cfg)
	ids := createMany(t, direct, 150)
	waitFor(t, 20*time.Second, "some deliveries", func() bool { return bank.Stats().Created >= 20 })
	proxy.Down()
	if bank.Stats().Created >= int64(len(ids)) {
		t.Fatal("everything was delivered before the outage: the test proves nothing")
	}
	time.Sleep(300 * time.Millisecond)
	if err := proxy.Up(); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, direct, 60*time.Second)
	checkExactlyOnce(t, direct, db, bank, ids)
	checkMode(t, cfg, bank)
	st := bank.Stats()
	t.Logf("150 purchases across a 300ms database outage: %d requests, %d resent; %v failed sends",
		st.Requests, st.Duplicates(), testutil.ToFloat64(r.m.deliveries.WithLabelValues("retry")))
}

// TestEveryItemOutcome: purchases that the Bank approves, declines for each reason (also the second of two
// debits of one account that only one fits) and refuses (an id it holds with other fields: 409) — in batch
// mode all in one request — each get their own outcome: the decisions recorded, the refusal dead-lettered.
func TestEveryItemOutcome(t *testing.T) { forEachMode(t, testEveryItemOutcome) }

func testEveryItemOutcome(t *testing.T, cfg Config) {
	repo, db, _ := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{})
	approved := createPurchase(t, repo, "ACC-000001", 10)
	insufficient := createPurchase(t, repo, "ACC-000002", 2_000_000)
	unknown := createPurchase(t, repo, "ACC-999999", 10)
	mismatch, _, err := repo.Create(context.Background(), store.NewPurchase{AccountID: "ACC-000003", Amount: 10,
		Currency: "USD", Source: store.SourceAPI})
	if err != nil {
		t.Fatal(err)
	}
	poison := createPurchase(t, repo, "ACC-000004", 10)
	insertConflicting(t, bank.DB, poison)
	first, second := createPurchase(t, repo, "ACC-000005", 600_000), createPurchase(t, repo, "ACC-000005", 600_000)
	ids := []uuid.UUID{approved.ID, insufficient.ID, unknown.ID, mismatch.ID, poison.ID, first.ID, second.ID}
	startRelay(t, repo, bank.Client(t, time.Second, cfg.Concurrency), "relay-1", cfg)
	waitDrained(t, repo, 30*time.Second)
	for _, want := range []struct {
		p      store.Purchase
		status store.Status
		reason payment.Reason
	}{
		{approved, store.StatusApproved, ""},
		{insufficient, store.StatusDeclined, payment.ReasonInsufficientFunds},
		{unknown, store.StatusDeclined, payment.ReasonUnknownAccount},
		{mismatch, store.StatusDeclined, payment.ReasonCurrencyMismatch},
		{poison, store.StatusRejected, ""},
	} {
		if got := getPurchase(t, repo, want.p.ID); got.Status != want.status || got.Reason != want.reason ||
			got.Attempts != 1 {
			t.Errorf("purchase on %s for %d: %+v, want %s/%q after 1 attempt", want.p.AccountID, want.p.Amount, got,
				want.status, want.reason)
		}
	}
	a, b := getPurchase(t, repo, first.ID), getPurchase(t, repo, second.ID)
	if cfg.Mode == ModeBatch && (a.Status != store.StatusApproved || b.Reason != payment.ReasonInsufficientFunds) {
		t.Errorf("two debits of one account in one batch: %s, %s/%s; want the first approved", a.Status, b.Status,
			b.Reason)
	}
	if (a.Status == store.StatusApproved) == (b.Status == store.StatusApproved) {
		t.Errorf("two debits that only one fits: %s and %s", a.Status, b.Status)
	}
	checkExactlyOnce(t, repo, db, bank, ids, poison.ID)
	checkMode(t, cfg, bank)
	if st := bank.Stats(); cfg.Mode == ModeBatch && (st.Batches != 1 || st.Requests != int64(len(ids))) {
		t.Errorf("%d batch requests carrying %d transactions, want 1 carrying all %d", st.Batches, st.Requests,
			len(ids))
	}
}

// TestResentBatchesRaceAtTheBank: the Bank takes longer than the relay's timeout, so every batch is given up
// and its purchases resent — in new batches of other compositions — while the earlier requests are still
// being processed: requests carrying the same ids race inside the Bank. Once it answers in time again,
// everything is delivered exactly once in effect.
func TestResentBatchesRaceAtTheBank(t *testing.T) { forEachMode(t, testResentBatchesRaceAtTheBank) }

func testResentBatchesRaceAtTheBank(t *testing.T, cfg Config) {
	repo, db, _ := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{})
	bank.SetFaults(banktest.Faults{Latency: 300 * time.Millisecond})
	cfg.Timeout, cfg.Concurrency = 100*time.Millisecond, 8
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	r := startRelay(t, repo, bank.Client(t, cfg.Timeout, cfg.Concurrency), "relay-1", cfg)
	repo.OnCreate(r.Wake)
	var ids []uuid.UUID
	for range 100 { // on three accounts: every batch shares accounts with the others
		ids = append(ids, createPurchase(t, repo, store.AccountID(1+rand.IntN(3)), 1+rand.Int64N(1000)).ID)
	}
	// Slow answers until 100 transactions were resent (about 1.5 s on a quiet machine, longer on a busy one).
	waitFor(t, 60*time.Second, "100 resent transactions", func() bool { return bank.Stats().Duplicates() >= 100 })
	bank.SetFaults(banktest.Faults{})
	// The drain gets a relay with a timeout a loaded machine meets: the 100 ms one made the race above, and
	// on a busy runner it times out requests the Bank answers in 150 ms, for ever.
	r.stop()
	cfg.Timeout, cfg.Lease = 2*time.Second, 10*time.Second
	r = startRelay(t, repo, bank.Client(t, cfg.Timeout, cfg.Concurrency), "relay-2", cfg)
	repo.OnCreate(r.Wake)
	waitDrained(t, repo, 60*time.Second)
	checkExactlyOnce(t, repo, db, bank, ids)
	checkMode(t, cfg, bank)
	st := bank.Stats()
	t.Logf("100 purchases: %d transactions received in %d batches, %d repeated an id", st.Requests, st.Batches,
		st.Duplicates())
	if st.Duplicates() < 100 {
		t.Fatalf("only %d resent: the test proves nothing", st.Duplicates())
	}
}

// TestBankWithoutBatchEndpoint: a Bank from before the batch endpoint answers a batch 404 (during a rolling
// update, say). The relay does not dead-letter the batch's purchases: it sends each on its own, stays in
// single mode for a while, and everything is delivered once.
func TestBankWithoutBatchEndpoint(t *testing.T) {
	repo, db, _ := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{NoBatch: true})
	cfg := fastConfig()
	cfg.Mode = ModeBatch
	r := startRelay(t, repo, bank.Client(t, time.Second, cfg.Concurrency), "relay-1", cfg)
	repo.OnCreate(r.Wake)
	ids := createMany(t, repo, 40)
	waitDrained(t, repo, 30*time.Second)
	refused := bank.Stats().Refused
	ids = append(ids, createMany(t, repo, 10)...)
	waitDrained(t, repo, 30*time.Second)
	checkExactlyOnce(t, repo, db, bank, ids)
	st := bank.Stats()
	if refused < 1 || refused > int64(cfg.Concurrency) || st.Refused != refused || st.Requests != 50 {
		t.Fatalf("%d batches refused (then %d), %d transactions sent alone; want 1-%d refused, then none, 50 alone",
			refused, st.Refused, st.Requests, cfg.Concurrency)
	}
	if n := testutil.ToFloat64(r.m.deliveries.WithLabelValues("rejected")); n != 0 {
		t.Fatalf("%v purchases dead-lettered", n)
	}
}

func TestForeignAnswersNeverEndAPurchase(t *testing.T) {
	forEachMode(t, testForeignAnswersNeverEndAPurchase)
}

// testForeignAnswersNeverEndAPurchase: something between the Store and a real Bank answers in its place —
// an AuthorizationPolicy's 403 "RBAC: access denied" before the Bank, a 404 with no body (no route), and a
// 403 that replaces the Bank's answer after it applied the transaction. None of these is the Bank's word:
// every purchase is retried until the Bank's own answer, none is dead-lettered, each is applied once, and
// each foreign answer is counted.
func testForeignAnswersNeverEndAPurchase(t *testing.T, cfg Config) {
	repo, db, _ := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{})
	bank.SetFaults(banktest.Faults{Deny: 0.15, NoRoute: 0.1, DenyAfter: 0.15})
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	cfg.BreakerFailures, cfg.BreakerOpenTimeout = 5, 50*time.Millisecond
	r := startRelay(t, repo, bank.Client(t, time.Second, cfg.Concurrency), "relay-1", cfg)
	repo.OnCreate(r.Wake)
	ids := createMany(t, repo, 100)
	waitDrained(t, repo, 60*time.Second)
	checkExactlyOnce(t, repo, db, bank, ids)
	st := bank.Stats()
	var foreign float64
	for _, code := range []string{"403", "404"} {
		foreign += testutil.ToFloat64(r.m.foreign.WithLabelValues(code))
	}
	if st.Foreign == 0 || foreign != float64(st.Foreign) {
		t.Fatalf("%d answers given in the Bank's place, %v counted as foreign", st.Foreign, foreign)
	}
	if n := testutil.ToFloat64(r.m.deliveries.WithLabelValues("rejected")); n != 0 {
		t.Fatalf("%v purchases dead-lettered on answers the Bank never gave", n)
	}
}

// TestGarbledRequestsAreDeadLetteredOnTheBanksWord: a request garbled on its way gets the real Bank's own
// 400 — its word, confirmed by its own 404 to the lookup: dead letter (the redrive sends it again). The
// other purchases flow.
func TestGarbledRequestsAreDeadLetteredOnTheBanksWord(t *testing.T) {
	repo, _, _ := newOutbox(t, "")
	bank := banktest.Start(t, banktest.Options{})
	bank.SetFaults(banktest.Faults{Corrupt: 0.2})
	cfg := fastConfig()
	r := startRelay(t, repo, bank.Client(t, time.Second, cfg.Concurrency), "relay-1", cfg)
	repo.OnCreate(r.Wake)
	ids := createMany(t, repo, 60)
	waitDrained(t, repo, 60*time.Second)
	st := bank.Stats()
	var rejected int64
	for _, id := range ids {
		p := getPurchase(t, repo, id)
		_, atBank := bank.Record(t, id)
		switch {
		case p.Status == store.StatusRejected && p.ErrorCode == payment.CodeInvalidRequest && !atBank:
			rejected++
		case p.Status == store.StatusRejected, p.Status == store.StatusPending, !atBank:
			t.Errorf("purchase %s: %s %q, at the Bank: %v", id, p.Status, p.ErrorCode, atBank)
		}
	}
	if st.Corrupted == 0 || rejected != st.Corrupted {
		t.Fatalf("%d requests garbled, %d purchases dead-lettered", st.Corrupted, rejected)
	}
}
