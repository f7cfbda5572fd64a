package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// loader is the extra load through the Store API: purchases at a fixed rate, alternating between the Stores,
// each with an Idempotency-Key; a failed attempt is retried on the other Store with the same key. It keeps
// the id of every purchase a Store accepted (202), to check later that store-db holds each of them.
type loader struct {
	stores   []string
	client   *http.Client
	rate     float64
	accounts int
	rng      *rand.Rand
	seed     uint64

	mu       sync.Mutex
	accepted map[string]struct{}
	failed   atomic.Int64 // no Store accepted it (not a loss: the client was told)
	skipped  atomic.Int64 // not sent: too many requests in flight
	attempts atomic.Int64
}

func newLoader(stores []string, client *http.Client, rate float64, accounts int, seed uint64) *loader {
	return &loader{stores: stores, client: client, rate: rate, accounts: accounts, seed: seed,
		rng: rand.New(rand.NewPCG(seed, 0x10ad)), accepted: map[string]struct{}{}}
}

type purchaseRequest struct {
	AccountID string `json:"account_id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
}

// next draws a purchase: mostly valid, some for an unknown account or in the wrong currency (the Bank
// declines those: a decision, recorded on both sides).
func (l *loader) next() purchaseRequest {
	p := purchaseRequest{AccountID: fmt.Sprintf("ACC-%06d", 1+l.rng.IntN(l.accounts)),
		Amount: 100 + l.rng.Int64N(9900), Currency: "EUR"}
	switch n := l.rng.IntN(100); {
	case n < 3:
		p.AccountID = fmt.Sprintf("ACC-%06d", l.accounts+1+l.rng.IntN(1000))
	case n < 6:
		p.Currency = "USD"
	}
	return p
}

func (l *loader) run(ctx context.Context) {
	if l.rate <= 0 {
		return
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / l.rate))
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p := l.next()
		select {
		case sem <- struct{}{}:
		default:
			l.skipped.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			l.send(ctx, n, p)
		}()
	}
}

func (l *loader) send(ctx context.Context, n int, p purchaseRequest) {
	body, _ := json.Marshal(p)
	key := fmt.Sprintf("lab-%d-%d-%d", l.seed, time.Now().UnixNano(), n)
	for attempt := range 4 {
		if attempt > 0 && !sleep(ctx, 250*time.Millisecond) {
			break
		}
		l.attempts.Add(1)
		url := l.stores[(n+attempt)%len(l.stores)] + "/v1/purchases"
		req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := l.client.Do(req)
		if err != nil {
			continue
		}
		var out struct {
			ID string `json:"id"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if (resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK) &&
			json.Unmarshal(b, &out) == nil && out.ID != "" {
			l.mu.Lock()
			l.accepted[out.ID] = struct{}{}
			l.mu.Unlock()
			return
		}
	}
	l.failed.Add(1)
}

func (l *loader) acceptedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.accepted))
	for id := range l.accepted {
		ids = append(ids, id)
	}
	return ids
}

// outbox is a Store's GET /v1/outbox.
type outbox struct {
	Backlog   int64   `json:"backlog"`
	OldestAge float64 `json:"oldest_pending_age_seconds"`
	Breaker   string  `json:"breaker"`
	Purchases struct {
		Pending, Approved, Declined, Rejected int64
	} `json:"purchases"`
}

// monitor polls both Stores' /v1/outbox every second: the backlog (shared: one store-db), each Store's
// breaker, and prints the progress line.
type monitor struct {
	r *run

	mu          sync.Mutex
	last        outbox
	maxBacklog  int64
	breakerOpen map[string]time.Duration // time seen open, per Store
	breakerSeen map[string]bool
}

func newMonitor(r *run) *monitor {
	return &monitor{r: r, breakerOpen: map[string]time.Duration{}, breakerSeen: map[string]bool{}}
}

func (m *monitor) poll(ctx context.Context) (outbox, []string, bool) {
	var last outbox
	var ok bool
	var states []string
	for i, u := range m.r.storeURLs {
		name := m.r.stores[i].name
		var o outbox
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+"/v1/outbox", nil)
		c := http.Client{Timeout: time.Second}
		resp, err := c.Do(req)
		if err != nil {
			states = append(states, name+" down")
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			states = append(states, name+" ?")
			continue
		}
		states = append(states, name+" "+o.Breaker)
		m.mu.Lock()
		if o.Breaker == "open" {
			m.breakerOpen[name] += time.Second
			m.breakerSeen[name] = true
		}
		m.mu.Unlock()
		last, ok = o, true
	}
	if ok {
		m.mu.Lock()
		m.last = last
		m.maxBacklog = max(m.maxBacklog, last.Backlog)
		m.mu.Unlock()
	}
	return last, states, ok
}

func (m *monitor) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastPrint := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		o, states, ok := m.poll(ctx)
		if time.Since(lastPrint) < every-100*time.Millisecond {
			continue
		}
		lastPrint = time.Now()
		if !ok {
			m.r.logf("progress: no Store answers /v1/outbox; faults: %s", m.r.exec.activeList())
			continue
		}
		p := o.Purchases
		m.r.logf("progress: purchases %d (delivered %d, rejected %d) backlog %d (oldest %.1fs) breakers [%s] "+
			"primary %s; faults: %s", p.Pending+p.Approved+p.Declined+p.Rejected, p.Approved+p.Declined,
			p.Rejected, o.Backlog, o.OldestAge, joinStates(states), m.r.db.primaryName(), m.r.exec.activeList())
	}
}

func joinStates(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}
