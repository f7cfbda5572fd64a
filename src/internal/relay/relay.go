// Package relay delivers the Store's outbox to the Bank: it claims due purchases (any number of relays share
// one outbox), sends them through a circuit breaker with a bounded concurrency — all that is due in one
// batch request (RELAY_MODE=batch, the default: a batch of one at low load, nothing waits for more), or one
// request per purchase (RELAY_MODE=single) — and records the Bank's answer for each purchase.
//
// Failure policy, per purchase: the Bank's decision (approved, declined) completes it. Only the Bank's own
// rejection ends it otherwise: an answer carrying the Bank's marks (bankclient.Error.Marked) with a status
// that no resend can change (400 invalid_request, 409 idempotency_conflict, 413, 415) — and even then the
// relay first asks the Bank for the transaction (GET /v1/transactions/{id}): a record there is the Bank's
// decision and is recorded as such (a 4xx made on the way back, after the Bank applied it); only the Bank's
// own "no such transaction" dead-letters the purchase with the error code, never resent until redriven.
// Anything else is retried forever with capped exponential backoff and jitter: timeouts, connection errors,
// 5xx, an unreadable answer, every answer without the Bank's marks (an Envoy 403 "RBAC: access denied", a
// 404 with no route: counted in store_relay_foreign_answers_total{code}) and the Bank's own refusals that a
// fix of the path or the configuration ends (403 caller_not_allowed, 404 no route: counted in
// store_relay_bank_refusals_total{code}). A crash between sending and recording resends when the claim's
// lease ends: the Bank's idempotency turns the resend into a replay of the stored result. In a batch the
// policy applies to each item's answer; a batch that fails as a whole (a timeout, a 503) is retried item by
// item, each with its own backoff; a batch refused as a whole (a 404 or 405: no batch endpoint or route;
// the Bank's 400, 413, 415 for the envelope) gives its claims back at once, and the relay claims and sends
// one purchase per request for a minute, so each purchase gets its own answer under its own lease.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/store"
)

// Bank is the Bank API as the relay uses it (*bankclient.Client).
//
//go:generate mockgen -typed -destination=mock_bank_test.go -package=relay . Bank
type Bank interface {
	Submit(ctx context.Context, tx payment.Transaction) (payment.Result, error)
	SubmitBatch(ctx context.Context, txs []payment.Transaction) ([]bankclient.Answer, error)
	Lookup(ctx context.Context, id uuid.UUID) (payment.Record, error)
}

// Outbox is the storage the relay works on (*store.Repository).
type Outbox interface {
	Claim(ctx context.Context, owner string, n int, lease time.Duration) ([]store.Claim, error)
	Complete(ctx context.Context, id uuid.UUID, res payment.Result) error
	CompleteBatch(ctx context.Context, ds []store.Decision) error
	Reject(ctx context.Context, id uuid.UUID, code, msg string) error
	Retry(ctx context.Context, c store.Claim, delay time.Duration, cause string) error
	Release(ctx context.Context, c store.Claim, delay time.Duration) error
	NextDue(ctx context.Context) (time.Duration, bool, error)
}

// Modes of sending.
const (
	ModeBatch  = "batch"  // what is due goes in one POST /v1/transactions/batch
	ModeSingle = "single" // one POST /v1/transactions per purchase
)

// Config tunes the relay and its circuit breaker, filled from the environment.
type Config struct {
	// Mode is batch (default) or single.
	Mode string `env:"RELAY_MODE" envDefault:"batch"`
	// BatchSize caps the purchases claimed by one query: in batch mode the most purchases per request (at
	// most payment.MaxBatchItems); in single mode a relay never claims more than it has free send slots, so
	// every claimed purchase is being sent (the lease only has to cover one send).
	BatchSize int `env:"RELAY_BATCH_SIZE" envDefault:"16"`
	// Concurrency is the most requests in flight (and connections to the Bank).
	Concurrency int `env:"RELAY_CONCURRENCY" envDefault:"8"`
	// PollInterval is the fallback wake-up: purchases inserted by other replicas, retries coming due.
	PollInterval time.Duration `env:"RELAY_POLL_INTERVAL" envDefault:"1s"`
	// Lease is how long a claim lasts; a crashed relay's purchases are sent again after it.
	Lease time.Duration `env:"RELAY_LEASE" envDefault:"30s"`
	// MinBackoff and MaxBackoff bound the wait before resending after a failed send.
	MinBackoff time.Duration `env:"RELAY_MIN_BACKOFF" envDefault:"200ms"`
	MaxBackoff time.Duration `env:"RELAY_MAX_BACKOFF" envDefault:"30s"`
	// BreakerFailures consecutive failed sends open the breaker; it stays open BreakerOpenTimeout, then lets
	// one probe through (half-open): success closes it, failure opens it again.
	BreakerFailures    uint32        `env:"BREAKER_FAILURES" envDefault:"5"`
	BreakerOpenTimeout time.Duration `env:"BREAKER_OPEN_TIMEOUT" envDefault:"10s"`
	// Timeout bounds one send (BANK_TIMEOUT; set by the command, not read from RELAY_*).
	Timeout time.Duration `env:"-"`
}

// Validate checks the settings.
func (c Config) Validate() error {
	var errs []error
	if c.Mode != ModeBatch && c.Mode != ModeSingle {
		errs = append(errs, fmt.Errorf("RELAY_MODE %q must be batch or single", c.Mode))
	}
	if c.BatchSize < 1 || c.Concurrency < 1 {
		errs = append(errs, errors.New("RELAY_BATCH_SIZE and RELAY_CONCURRENCY must be >= 1"))
	}
	if c.Mode == ModeBatch && c.BatchSize > payment.MaxBatchItems {
		errs = append(errs, fmt.Errorf("RELAY_BATCH_SIZE must be <= %d (the Bank's batch limit) in batch mode",
			payment.MaxBatchItems))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("RELAY_POLL_INTERVAL must be > 0"))
	}
	if c.MinBackoff <= 0 || c.MaxBackoff < c.MinBackoff {
		errs = append(errs, errors.New("RELAY_MIN_BACKOFF must be > 0 and <= RELAY_MAX_BACKOFF"))
	}
	if c.BreakerFailures < 1 || c.BreakerOpenTimeout <= 0 {
		errs = append(errs, errors.New("BREAKER_FAILURES must be >= 1 and BREAKER_OPEN_TIMEOUT > 0"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("the Bank timeout must be > 0"))
	}
	if c.Lease < 2*c.Timeout+recordTimeout {
		errs = append(errs, fmt.Errorf("RELAY_LEASE (%s) must be at least 2×BANK_TIMEOUT + %s (%s), or sends "+
			"still in flight would be claimed again", c.Lease, recordTimeout, 2*c.Timeout+recordTimeout))
	}
	return errors.Join(errs...)
}

// recordTimeout bounds recording one outcome (retries included).
const recordTimeout = 5 * time.Second

// Relay delivers the outbox to the Bank. Run it once; Wake and BreakerState are safe from any goroutine.
type Relay struct {
	outbox  Outbox
	bank    Bank
	owner   string
	cfg     Config
	backoff Backoff
	log     *slog.Logger
	m       metrics
	cb      *gobreaker.CircuitBreaker[answer]

	wake        chan struct{} // a purchase was inserted locally
	freed       chan struct{} // a send finished
	inFlight    atomic.Int64  // requests in flight
	openUntil   atomic.Int64  // unix nanoseconds when the open breaker lets a probe through
	singleUntil atomic.Int64  // unix nanoseconds until which batch mode sends one by one (the Bank refused a batch)

	randMu sync.Mutex
	rnd    *rand.Rand
}

// New returns a relay claiming as owner (unique per relay: the store id and a random suffix). Its metrics
// are registered on reg.
func New(outbox Outbox, bank Bank, owner string, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Relay {
	r := &Relay{
		outbox: outbox, bank: bank, owner: owner, cfg: cfg, log: log,
		backoff: Backoff{Min: cfg.MinBackoff, Max: cfg.MaxBackoff},
		m:       newMetrics(reg),
		wake:    make(chan struct{}, 1),
		freed:   make(chan struct{}, 1),
		rnd:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	r.cb = gobreaker.NewCircuitBreaker[answer](gobreaker.Settings{
		Name:        "bank",
		MaxRequests: 1, // one probe when half-open
		Timeout:     cfg.BreakerOpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.BreakerFailures },
		// The Bank's own 4xx is an answer: the Bank works. A 5xx, or anything without its marks, is a failure
		// of the Bank or of the path to it.
		IsSuccessful:  answered,
		OnStateChange: r.breakerChanged,
	})
	r.m.breakerState.Set(0)
	return r
}

// Wake tells the relay a purchase was just inserted (store.Repository.OnCreate).
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// BreakerState is the circuit breaker's state: closed, half-open or open.
func (r *Relay) BreakerState() string { return r.cb.State().String() }

// breakerChanged runs under the breaker's lock: it must not call the breaker.
func (r *Relay) breakerChanged(_ string, from, to gobreaker.State) {
	r.m.breakerState.Set(float64(to))
	r.m.transitions.WithLabelValues(from.String(), to.String()).Inc()
	switch to {
	case gobreaker.StateOpen:
		r.openUntil.Store(time.Now().Add(r.cfg.BreakerOpenTimeout).UnixNano())
		r.log.Warn("circuit breaker open: nothing is sent to the Bank until the probe", "from", from.String(),
			"open_for", r.cfg.BreakerOpenTimeout)
	case gobreaker.StateHalfOpen:
		r.log.Info("circuit breaker half-open: probing the Bank with one request", "from", from.String())
	default:
		r.log.Info("circuit breaker closed: sending again", "from", from.String())
	}
}

func (r *Relay) random() float64 {
	r.randMu.Lock()
	defer r.randMu.Unlock()
	return r.rnd.Float64()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// sleep waits d, or until ctx ends, or until wake fires (when not nil).
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}

// Run delivers until ctx ends, then stops claiming and waits for the sends in flight to finish and be
// recorded (each is bounded by the Bank timeout), so a graceful stop leaves no claim behind.
func (r *Relay) Run(ctx context.Context) {
	r.log.Info("relay started", "owner", r.owner, "mode", r.cfg.Mode, "batch_size", r.cfg.BatchSize,
		"concurrency", r.cfg.Concurrency,
		"poll_interval", r.cfg.PollInterval, "lease", r.cfg.Lease, "min_backoff", r.cfg.MinBackoff,
		"max_backoff", r.cfg.MaxBackoff, "breaker_failures", r.cfg.BreakerFailures,
		"breaker_open_timeout", r.cfg.BreakerOpenTimeout, "bank_timeout", r.cfg.Timeout)
	sendCtx := context.WithoutCancel(ctx) // sends in flight outlive the stop signal
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		r.log.Info("relay stopped")
	}()
	dbFailing := false
	for ctx.Err() == nil {
		batching := r.batching()
		free := r.cfg.Concurrency - int(r.inFlight.Load())
		n := min(r.cfg.BatchSize, free)
		if batching && free > 0 {
			n = r.cfg.BatchSize // one request, whatever is due up to a batch
		}
		switch r.cb.State() {
		case gobreaker.StateOpen:
			sleep(ctx, max(time.Until(time.Unix(0, r.openUntil.Load())), time.Millisecond), nil)
			continue
		case gobreaker.StateHalfOpen:
			n = 1 // the probe, once nothing else is in flight
			if free < r.cfg.Concurrency {
				n = 0
			}
		default:
			// Single mode under load claims in batches: while sends are in flight, wait until a quarter of a
			// batch is free instead of claiming one row per finished send (each claim is a commit of its own).
			if !batching && free < r.cfg.Concurrency && n < max(1, min(r.cfg.BatchSize, r.cfg.Concurrency)/4) {
				n = 0
			}
		}
		if n <= 0 {
			sleep(ctx, r.cfg.PollInterval, r.freed)
			continue
		}
		claims, err := r.claim(ctx, n)
		if err != nil {
			if !dbFailing {
				dbFailing = true
				r.log.Warn("relay cannot claim from the outbox; retrying", "err", err)
			}
			sleep(ctx, r.cfg.PollInterval, nil)
			continue
		}
		if dbFailing {
			dbFailing = false
			r.log.Info("relay claims from the outbox again")
		}
		if batching && len(claims) > 0 {
			r.spawn(&wg, func(sent func()) { r.deliverBatch(sendCtx, claims, sent) })
		} else {
			for _, c := range claims {
				r.spawn(&wg, func(sent func()) { r.deliver(sendCtx, c, sent) })
			}
		}
		if len(claims) == n {
			continue // more may be due
		}
		// Nothing else is due: sleep until a local insert, the next row comes due, or the poll interval.
		wait := r.cfg.PollInterval
		if d, ok, err := r.nextDue(ctx); err == nil && ok && d < wait {
			wait = max(d, 10*time.Millisecond)
		}
		sleep(ctx, wait, r.wake)
	}
}

// batching reports whether due purchases go in batches now: batch mode, unless the Bank refused a batch
// request less than a minute ago.
func (r *Relay) batching() bool {
	return r.cfg.Mode == ModeBatch && time.Now().UnixNano() >= r.singleUntil.Load()
}

// singleAfterRefusal is how long batch mode sends one by one after the Bank refused a batch request.
const singleAfterRefusal = time.Minute

// spawn runs one request in a send slot. The slot frees as soon as the Bank has answered (sent): recording
// the outcome (covered by the lease too) overlaps the next sends instead of holding a slot
// (docs/performance.md).
func (r *Relay) spawn(wg *sync.WaitGroup, send func(sent func())) {
	r.inFlight.Add(1)
	wg.Go(func() {
		var once sync.Once
		sent := func() {
			once.Do(func() {
				r.inFlight.Add(-1)
				signal(r.freed)
			})
		}
		defer sent()
		send(sent)
	})
}

// claim is not cancelled by the stop signal: a claim committed but never read would strand its rows until
// the lease ends.
func (r *Relay) claim(ctx context.Context, n int) ([]store.Claim, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return r.outbox.Claim(cctx, r.owner, n, r.cfg.Lease)
}

func (r *Relay) nextDue(ctx context.Context) (time.Duration, bool, error) {
	cctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	return r.outbox.NextDue(cctx)
}

// answered reports whether a send reached the Bank and the Bank answered it (a result or its own 4xx).
func answered(err error) bool {
	var e *bankclient.Error
	return err == nil || errors.As(err, &e) && e.Marked && e.StatusCode < 500 || negativeControl && legacyPermanent(err)
}

// errBadResult is a 200/201 whose decision makes no sense: treated like a server error.
var errBadResult = errors.New("bank answered with an invalid result")

// answer is what a request to the Bank returned: one result, or a batch's answers.
type answer struct {
	one   payment.Result
	batch []bankclient.Answer
}

// submit sends one transaction within the Bank timeout.
func (r *Relay) submit(ctx context.Context, tx payment.Transaction) (payment.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	start := time.Now()
	res, err := r.bank.Submit(ctx, tx)
	r.m.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		r.observe(err)
		return res, err
	}
	return res, checkResult(tx, res)
}

// submitBatch sends transactions in one batch request within the Bank timeout.
func (r *Relay) submitBatch(ctx context.Context, txs []payment.Transaction) ([]bankclient.Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	start := time.Now()
	answers, err := r.bank.SubmitBatch(ctx, txs)
	r.m.latency.Observe(time.Since(start).Seconds())
	r.m.batchSize.Observe(float64(len(txs)))
	if err != nil {
		r.observe(err)
		return nil, err
	}
	if len(answers) != len(txs) {
		return nil, fmt.Errorf("%w: %d answers for a batch of %d", errBadResult, len(answers), len(txs))
	}
	for i := range answers {
		if answers[i].Err == nil {
			answers[i].Err = checkResult(txs[i], answers[i].Result)
		} else {
			r.observe(answers[i].Err)
		}
	}
	return answers, nil
}

// checkResult rejects a 200/201 whose decision makes no sense (treated like a server error).
func checkResult(tx payment.Transaction, res payment.Result) error {
	switch {
	case res.ID != tx.ID,
		res.Status == payment.StatusApproved && res.Reason != payment.ReasonNone,
		res.Status == payment.StatusDeclined && res.Reason == payment.ReasonNone,
		res.Status != payment.StatusApproved && res.Status != payment.StatusDeclined:
		return fmt.Errorf("%w: %+v", errBadResult, res)
	}
	return nil
}

// observe counts an answer that is neither a result nor a rejection the Bank stands by: one without the Bank's
// marks (foreign), or the Bank's own refusal that a fix of the path or configuration ends.
func (r *Relay) observe(err error) {
	var e *bankclient.Error
	switch {
	case !errors.As(err, &e):
	case e.Foreign():
		r.m.foreign.WithLabelValues(strconv.Itoa(e.StatusCode)).Inc()
	case e.StatusCode >= 400 && e.StatusCode < 500 && !e.Permanent():
		r.m.refusals.WithLabelValues(e.Code).Inc()
	}
}

// refusesBatch reports whether err refuses a batch request as a whole, not its purchases: the Bank's own
// 400, 413 or 415 for the envelope, or a 404 or 405 — marked (a Bank without the endpoint) or not (a Bank
// from before the marks, or a route in between that knows only the single path). Each purchase then goes
// again on its own: that ends none of them, and each gets its own answer.
func refusesBatch(err error) bool {
	var e *bankclient.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.StatusCode {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return true
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return e.Marked
	}
	return false
}

// outcome is what the failure policy makes of one send.
type outcome int

const (
	outcomeDone     outcome = iota // the Bank decided: record it
	outcomeRejected                // the Bank refused the request: dead letter
	outcomeRetry                   // failed: send again after a backoff
	outcomeNotSent                 // the breaker refused to send: give the claim back
)

// classify is the failure policy.
func classify(err error) outcome {
	switch {
	case err == nil:
		return outcomeDone
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return outcomeNotSent
	case bankclient.IsPermanent(err), negativeControl && legacyPermanent(err):
		return outcomeRejected
	default:
		return outcomeRetry
	}
}

// retryAfter is the Bank's Retry-After, when it sent one.
func retryAfter(err error) time.Duration {
	var e *bankclient.Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// deliver sends one claimed purchase, calls sent once the Bank has answered (or the send failed), and records
// what came of it.
func (r *Relay) deliver(ctx context.Context, c store.Claim, sent func()) {
	a, err := r.cb.Execute(func() (answer, error) {
		res, err := r.submit(ctx, c.Tx)
		return answer{one: res}, err
	})
	sent()
	log := r.log.With("purchase_id", c.Tx.ID, "attempt", c.Attempts+1)
	switch classify(err) {
	case outcomeDone:
		r.decided(log, c, a.one)
		r.record(ctx, log, "record the Bank's decision", func(ctx context.Context) error {
			return r.outbox.Complete(ctx, c.Tx.ID, a.one)
		})
	case outcomeRejected:
		r.confirmRejection(ctx, log, c, err)
	case outcomeRetry:
		r.retry(ctx, log, c, err)
	case outcomeNotSent:
		r.release(ctx, log, c)
	}
}

// deliverBatch sends claimed purchases in one batch request, calls sent once the Bank has answered, and
// records what came of each: the decisions in one statement, a dead letter per rejected item, a retry with
// its own backoff per failed item (every item when the request failed as a whole).
func (r *Relay) deliverBatch(ctx context.Context, claims []store.Claim, sent func()) {
	txs := make([]payment.Transaction, len(claims))
	for i, c := range claims {
		txs[i] = c.Tx
	}
	a, err := r.cb.Execute(func() (answer, error) {
		answers, err := r.submitBatch(ctx, txs)
		return answer{batch: answers}, err
	})
	if refusesBatch(err) {
		// The claims go back at once: sending n purchases one after the other here could outlast their lease,
		// and another relay would send them too. Single mode claims each anew.
		r.singleUntil.Store(time.Now().Add(singleAfterRefusal).UnixNano())
		sent()
		r.log.Warn("the Bank refused a batch request: its purchases go again one by one, and the relay sends "+
			"single requests for a while", "err", err, "purchases", len(claims), "for", singleAfterRefusal)
		for _, c := range claims {
			r.release(ctx, r.log.With("purchase_id", c.Tx.ID), c)
		}
		return
	}
	switch classify(err) {
	case outcomeDone:
		sent()
		var decisions []store.Decision
		for i, c := range claims {
			log := r.log.With("purchase_id", c.Tx.ID, "attempt", c.Attempts+1)
			switch item := a.batch[i]; classify(item.Err) {
			case outcomeDone:
				r.decided(log, c, item.Result)
				decisions = append(decisions, store.Decision{ID: c.Tx.ID, Result: item.Result})
			case outcomeRejected:
				r.confirmRejection(ctx, log, c, item.Err)
			default: // a 5xx or an unreadable result for this item alone
				r.retry(ctx, log, c, item.Err)
			}
		}
		if len(decisions) > 0 {
			r.record(ctx, r.log.With("purchases", len(decisions), "first_purchase_id", decisions[0].ID),
				"record the Bank's decisions", func(ctx context.Context) error {
					return r.outbox.CompleteBatch(ctx, decisions)
				})
		}
	case outcomeRetry, outcomeRejected: // a batch as a whole is never the purchases' rejection (refusesBatch)
		sent()
		for _, c := range claims {
			r.retry(ctx, r.log.With("purchase_id", c.Tx.ID, "attempt", c.Attempts+1), c, err)
		}
	case outcomeNotSent:
		sent()
		for _, c := range claims {
			r.release(ctx, r.log.With("purchase_id", c.Tx.ID), c)
		}
	}
}

// decided counts the Bank's decision on a purchase.
func (r *Relay) decided(log *slog.Logger, c store.Claim, res payment.Result) {
	r.m.deliveries.WithLabelValues(string(res.Status)).Inc()
	r.m.attempts.Observe(float64(c.Attempts + 1))
	log.Debug("delivered", "status", res.Status, "reason", res.Reason)
}

// confirmRejection asks the Bank whether it holds the transaction it just rejected (err, a permanent
// *bankclient.Error), before anything ends the purchase: a record of the same transaction is the Bank's
// decision (the rejection was made after it applied it, on the way back), and is recorded as one; the Bank's
// own "no such transaction" — or a record with other fields, for a 409 — confirms the rejection: dead
// letter. Without an answer from the Bank the purchase is retried: the rejection is not confirmed.
func (r *Relay) confirmRejection(ctx context.Context, log *slog.Logger, c store.Claim, err error) {
	if negativeControl {
		r.reject(ctx, log, c, err)
		return
	}
	lctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	rec, lerr := r.bank.Lookup(lctx, c.Tx.ID)
	cancel()
	switch {
	case lerr == nil && sameTransaction(rec.Transaction, c.Tx) && checkResult(c.Tx, rec.Result()) == nil:
		log.Warn("the Bank rejected a purchase it had applied: its recorded decision stands", "rejection", err,
			"status", rec.Status)
		r.decided(log, c, rec.Result())
		r.record(ctx, log, "record the Bank's decision", func(ctx context.Context) error {
			return r.outbox.Complete(ctx, c.Tx.ID, rec.Result())
		})
	case lerr == nil, errors.Is(lerr, bankclient.ErrNoSuchTransaction):
		r.reject(ctx, log, c, err)
	default:
		r.observe(lerr)
		r.retry(ctx, log, c, fmt.Errorf("%w; not confirmed by a lookup: %w", err, lerr))
	}
}

// sameTransaction reports whether the Bank's record is the purchase's transaction (the fields the Bank
// compares for idempotency).
func sameTransaction(a, b payment.Transaction) bool {
	return a.ID == b.ID && a.StoreID == b.StoreID && a.AccountID == b.AccountID && a.Amount == b.Amount &&
		a.Currency == b.Currency
}

// reject dead-letters a purchase the Bank refused (err is a permanent *bankclient.Error).
func (r *Relay) reject(ctx context.Context, log *slog.Logger, c store.Claim, err error) {
	var e *bankclient.Error
	errors.As(err, &e)
	r.m.deliveries.WithLabelValues(string(store.StatusRejected)).Inc()
	r.m.attempts.Observe(float64(c.Attempts + 1))
	r.record(ctx, log, "dead-letter", func(ctx context.Context) error {
		return r.outbox.Reject(ctx, c.Tx.ID, e.Code, e.Message)
	})
	log.Warn("the Bank rejected the purchase: dead-lettered, not retried", "status_code", e.StatusCode,
		"code", e.Code, "message", e.Message)
}

// retry makes a purchase whose send failed due again after its backoff.
func (r *Relay) retry(ctx context.Context, log *slog.Logger, c store.Claim, err error) {
	r.m.deliveries.WithLabelValues("retry").Inc()
	delay := r.backoff.Delay(c.Attempts+1, retryAfter(err), r.random())
	r.record(ctx, log, "schedule the retry", func(ctx context.Context) error {
		return r.outbox.Retry(ctx, c, delay, err.Error())
	})
	log.Debug("send failed; retrying", "in", delay, "err", err)
}

// release gives back a purchase the breaker did not let through.
func (r *Relay) release(ctx context.Context, log *slog.Logger, c store.Claim) {
	r.record(ctx, log, "release the claim", func(ctx context.Context) error {
		return r.outbox.Release(ctx, c, 0)
	})
}

// record runs a recording statement, retrying briefly while the database is unavailable. If it still fails,
// the claim's lease ends later and the purchase is sent again (the Bank replays its stored result).
func (r *Relay) record(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(ctx, recordTimeout)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil {
			return
		}
		if !postgres.Unavailable(err) || ctx.Err() != nil {
			log.Error("cannot "+what+"; the purchase is sent again when its claim ends", "err", err)
			return
		}
		sleep(ctx, wait, nil)
		wait *= 2
	}
}
