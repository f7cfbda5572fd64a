package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
	"github.com/txmesh/txmesh/src/localenv/proc"
)

// DrainResult is part 3.
type DrainResult struct {
	Topology  string `json:"topology"`
	Purchases int    `json:"purchases"`
	Drained   int    `json:"drained"`
	// AccumulateTPS is how fast the Store accepted the purchases while the Bank was down.
	AccumulateTPS float64 `json:"accumulate_tps"`
	// Seconds is the drain window: first Bank commit to last outcome recorded by the Store; TimeToDrain
	// counts from the Bank's process start (start-up and the breaker's half-open probe included).
	Seconds     float64 `json:"seconds"`
	TimeToDrain float64 `json:"time_to_drain_seconds"`
	TPS         float64 `json:"tps"`
	// Bank is the Bank's ingestion on the same databases, measured just before and just after the drain
	// (the reference); BankTPS is their mean.
	Bank    []Measure `json:"bank_ingestion"`
	BankTPS float64   `json:"bank_ingestion_tps"`
	Ratio   float64   `json:"drain_over_bank"`
	// CPURatio is the reference's CPU per transaction over the drain's (everything on the machine that takes
	// part): the ratio the throughputs tend to on a saturated machine, and a cross-check that other
	// processes' load (which varies between windows) does not move much.
	CPURatio     float64 `json:"cpu_ratio"`
	CPUPer1k     CPU     `json:"cpu_seconds_per_1k"` // service = Bank + Store
	Cores        CPU     `json:"cores"`
	BankRSSMiB   float64 `json:"bank_peak_rss_mib"`
	StoreRSSMiB  float64 `json:"store_peak_rss_mib"`
	ForeignCores float64 `json:"foreign_cores"`
}

// E2EResult is part 4 (and, in RSSRun, the same at 1,000 purchases/s offered).
type E2EResult struct {
	Topology string  `json:"topology"`
	Rate     float64 `json:"offered_per_s"`
	// Basis is what Rate is half of: the end-to-end system's sustained maximum (see SystemMax) or the Bank's.
	Basis     string     `json:"basis,omitempty"`
	SystemMax *SystemMax `json:"system_max,omitempty"`
	// BankTPS is the Bank's single-request ingestion on the same databases (the drain's reference when it
	// ran, else measured for this); MaxOverBank is SystemMax.TPS over it.
	BankTPS     float64 `json:"bank_ingestion_tps,omitempty"`
	MaxOverBank float64 `json:"e2e_max_over_bank,omitempty"`
	Accepted    int     `json:"accepted"`
	Delivered   int     `json:"delivered"`
	// Over the whole run, warm-up included: purchases the load generator sent, those the Store answered 202,
	// those it shed (503 overloaded with Retry-After: HTTP_MAX_IN_FLIGHT in flight, nothing written) and any
	// other failure (Errors; the generator's own refusals at 1,024 requests in flight among them).
	Sent        int `json:"sent"`
	AcceptedAll int `json:"accepted_whole_run"`
	Shed        int `json:"shed"`
	Errors      int `json:"errors"`
	// Accept is the Store API's latency to 202; Commit is from the 202 to the Bank's commit of the
	// transaction (pg_xact_commit_timestamp of its row; a commit before the client saw its 202 counts 0).
	Accept Latency `json:"accept_latency"`
	Commit Latency `json:"accepted_to_bank_commit"`
	// The two parts of Commit: from the 202 to the start of the Bank's statement (its processed_at: the
	// relay's wake-up, claim and send, the Bank's HTTP handling) and from there to the commit.
	ToBank        Latency    `json:"accepted_to_bank_statement"`
	BankStatement Latency    `json:"bank_statement_to_commit"`
	EarlyCommits  int        `json:"commits_before_202_seen"`
	CPUPer1k      CPU        `json:"cpu_seconds_per_1k"`
	Cores         CPU        `json:"cores"`
	BankRSSMiB    float64    `json:"bank_peak_rss_mib"`
	StoreRSSMiB   float64    `json:"store_peak_rss_mib"`
	ForeignCores  float64    `json:"foreign_cores"`
	RSSRun        *E2EResult `json:"rss_run,omitempty"`
	// OverloadRun offers twice the end-to-end sustained maximum (fresh processes, as RSSRun).
	OverloadRun *E2EResult `json:"overload_run,omitempty"`
	// StoreGo is the Store's Go runtime when the offered load ends (its clients' connections still open).
	StoreGo *GoMem `json:"store_go_at_end_of_load"`
}

// GoMem is a Go service's runtime as its /metrics reports it: what its RSS is made of.
type GoMem struct {
	Goroutines    float64 `json:"goroutines"`
	HeapInuseMiB  float64 `json:"heap_inuse_mib"`
	StackInuseMiB float64 `json:"stack_inuse_mib"`
	SysMiB        float64 `json:"go_sys_mib"`
}

// scrapeGoMem reads the Go collector's gauges from base/metrics.
func scrapeGoMem(ctx context.Context, hc *http.Client, base string) (*GoMem, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	const mib = 1 << 20
	m := &GoMem{}
	fields := map[string]struct {
		dst   *float64
		scale float64
	}{
		"go_goroutines":                 {&m.Goroutines, 1},
		"go_memstats_heap_inuse_bytes":  {&m.HeapInuseMiB, mib},
		"go_memstats_stack_inuse_bytes": {&m.StackInuseMiB, mib},
		"go_memstats_sys_bytes":         {&m.SysMiB, mib},
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		f, known := fields[name]
		if !ok || !known {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		*f.dst = v / f.scale
		found++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if found != len(fields) {
		return nil, fmt.Errorf("GET /metrics: %d of the %d Go runtime gauges found", found, len(fields))
	}
	return m, nil
}

// SystemMax is the end-to-end system's sustained maximum. First the closed-loop clients post purchases to
// the Store API as fast as it accepts them while the relay delivers (AcceptedTPS; DeliveredTPS, the Bank's
// commits in that window, is a lower bound of what the relay sustains when the API is saturated). Then open
// loops step the offered rate up from that lower bound by 15 % at a time; a step is sustained when, at its
// end, the outbox holds less than 0.1 s of arrivals (a system 2 % short of the offered rate fails a 5 s step).
// TPS is the highest sustained step.
type SystemMax struct {
	AcceptedTPS  float64 `json:"accepted_tps"`
	DeliveredTPS float64 `json:"delivered_tps"`
	Steps        []Step  `json:"steps"`
	TPS          float64 `json:"tps"`
	ForeignCores float64 `json:"foreign_cores"`
}

// Step is one offered rate of the search.
type Step struct {
	Rate      float64 `json:"offered_per_s"`
	Backlog   int64   `json:"backlog_at_end"`
	Sustained bool    `json:"sustained"`
}

// storeSetup is a Bank database and a Store database, each on its own cluster of the chosen topology, as in
// production (bank-db and store-db).
type storeSetup struct {
	bankCl, storeCl *cluster
	bankDSN         string
	storeDSN        string
	bankAddr        string // where the Bank listens whenever it runs: the Store's BANK_URL
}

func (b *bench) newStoreSetup(ctx context.Context, topo string) (*storeSetup, error) {
	s := &storeSetup{}
	var err error
	if s.bankCl, err = startCluster(ctx, b.dir, topo, b.cfg.Fsync, b.cfg.PgStats); err != nil {
		return nil, err
	}
	if s.storeCl, err = startCluster(ctx, b.dir, topo, b.cfg.Fsync, b.cfg.PgStats); err != nil {
		s.close()
		return nil, err
	}
	if s.bankDSN, err = s.bankCl.createBankDB(ctx, filepath.Join(b.bin, "bank"), "bank", b.cfg.Accounts); err != nil {
		s.close()
		return nil, err
	}
	if err := s.storeCl.primary.CreateDatabase(ctx, "store"); err != nil {
		s.close()
		return nil, err
	}
	s.storeDSN = s.storeCl.primary.DSN("store")
	if _, err := proc.Run(ctx, proc.Spec{Name: "store migrate", Path: filepath.Join(b.bin, "store"),
		Args: []string{"migrate"}, Env: []string{"DATABASE_URL=" + s.storeDSN, "LOG_LEVEL=warn"}}); err != nil {
		s.close()
		return nil, err
	}
	port, err := pglocal.FreePort()
	if err != nil {
		s.close()
		return nil, err
	}
	s.bankAddr = "127.0.0.1:" + strconv.Itoa(port)
	return s, nil
}

func (s *storeSetup) close() {
	for _, c := range []*cluster{s.bankCl, s.storeCl} {
		if c != nil {
			c.Close()
		}
	}
}

func (s *storeSetup) settle(ctx context.Context) error {
	if err := s.bankCl.settle(ctx, "bank"); err != nil {
		return err
	}
	return s.storeCl.settle(ctx, "store")
}

// startStore runs the Store command with the relay aimed at the Bank's address (up or not), generator off,
// the relay in -relay-mode: batch (-batch purchases per request, -batch-clients requests in flight, as the
// batched Bank contender) or single (concurrency and claims of -clients, as the Bank's pool); the breaker's
// open timeout at 1 s (so a drain does not start 10 s late).
func (b *bench) startStore(ctx context.Context, s *storeSetup, name string) (*proc.Process, string, error) {
	port, err := pglocal.FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	n := strconv.Itoa(b.cfg.Clients)
	relay := []string{"RELAY_MODE=single", "RELAY_CONCURRENCY=" + n, "RELAY_BATCH_SIZE=" + n}
	if b.cfg.RelayMode == "batch" {
		relay = []string{"RELAY_MODE=batch", "RELAY_CONCURRENCY=" + strconv.Itoa(b.cfg.BatchClients),
			"RELAY_BATCH_SIZE=" + strconv.Itoa(b.cfg.BatchSize)}
	}
	env := []string{"DATABASE_URL=" + s.storeDSN, "HTTP_ADDR=" + addr, "BANK_URL=https://" + s.bankAddr,
		"BANK_CA_FILE=" + b.certs.CA, "BANK_CLIENT_CERT_FILE=" + b.certs.ClientCert,
		"BANK_CLIENT_KEY_FILE=" + b.certs.ClientKey, "STORE_ID=bench-store", "GENERATOR_INTERVAL=0",
		"DB_MAX_CONNS=" + n, "BREAKER_OPEN_TIMEOUT=1s", "LOG_LEVEL=warn", "SHUTDOWN_DRAIN_DELAY=0s"}
	env = append(env, relay...)
	env = append(env, b.cfg.StoreEnv...)
	url := "http://" + addr
	st, err := startService(ctx, "store", filepath.Join(b.bin, "store"), env, filepath.Join(b.dir, name+".log"),
		b.tlsCli, url+"/readyz")
	if err != nil {
		return nil, "", err
	}
	return st, url, nil
}

func (b *bench) startBankAt(ctx context.Context, s *storeSetup, name string) (*proc.Process, string, error) {
	return b.startBankAddr(ctx, s.bankDSN, name, s.bankAddr, b.cfg.Clients)
}

func (b *bench) storeParts(ctx context.Context, rep *Report) error {
	topo := b.cfg.E2ETopology
	b.logf("Store parts on %s (bank-db and store-db clusters): starting PostgreSQL", topologyLabel(topo))
	s, err := b.newStoreSetup(ctx, topo)
	if err != nil {
		return err
	}
	defer s.close()

	if b.cfg.has(partDrain) {
		d, err := b.drain(ctx, s, topo)
		if err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		b.logf("  drain/bank = %.2f (CPU ratio %.2f)", d.Ratio, d.CPURatio)
		rep.Drain = d
	}
	if b.cfg.has(partE2E) {
		rate, basis := b.cfg.E2ERate, "-e2e-rate"
		var sm *SystemMax
		if rate <= 0 {
			switch b.cfg.E2EMax {
			case "bank":
				ref, err := b.reference(ctx, s)
				if err != nil {
					return err
				}
				rate, basis = ref.TPS/2, "half the Bank's ingestion maximum"
			default:
				if sm, err = b.systemMax(ctx, s); err != nil {
					return fmt.Errorf("end-to-end maximum: %w", err)
				}
				rate, basis = sm.TPS/2, "half the end-to-end sustained maximum"
			}
		}
		var bankTPS float64
		if sm != nil {
			if rep.Drain != nil {
				bankTPS = rep.Drain.BankTPS
			} else {
				ref, err := b.reference(ctx, s)
				if err != nil {
					return err
				}
				bankTPS = ref.TPS
			}
			b.logf("  e2e-max/bank = %.2f (%.0f/s against the Bank's %.0f tx/s)", sm.TPS/bankTPS, sm.TPS, bankTPS)
		}
		e, err := b.e2e(ctx, s, topo, rate, b.cfg.E2EDuration)
		if err != nil {
			return fmt.Errorf("end to end: %w", err)
		}
		e.Basis, e.SystemMax = basis, sm
		if sm != nil && bankTPS > 0 {
			e.BankTPS, e.MaxOverBank = bankTPS, sm.TPS/bankTPS
		}
		if rate != 1000 {
			if e.RSSRun, err = b.e2e(ctx, s, topo, 1000, min(b.cfg.E2EDuration, 15*time.Second)); err != nil {
				return fmt.Errorf("RSS run at 1000/s: %w", err)
			}
		}
		if sm != nil {
			if e.OverloadRun, err = b.e2e(ctx, s, topo, 2*sm.TPS, min(b.cfg.E2EDuration, 15*time.Second)); err != nil {
				return fmt.Errorf("overload run at twice the maximum: %w", err)
			}
		}
		rep.E2E = e
	}
	return nil
}

// reference measures the Bank's ingestion on the setup's Bank database (a fresh Bank process, the Store's
// cluster idle).
func (b *bench) reference(ctx context.Context, s *storeSetup) (Measure, error) {
	bank, url, err := b.startBankAt(ctx, s, "bank-ref")
	if err != nil {
		return Measure{}, err
	}
	defer stop(bank)
	if err := s.settle(ctx); err != nil {
		return Measure{}, err
	}
	jobs, closeJobs := b.bankJobs(url)
	defer closeJobs()
	ref, err := b.measureGo(ctx, meter{clusters: []*cluster{s.bankCl}, services: []int{bank.PID()}}, jobs, 1)
	if err != nil {
		return Measure{}, fmt.Errorf("reference ingestion: %w", err)
	}
	ref.Contender = "bank"
	b.logf("  reference Bank ingestion %8.0f tx/s  p50 %.2f ms  p99 %.2f ms  other %.2f cores", ref.TPS,
		ref.Latency.P50, ref.Latency.P99, ref.ForeignCores)
	return ref, nil
}

// systemMax posts purchases with the closed-loop clients while the relay delivers, and measures the
// accepted and delivered rates in the window; then it waits for the backlog to drain.
func (b *bench) systemMax(ctx context.Context, s *storeSetup) (*SystemMax, error) {
	bank, _, err := b.startBankAt(ctx, s, "bank-max")
	if err != nil {
		return nil, err
	}
	defer stop(bank)
	st, storeURL, err := b.startStore(ctx, s, "store-max")
	if err != nil {
		return nil, err
	}
	defer stop(st)
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	var jobs []func(context.Context) error
	var clients []*leanClient
	for range b.cfg.Clients {
		c := newLeanClient(storeURL, b.certs)
		clients = append(clients, c)
		jobs = append(jobs, func(ctx context.Context) error {
			_, err := c.purchase(ctx, strconv.Itoa(rand.IntN(b.cfg.Accounts)+1), rand.Int64N(100)+1)
			return err
		})
	}
	m := meter{clusters: []*cluster{s.bankCl, s.storeCl}, services: []int{bank.PID(), st.PID()}}
	acc, err := b.measureGo(ctx, m, jobs, 1)
	for _, c := range clients {
		c.close()
	}
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	t0 := t1.Add(-time.Duration(acc.Seconds * float64(time.Second)))
	if err := waitEmptyOutbox(ctx, s.storeDSN, 10*time.Minute); err != nil {
		return nil, err
	}
	delivered, err := count(ctx, s.bankDSN, `SELECT count(*) FROM transactions
WHERE pg_xact_commit_timestamp(xmin) >= $1 AND pg_xact_commit_timestamp(xmin) < $2`, t0, t1)
	if err != nil {
		return nil, err
	}
	sm := &SystemMax{AcceptedTPS: acc.TPS, DeliveredTPS: float64(delivered) / acc.Seconds,
		ForeignCores: acc.ForeignCores}
	b.logf("  end-to-end, API saturated: accepted %.0f/s, delivered %.0f/s (other %.2f cores)", sm.AcceptedTPS,
		sm.DeliveredTPS, sm.ForeignCores)
	step := max(b.cfg.Duration/3, time.Second)
	for rate := max(sm.DeliveredTPS, 10); rate <= sm.AcceptedTPS*1.15; rate *= 1.15 {
		pool := make(chan *leanClient, 1024)
		_, _ = openLoop(ctx, rate, time.Now().Add(step), 1024, func(ctx context.Context) error {
			var c *leanClient
			select {
			case c = <-pool:
			default:
				c = newLeanClient(storeURL, b.certs)
			}
			_, err := c.purchase(ctx, strconv.Itoa(rand.IntN(b.cfg.Accounts)+1), rand.Int64N(100)+1)
			select {
			case pool <- c:
			default:
				c.close()
			}
			return err
		})
		close(pool)
		for c := range pool {
			c.close()
		}
		backlog, err := count(ctx, s.storeDSN, `SELECT count(*) FROM outbox`)
		if err != nil {
			return nil, err
		}
		ok := float64(backlog) < rate/10
		sm.Steps = append(sm.Steps, Step{Rate: rate, Backlog: backlog, Sustained: ok})
		b.logf("    %.0f/s offered for %s: backlog %d at the end (%s)", rate, step, backlog,
			map[bool]string{true: "sustained", false: "falling behind"}[ok])
		if err := waitEmptyOutbox(ctx, s.storeDSN, 10*time.Minute); err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		sm.TPS = rate
	}
	if sm.TPS == 0 {
		sm.TPS = sm.DeliveredTPS
	}
	b.logf("  end-to-end sustained maximum %.0f/s", sm.TPS)
	return sm, nil
}

// accumulate posts n purchases to the Store with the benchmark's clients, as fast as it accepts them.
func (b *bench) accumulate(ctx context.Context, storeURL string, n int) (float64, error) {
	var left atomic.Int64
	left.Store(int64(n))
	errs := &errorTally{}
	start := time.Now()
	var wg sync.WaitGroup
	for range b.cfg.Clients {
		c := newLeanClient(storeURL, b.certs)
		wg.Go(func() {
			defer c.close()
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				if _, err := c.purchase(ctx, strconv.Itoa(rand.IntN(b.cfg.Accounts)+1), rand.Int64N(100)+1); err != nil {
					errs.add(err)
					left.Add(1)
					if errs.n > 100 {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if errs.n > 100 || ctx.Err() != nil {
		return 0, fmt.Errorf("posting purchases: %d errors (%v) %w", errs.n, errs.first, ctx.Err())
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func count(ctx context.Context, dsn, sql string, args ...any) (int64, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var n int64
	err = c.QueryRow(ctx, sql, args...).Scan(&n)
	return n, err
}

// waitEmptyOutbox polls the Store's outbox (once a second: a count of a large outbox is not free) until it is
// empty.
func waitEmptyOutbox(ctx context.Context, dsn string, timeout time.Duration) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	deadline := time.Now().Add(timeout)
	for {
		var n int64
		if err := c.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("outbox still holds %d purchases after %s", n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (b *bench) drain(ctx context.Context, s *storeSetup, topo string) (*DrainResult, error) {
	before, err := b.reference(ctx, s)
	if err != nil {
		return nil, err
	}
	d, err := b.drainOnce(ctx, s, topo)
	if err != nil {
		return nil, err
	}
	after, err := b.reference(ctx, s)
	if err != nil {
		return nil, err
	}
	d.Bank = []Measure{before, after}
	d.BankTPS = (before.TPS + after.TPS) / 2
	d.Ratio = d.TPS / d.BankTPS
	d.CPURatio = (before.CPUPer1k.Total + after.CPUPer1k.Total) / 2 / d.CPUPer1k.Total
	return d, nil
}

func (b *bench) drainOnce(ctx context.Context, s *storeSetup, topo string) (*DrainResult, error) {
	n := b.cfg.DrainN
	st, storeURL, err := b.startStore(ctx, s, "store-drain")
	if err != nil {
		return nil, err
	}
	defer stop(st)
	b.logf("  accumulating %d purchases while the Bank is down", n)
	acc, err := b.accumulate(ctx, storeURL, n)
	if err != nil {
		return nil, err
	}
	pending, err := count(ctx, s.storeDSN, `SELECT count(*) FROM outbox`)
	if err != nil {
		return nil, err
	}
	if pending != int64(n) {
		return nil, fmt.Errorf("%d purchases pending, want %d", pending, n)
	}
	if b.cfg.PgStats {
		if err := s.bankCl.resetStatements(ctx, "bank"); err != nil {
			return nil, err
		}
		if err := s.storeCl.resetStatements(ctx, "store"); err != nil {
			return nil, err
		}
	}
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	b.logf("  %d pending (accepted at %.0f/s); starting the Bank", n, acc)
	m := meter{clusters: []*cluster{s.bankCl, s.storeCl}, services: []int{st.PID()}}
	r0 := m.read()
	bankStart := time.Now()
	bank, _, err := b.startBankAt(ctx, s, "bank-drain")
	if err != nil {
		return nil, err
	}
	defer stop(bank)
	m.services = append(m.services, bank.PID())
	// The Bank's CPU before r0 is zero: it did not exist.
	if err := waitEmptyOutbox(ctx, s.storeDSN, 30*time.Minute); err != nil {
		return nil, err
	}
	r1 := m.read()
	d := &DrainResult{Topology: topo, Purchases: n, AccumulateTPS: acc}
	// The window from the data: first Bank commit, last outcome the Store recorded.
	c, err := pgx.Connect(ctx, s.bankDSN)
	if err != nil {
		return nil, err
	}
	var first time.Time
	err = c.QueryRow(ctx, `SELECT min(pg_xact_commit_timestamp(xmin)) FROM transactions WHERE store_id = 'bench-store'`).
		Scan(&first)
	c.Close(ctx)
	if err != nil {
		return nil, err
	}
	c, err = pgx.Connect(ctx, s.storeDSN)
	if err != nil {
		return nil, err
	}
	var last time.Time
	var done int64
	err = c.QueryRow(ctx, `SELECT max(completed_at), count(*) FROM purchases WHERE status <> 'pending'`).Scan(&last, &done)
	c.Close(ctx)
	if err != nil {
		return nil, err
	}
	d.Drained = int(done)
	d.Seconds = last.Sub(first).Seconds()
	d.TimeToDrain = last.Sub(bankStart).Seconds()
	d.TPS = float64(done) / d.Seconds
	var mm Measure
	mm.fill(r0, r1, int(done))
	// r0→r1 also holds the Bank's start-up and up to a second of idle polling: the CPU per purchase is a
	// slight over-estimate.
	d.CPUPer1k, d.Cores, d.ForeignCores = mm.CPUPer1k, mm.Cores, mm.ForeignCores
	if d.BankRSSMiB, err = peakRSS(bank.PID()); err != nil {
		return nil, err
	}
	if d.StoreRSSMiB, err = peakRSS(st.PID()); err != nil {
		return nil, err
	}
	if b.cfg.PgStats {
		for _, x := range []struct {
			c  *cluster
			db string
		}{{s.bankCl, "bank"}, {s.storeCl, "store"}} {
			top, err := x.c.topStatements(ctx, x.db, 8)
			if err != nil {
				return nil, err
			}
			b.logf("  drain, top statements of %s:\n%s", x.db, top)
		}
	}
	b.logf("  drained %d in %.1f s (%.1f s from Bank start): %.0f tx/s; Bank %.1f MiB, Store %.1f MiB", done,
		d.Seconds, d.TimeToDrain, d.TPS, d.BankRSSMiB, d.StoreRSSMiB)
	return d, nil
}

// e2e offers purchases to the Store at rate for d (open loop), then measures from each 202 to the Bank's
// commit of the transaction. Fresh Bank and Store processes, so their peak RSS is this run's.
func (b *bench) e2e(ctx context.Context, s *storeSetup, topo string, rate float64, d time.Duration) (*E2EResult,
	error) {
	bank, _, err := b.startBankAt(ctx, s, fmt.Sprintf("bank-e2e-%.0f", rate))
	if err != nil {
		return nil, err
	}
	defer stop(bank)
	st, storeURL, err := b.startStore(ctx, s, fmt.Sprintf("store-e2e-%.0f", rate))
	if err != nil {
		return nil, err
	}
	defer stop(st)
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	b.logf("  end to end: %.0f purchases/s for %s", rate, d)
	type accepted struct {
		id string
		at time.Time
	}
	var mu sync.Mutex
	var got []accepted
	var sent, shed atomic.Int64
	pool := make(chan *leanClient, 1024)
	m := meter{clusters: []*cluster{s.bankCl, s.storeCl}, services: []int{bank.PID(), st.PID()}}
	// The first Warmup of arrivals is not measured (the relay's and the load generator's connections are
	// set up then, as in the ingestion phases); everything else is.
	start := time.Now()
	measured := start.Add(b.cfg.Warmup)
	r0 := m.read()
	all, errs := openLoop(ctx, rate, start.Add(b.cfg.Warmup+d), 1024, func(ctx context.Context) error {
		var c *leanClient
		select {
		case c = <-pool:
		default:
			c = newLeanClient(storeURL, b.certs)
		}
		sent.Add(1)
		id, err := c.purchase(ctx, strconv.Itoa(rand.IntN(b.cfg.Accounts)+1), rand.Int64N(100)+1)
		at := time.Now()
		select {
		case pool <- c:
		default:
			c.close()
		}
		if errors.Is(err, errShed) {
			shed.Add(1)
			return err
		}
		if err != nil {
			return err
		}
		mu.Lock()
		got = append(got, accepted{id, at})
		mu.Unlock()
		return nil
	})
	// What the Store's memory is made of at the end of the load, its client connections still open.
	storeMem, err := scrapeGoMem(ctx, httpClient(b.certs, 1), storeURL)
	if err != nil {
		return nil, fmt.Errorf("store metrics: %w", err)
	}
	if err := waitEmptyOutbox(ctx, s.storeDSN, 10*time.Minute); err != nil {
		return nil, err
	}
	r1 := m.read()
	close(pool)
	for c := range pool {
		c.close()
	}
	e := &E2EResult{Topology: topo, Rate: rate, Sent: int(sent.Load()), AcceptedAll: len(got), Shed: int(shed.Load()),
		Errors: errs.n - int(shed.Load()), StoreGo: storeMem, Accept: summarise(latencies(window(all, measured,
			time.Now())))}
	var ids []string
	for _, a := range got {
		ids = append(ids, a.id)
	}
	c, err := pgx.Connect(ctx, s.bankDSN)
	if err != nil {
		return nil, err
	}
	rows, err := c.Query(ctx, `SELECT id::text, processed_at, pg_xact_commit_timestamp(xmin) FROM transactions
WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		c.Close(ctx)
		return nil, err
	}
	committed := map[string]time.Time{}
	started := map[string]time.Time{}
	for rows.Next() {
		var id string
		var start, at time.Time
		if err := rows.Scan(&id, &start, &at); err != nil {
			c.Close(ctx)
			return nil, err
		}
		committed[id], started[id] = at, start
	}
	c.Close(ctx)
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var lat, toBank, stmt []time.Duration
	for _, a := range got {
		if a.at.Before(measured) {
			continue
		}
		e.Accepted++
		at, ok := committed[a.id]
		if !ok {
			continue
		}
		l := at.Sub(a.at)
		if l < 0 {
			e.EarlyCommits++
			l = 0
		}
		lat = append(lat, l)
		toBank = append(toBank, max(started[a.id].Sub(a.at), 0))
		stmt = append(stmt, at.Sub(started[a.id]))
	}
	e.Delivered = len(lat)
	e.Commit, e.ToBank, e.BankStatement = summarise(lat), summarise(toBank), summarise(stmt)
	var mm Measure
	mm.fill(r0, r1, max(e.Delivered, 1))
	e.CPUPer1k, e.Cores, e.ForeignCores = mm.CPUPer1k, mm.Cores, mm.ForeignCores
	if e.BankRSSMiB, err = peakRSS(bank.PID()); err != nil {
		return nil, err
	}
	if e.StoreRSSMiB, err = peakRSS(st.PID()); err != nil {
		return nil, err
	}
	b.logf("    sent %d: %d accepted, %d shed (503 overloaded), %d other errors (%v); in the window accepted %d, delivered %d; 202 p50 %.2f p99 %.2f ms; 202→commit p50 %.2f p99 %.2f "+
		"max %.2f ms (202→Bank statement p99 %.2f, statement→commit p99 %.2f); Bank %.1f MiB, Store %.1f MiB "+
		"(at the end of the load: %.0f goroutines, heap %.1f MiB, stacks %.1f MiB, Go total %.1f MiB)",
		e.Sent, e.AcceptedAll, e.Shed, e.Errors, errs.first, e.Accepted, e.Delivered, e.Accept.P50, e.Accept.P99, e.Commit.P50, e.Commit.P99,
		e.Commit.Max, e.ToBank.P99, e.BankStatement.P99, e.BankRSSMiB, e.StoreRSSMiB, storeMem.Goroutines,
		storeMem.HeapInuseMiB, storeMem.StackInuseMiB, storeMem.SysMiB)
	if len(committed) != len(got) {
		return nil, fmt.Errorf("%d purchases accepted but %d reached the Bank", len(got), len(committed))
	}
	return e, nil
}
