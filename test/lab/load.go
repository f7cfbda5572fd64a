package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// loader is the extra load through the Store API: purchases at a fixed rate, alternating between the Stores,
// each with an Idempotency-Key, as the API documents a safe client: a 503 or a lost answer is retried (on
// the other Store) with the same key; a 504 (outcome unknown) is resolved by reading its Location until the
// purchase shows up, and by a retry with the same key if it does not. Every answer to every POST is kept with
// its Purchase-Id and latency (the judge holds each against store-db), and so is the id of every purchase a
// Store accepted (202), to check later that store-db holds each of them.
type loader struct {
	stores   []string
	client   *http.Client
	rate     float64
	accounts int
	rng      *rand.Rand
	seed     uint64

	mu       sync.Mutex
	accepted map[string]struct{}
	answers  []postAnswer
	unknowns []unknownOutcome
	failed   atomic.Int64 // no Store accepted it (not a loss: the client was told)
	skipped  atomic.Int64 // not sent: too many requests in flight
	attempts atomic.Int64
}

// postAnswer is one POST /v1/purchases and its answer.
type postAnswer struct {
	Sent   time.Time
	Took   time.Duration
	Store  int    // index in the Stores
	Status int    // 0: no answer (connection error, client timeout)
	ID     string // the Purchase-Id header
}

// How a 504's purchase was resolved.
const (
	resolvedLookup    = "lookup"     // its Location answered 200
	resolvedRetrySame = "retry-same" // a retry with its key answered 202 with the same purchase
	resolvedRetryNew  = "retry-new"  // a retry with its key answered 202 with another purchase: it was not stored
	unresolved        = "unresolved" // the client never learnt
)

// unknownOutcome is a 504's purchase and how the client resolved it.
type unknownOutcome struct {
	ID, Resolution string
}

// loadTimeout bounds one request of the lab's load: beyond the Store's HTTP_REQUEST_TIMEOUT in the lab (8s).
const loadTimeout = 15 * time.Second

func newLoader(stores []string, rate float64, accounts int, seed uint64) *loader {
	client := &http.Client{Timeout: loadTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
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
	// Wide enough for the Stores' own bound (HTTP_MAX_IN_FLIGHT, 503 overloaded) to act, not the client's:
	// while store-db's standby is gone, requests wait up to the Store's deadline.
	sem := make(chan struct{}, 1024)
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

func (l *loader) accept(id string) {
	l.mu.Lock()
	l.accepted[id] = struct{}{}
	l.mu.Unlock()
}

func (l *loader) send(ctx context.Context, n int, p purchaseRequest) {
	body, _ := json.Marshal(p)
	key := fmt.Sprintf("lab-%d-%d-%d", l.seed, time.Now().UnixNano(), n)
	var unknown string // the 504's purchase still to resolve
	resolve := func(how string) {
		if unknown != "" {
			l.mu.Lock()
			l.unknowns = append(l.unknowns, unknownOutcome{ID: unknown, Resolution: how})
			l.mu.Unlock()
			unknown = ""
		}
	}
	defer resolve(unresolved)
	// A purchase started in the fault phase is carried through to its end, as a client would.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	for attempt := range 4 {
		if attempt > 0 && !sleep(ctx, 250*time.Millisecond) {
			break
		}
		a := l.post(ctx, (n+attempt)%len(l.stores), body, key)
		switch a.Status {
		case http.StatusAccepted, http.StatusOK:
			if unknown == a.ID {
				resolve(resolvedRetrySame)
			} else {
				resolve(resolvedRetryNew)
			}
			l.accept(a.ID)
			return
		case http.StatusGatewayTimeout:
			if unknown != "" && unknown != a.ID {
				resolve(resolvedRetryNew)
			}
			unknown = a.ID
			if l.lookup(ctx, n, a.ID) {
				resolve(resolvedLookup)
				l.accept(a.ID)
				return
			}
		case http.StatusServiceUnavailable, 0:
		default:
			l.failed.Add(1) // an answer the judge counts as unexpected: not retried
			return
		}
	}
	l.failed.Add(1)
}

// post sends one POST /v1/purchases to Store i and records its answer.
func (l *loader) post(ctx context.Context, i int, body []byte, key string) postAnswer {
	l.attempts.Add(1)
	a := postAnswer{Sent: time.Now(), Store: i}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.stores[i]+"/v1/purchases",
		bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := l.client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		a.Status, a.ID = resp.StatusCode, resp.Header.Get("Purchase-Id")
	}
	a.Took = time.Since(a.Sent)
	l.mu.Lock()
	l.answers = append(l.answers, a)
	l.mu.Unlock()
	return a
}

// lookup reads a 504's Location (GET /v1/purchases/{id}, on either Store) until it answers 200, for up to
// lookupFor: true when the purchase is stored.
func (l *loader) lookup(ctx context.Context, n int, id string) bool {
	const lookupFor = 10 * time.Second
	deadline := time.Now().Add(lookupFor)
	for i := n; time.Now().Before(deadline); i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
			l.stores[i%len(l.stores)]+"/v1/purchases/"+id, nil)
		if resp, err := l.client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		if !sleep(ctx, 500*time.Millisecond) {
			return false
		}
	}
	return false
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

// results returns every POST's answer and every 504's resolution.
func (l *loader) results() ([]postAnswer, []unknownOutcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]postAnswer{}, l.answers...), append([]unknownOutcome{}, l.unknowns...)
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
	foreign     map[string]*counter // store_relay_foreign_answers_total per Store, across restarts
}

func newMonitor(r *run) *monitor {
	return &monitor{r: r, breakerOpen: map[string]time.Duration{}, breakerSeen: map[string]bool{},
		foreign: map[string]*counter{}}
}

// counter accumulates a Prometheus counter across restarts of the process that exports it (a value lower
// than the last one is a new process counting from zero). What a killed process counted since the last
// scrape is lost: the total is a lower bound.
type counter struct{ last, total float64 }

func (c *counter) observe(v float64) {
	if v < c.last {
		c.total += v
	} else {
		c.total += v - c.last
	}
	c.last = v
}

// foreignMetric is the relay's count of answers without the Bank's marks.
const foreignMetric = "store_relay_foreign_answers_total"

// sumMetric sums the samples of a counter (every label set) in a Prometheus text exposition.
func sumMetric(text []byte, name string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range bytes.Split(text, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte(name)) || len(line) == len(name) {
			continue
		}
		if c := line[len(name)]; c != '{' && c != ' ' {
			continue // another metric whose name starts with this one
		}
		f := bytes.Fields(line[bytes.LastIndexByte(line, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(string(f[0]), 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	return sum, found
}

// scrapeForeign reads a Store's foreign-answer count.
func (m *monitor) scrapeForeign(ctx context.Context, name, url string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	c := http.Client{Timeout: time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return
	}
	v, ok := sumMetric(b, foreignMetric)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.foreign[name] == nil {
		m.foreign[name] = &counter{}
	}
	m.foreign[name].observe(v)
}

// foreignTotal is the foreign answers both Stores counted.
func (m *monitor) foreignTotal() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var t float64
	for _, c := range m.foreign {
		t += c.total
	}
	return int64(t)
}

func (m *monitor) poll(ctx context.Context) (outbox, []string, bool) {
	var last outbox
	var ok bool
	var states []string
	for i, u := range m.r.storeURLs {
		name := m.r.stores[i].Name()
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
		m.scrapeForeign(ctx, name, u)
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
