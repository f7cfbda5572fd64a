package relay

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/mock/gomock"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/store"
)

// Batch mode (RELAY_MODE=batch) with the Bank mocked over a real PostgreSQL outbox.

func batchConfig() Config {
	cfg := fastConfig()
	cfg.Mode = ModeBatch
	return cfg
}

func decision(tx payment.Transaction, status payment.Status) bankclient.Answer {
	res := payment.Result{ID: tx.ID, Status: status, ProcessedAt: time.Now().UTC()}
	if status == payment.StatusDeclined {
		res.Reason = payment.ReasonInsufficientFunds
	}
	return bankclient.Answer{Result: res}
}

// TestBatchItemOutcomesWithMockedBank: one batch answered item by item — approved, declined, 409 (dead
// letter), a 503 for one item alone, a result that makes no sense — records each outcome as single mode
// would: the decisions, the dead letter, and a retry of the two failed items only, which the next batch
// delivers. Metrics count purchases, not requests.
func TestBatchItemOutcomesWithMockedBank(t *testing.T) {
	repo, _, _ := newOutbox(t, "")
	var ps []store.Purchase
	for range 5 {
		ps = append(ps, createPurchase(t, repo, "ACC-000001", 10))
	}
	txs := func(idx ...int) []payment.Transaction {
		var out []payment.Transaction
		for _, i := range idx {
			out = append(out, ps[i].Transaction())
		}
		return out
	}
	bank := NewMockBank(gomock.NewController(t))
	nonsense := decision(ps[4].Transaction(), payment.StatusApproved)
	nonsense.Result.Reason = payment.ReasonUnknownAccount // approved with a reason: not a decision
	gomock.InOrder(
		bank.EXPECT().SubmitBatch(gomock.Any(), txs(0, 1, 2, 3, 4)).Return([]bankclient.Answer{
			decision(ps[0].Transaction(), payment.StatusApproved),
			decision(ps[1].Transaction(), payment.StatusDeclined),
			{Err: marked(409, payment.CodeIdempotencyConflict, "other fields")},
			{Err: &bankclient.Error{StatusCode: 503, Code: payment.CodeUnavailable, Message: "item failed"}},
			nonsense,
		}, nil),
		bank.EXPECT().SubmitBatch(gomock.Any(), txs(3, 4)).Return([]bankclient.Answer{
			decision(ps[3].Transaction(), payment.StatusApproved),
			decision(ps[4].Transaction(), payment.StatusApproved),
		}, nil),
	) // and no call more: the dead letter is never resent
	bank.EXPECT().Lookup(gomock.Any(), ps[2].ID).Return(payment.Record{}, bankclient.ErrNoSuchTransaction)
	r := startRelay(t, repo, bank, "relay-1", batchConfig())
	waitFor(t, 10*time.Second, "every outcome", func() bool {
		n, err := repo.CountByStatus(context.Background())
		return err == nil && n[store.StatusPending] == 0
	})
	r.stop()
	for i, want := range []struct {
		status   store.Status
		attempts int
		code     string
	}{
		{store.StatusApproved, 1, ""}, {store.StatusDeclined, 1, ""},
		{store.StatusRejected, 1, payment.CodeIdempotencyConflict}, {store.StatusApproved, 2, ""},
		{store.StatusApproved, 2, ""},
	} {
		if got := getPurchase(t, repo, ps[i].ID); got.Status != want.status || got.Attempts != want.attempts ||
			got.ErrorCode != want.code {
			t.Errorf("purchase %d: %+v, want %s after %d attempts (code %q)", i, got, want.status, want.attempts,
				want.code)
		}
	}
	for outcome, want := range map[string]float64{"approved": 3, "declined": 1, "rejected": 1, "retry": 2} {
		if got := testutil.ToFloat64(r.m.deliveries.WithLabelValues(outcome)); got != want {
			t.Errorf("store_deliveries_total{%s} = %v, want %v", outcome, got, want)
		}
	}
	if got := testutil.CollectAndCount(r.m.batchSize); got != 1 {
		t.Errorf("store_bank_batch_size: %d series", got)
	}
}

// TestBatchFailureBacksOffPerItem: a batch that fails as a whole (503) is retried item by item, each with
// the backoff of its own number of failed sends — one that failed three times before waits about eight times
// longer than a new one (RELAY_MIN_BACKOFF·2^attempts, jittered to [d/2, d]).
func TestBatchFailureBacksOffPerItem(t *testing.T) {
	repo, db, _ := newOutbox(t, "")
	old := createPurchase(t, repo, "ACC-000001", 10)
	fresh := createPurchase(t, repo, "ACC-000001", 10)
	if err := db.Exec(`UPDATE purchases SET attempts = 3 WHERE id = ?`, old.ID).Error; err != nil {
		t.Fatal(err)
	}
	bank := NewMockBank(gomock.NewController(t))
	failed := make(chan struct{})
	bank.EXPECT().SubmitBatch(gomock.Any(), []payment.Transaction{old.Transaction(), fresh.Transaction()}).
		DoAndReturn(func(context.Context, []payment.Transaction) ([]bankclient.Answer, error) {
			close(failed)
			return nil, &bankclient.Error{StatusCode: 503, Code: payment.CodeUnavailable}
		})
	bank.EXPECT().SubmitBatch(gomock.Any(), gomock.Any()).AnyTimes().DoAndReturn(
		func(_ context.Context, txs []payment.Transaction) ([]bankclient.Answer, error) {
			var out []bankclient.Answer
			for _, tx := range txs {
				out = append(out, decision(tx, payment.StatusApproved))
			}
			return out, nil
		})
	cfg := batchConfig()
	cfg.MinBackoff, cfg.MaxBackoff = 200*time.Millisecond, 10*time.Second
	startRelay(t, repo, bank, "relay-1", cfg)
	<-failed
	delay := func(p store.Purchase) time.Duration {
		var secs float64
		waitFor(t, 5*time.Second, "the retry to be scheduled", func() bool {
			return getPurchase(t, repo, p.ID).LastError != ""
		})
		if err := db.Raw(`SELECT EXTRACT(EPOCH FROM o.next_attempt_at - p.updated_at)::float8 FROM outbox o
JOIN purchases p ON p.id = o.purchase_id WHERE p.id = ?`, p.ID).Scan(&secs).Error; err != nil {
			t.Fatal(err)
		}
		return time.Duration(secs * float64(time.Second))
	}
	if d := delay(fresh); d < 100*time.Millisecond || d > 200*time.Millisecond {
		t.Errorf("a first failure waits %s, want 100-200ms", d)
	}
	if d := delay(old); d < 800*time.Millisecond || d > 1600*time.Millisecond {
		t.Errorf("a fourth failure waits %s, want 800-1600ms", d)
	}
	waitFor(t, 10*time.Second, "both delivered", func() bool {
		return getPurchase(t, repo, old.ID).Status == store.StatusApproved &&
			getPurchase(t, repo, fresh.ID).Status == store.StatusApproved
	})
}

// TestBatchBreakerCountsRequests: the breaker counts requests to the Bank, a batch being one — two failed
// batches of five open a breaker of BREAKER_FAILURES=2 (not ten purchases); the probe is a batch of one;
// per-item rejections inside an answered batch are answers and do not count.
func TestBatchBreakerCountsRequests(t *testing.T) {
	repo, _, _ := newOutbox(t, "")
	for range 5 {
		createPurchase(t, repo, "ACC-000001", 1)
	}
	bank := NewMockBank(gomock.NewController(t))
	var mu sync.Mutex
	var sizes []int
	healthy := false
	bank.EXPECT().SubmitBatch(gomock.Any(), gomock.Any()).AnyTimes().DoAndReturn(
		func(_ context.Context, txs []payment.Transaction) ([]bankclient.Answer, error) {
			mu.Lock()
			defer mu.Unlock()
			sizes = append(sizes, len(txs))
			if !healthy {
				return nil, &bankclient.Error{StatusCode: 503, Code: payment.CodeUnavailable}
			}
			out := make([]bankclient.Answer, len(txs))
			for i := range out {
				out[i].Err = marked(409, payment.CodeIdempotencyConflict, "")
			}
			return out, nil
		})
	bank.EXPECT().Lookup(gomock.Any(), gomock.Any()).AnyTimes().Return(payment.Record{}, bankclient.ErrNoSuchTransaction)
	cfg := batchConfig()
	cfg.Concurrency, cfg.BreakerFailures, cfg.BreakerOpenTimeout = 1, 2, 300*time.Millisecond
	r := startRelay(t, repo, bank, "relay-1", cfg)
	waitFor(t, 10*time.Second, "the breaker to open", func() bool { return r.BreakerState() == "open" })
	mu.Lock()
	// Two requests, the first of all five: a breaker counting purchases would have opened after the first.
	// (The second carries what had come due again: all five on a quiet machine, fewer when recording the
	// first one's retries is slow.)
	if len(sizes) != 2 || sizes[0] != 5 {
		t.Fatalf("requests when the breaker opened: %v, want two, the first a batch of 5", sizes)
	}
	healthy = true
	mu.Unlock()
	waitFor(t, 10*time.Second, "all dead-lettered", func() bool {
		n, err := repo.CountByStatus(context.Background())
		return err == nil && n[store.StatusRejected] == 5
	})
	mu.Lock()
	defer mu.Unlock()
	if sizes[2] != 1 {
		t.Errorf("the half-open probe carried %d purchases, want 1 (requests: %v)", sizes[2], sizes)
	}
	if s := r.BreakerState(); s != "closed" {
		t.Errorf("breaker %s after answered batches of rejections, want closed", s)
	}
}

// TestRefusedBatchGoesBackUnderFreshClaims: a batch refused as a whole (a Bank without the endpoint) must
// not be sent one by one under the batch's claim — ten sends of 0.8 s outlast a 7 s lease, and once a claim
// has ended another relay may send the same purchase at the same time. Each single send must happen while
// its purchase's own claim still covers it.
func TestRefusedBatchGoesBackUnderFreshClaims(t *testing.T) {
	repo, db, _ := newOutbox(t, "")
	for range 10 {
		createPurchase(t, repo, "ACC-000001", 1)
	}
	bank := NewMockBank(gomock.NewController(t))
	bank.EXPECT().SubmitBatch(gomock.Any(), gomock.Any()).Times(1).
		Return(nil, marked(404, payment.CodeNotFound, "no such route"))
	var mu sync.Mutex
	var uncovered []string
	bank.EXPECT().Submit(gomock.Any(), gomock.Any()).Times(10).DoAndReturn(
		func(_ context.Context, tx payment.Transaction) (payment.Result, error) {
			time.Sleep(800 * time.Millisecond)
			var covered bool
			if err := db.Raw(`SELECT next_attempt_at > now() FROM outbox WHERE purchase_id = ?`, tx.ID).
				Scan(&covered).Error; err != nil {
				t.Error(err)
			}
			if !covered {
				mu.Lock()
				uncovered = append(uncovered, tx.ID.String())
				mu.Unlock()
			}
			return payment.Result{ID: tx.ID, Status: payment.StatusApproved, ProcessedAt: time.Now().UTC()}, nil
		})
	cfg := batchConfig()
	cfg.Timeout, cfg.Lease = time.Second, 7*time.Second // the shortest lease Validate accepts
	r := startRelay(t, repo, bank, "relay-1", cfg)
	waitFor(t, 30*time.Second, "every purchase approved", func() bool {
		n, err := repo.CountByStatus(context.Background())
		return err == nil && n[store.StatusApproved] == 10
	})
	r.stop()
	mu.Lock()
	defer mu.Unlock()
	if len(uncovered) > 0 {
		t.Fatalf("%d of 10 purchases were sent after their claim had ended: %v", len(uncovered), uncovered)
	}
}
