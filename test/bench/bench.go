package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
	"github.com/txmesh/txmesh/src/localenv/proc"
)

type bench struct {
	cfg      Config
	out      io.Writer
	dir      string
	bin      string
	root     string // the module's root directory
	bankSQL  string // the Bank's per-transaction statement, from its source
	batchSQL string // the Bank's batch statement, from its source
	certs    certFiles
	tlsCli   *http.Client // verifies the Bank, presents the client certificate
	store    bool         // the Store command exists
}

func newBench(ctx context.Context, cfg Config, out io.Writer) (*bench, error) {
	// Readable by others: PostgreSQL runs as an unprivileged user when the bench runs as root.
	dir, err := proc.TempDir("txmesh-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, out: out, dir: dir, bin: filepath.Join(dir, "bin")}
	if b.root, err = moduleRoot(); err != nil {
		b.close()
		return nil, err
	}
	if b.bankSQL, err = bankSQL(b.root); err != nil {
		b.close()
		return nil, err
	}
	if b.batchSQL, err = bankBatchSQL(b.root); err != nil {
		b.close()
		return nil, err
	}
	if b.certs, err = writeCerts(dir); err != nil {
		b.close()
		return nil, err
	}
	b.tlsCli = httpClient(b.certs, max(cfg.Clients, 4))
	cmds := []string{"bank"}
	b.store = commandExists(b.root, "store")
	if b.store && (cfg.has(partDrain) || cfg.has(partE2E)) {
		cmds = append(cmds, "store")
	}
	if cfg.Bin != "" {
		if b.bin, err = filepath.Abs(cfg.Bin); err != nil {
			b.close()
			return nil, err
		}
		b.logf("using the binaries in %s", b.bin)
		return b, nil
	}
	b.logf("building %v", cmds)
	if err := build(ctx, b.root, b.bin, cmds...); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	if b.cfg.Keep {
		_ = proc.Keep(b.dir)
		fmt.Fprintln(b.out, "bench: working directory kept:", b.dir)
		return
	}
	_ = os.RemoveAll(b.dir)
}

func (b *bench) logf(format string, args ...any) {
	if !b.cfg.Quiet {
		fmt.Fprintf(b.out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

// Report is bench.json.
type Report struct {
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Host     Host           `json:"host"`
	Config   Config         `json:"config"`
	Ingest   []IngestResult `json:"ingest,omitempty"`
	Drain    *DrainResult   `json:"drain,omitempty"`
	E2E      *E2EResult     `json:"e2e,omitempty"`
	Targets  []Target       `json:"targets"`
	Notes    []string       `json:"notes,omitempty"`
}

// Host describes the machine and how busy it was.
type Host struct {
	Cores      int     `json:"cores"`
	GoVersion  string  `json:"go"`
	PostgreSQL string  `json:"postgresql"`
	LoadBefore float64 `json:"load1_before"`
	LoadAfter  float64 `json:"load1_after"`
	// ForeignCores is the median CPU (in cores) used during the measured windows by processes that are not
	// part of the benchmark: the other engineers' compilers and tests. 0 means a quiet machine.
	ForeignCores    float64 `json:"foreign_cores_median"`
	ForeignCoresMax float64 `json:"foreign_cores_max"`
}

// Target is one goal of issues 6 and 14 and whether the run met it.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Goal  string  `json:"goal"`
	Met   bool    `json:"met"`
}

func (b *bench) run(ctx context.Context) (*Report, error) {
	rep := &Report{Started: time.Now().UTC(), Config: b.cfg, Host: Host{Cores: runtime.NumCPU(),
		GoVersion: runtime.Version(), LoadBefore: loadAvg()}}
	if bin, err := pglocal.BinDir(); err == nil {
		rep.Host.PostgreSQL = filepath.Base(filepath.Dir(bin))
	}
	if b.cfg.has(partIngest) {
		for _, topo := range b.cfg.Topologies {
			res, err := b.ingest(ctx, topo)
			if err != nil {
				return nil, fmt.Errorf("ingestion on %s: %w", topologyLabel(topo), err)
			}
			rep.Ingest = append(rep.Ingest, *res)
		}
	}
	if b.cfg.has(partDrain) || b.cfg.has(partE2E) {
		if !b.store {
			rep.Notes = append(rep.Notes, "parts 3 and 4 skipped: src/cmd/store does not exist yet")
		} else if err := b.storeParts(ctx, rep); err != nil {
			return nil, err
		}
	}
	rep.Finished = time.Now().UTC()
	rep.Host.LoadAfter = loadAvg()
	var foreign []float64
	for _, in := range rep.Ingest {
		for _, m := range in.Rounds {
			foreign = append(foreign, m.ForeignCores)
		}
	}
	if rep.Drain != nil {
		foreign = append(foreign, rep.Drain.ForeignCores)
	}
	if rep.E2E != nil {
		foreign = append(foreign, rep.E2E.ForeignCores)
	}
	if len(foreign) > 0 {
		rep.Host.ForeignCores = median(foreign)
		rep.Host.ForeignCoresMax = slices.Max(foreign)
	}
	rep.Targets = targets(rep)
	return rep, nil
}

// CPU is CPU time split by who spent it.
type CPU struct {
	Service  float64 `json:"service"`  // the Bank (and the Store, in parts 3–4)
	Postgres float64 `json:"postgres"` // every PostgreSQL process, standby included
	Client   float64 `json:"client"`   // pgbench, or the Go load generator
	Total    float64 `json:"total"`
}

// Measure is one measured window of one contender.
type Measure struct {
	Contender    string   `json:"contender"`
	Round        int      `json:"round"`
	Seconds      float64  `json:"seconds"`
	Transactions int      `json:"transactions"`    // for batched contenders, every transaction of every batch
	Batch        int      `json:"batch,omitempty"` // transactions per statement or request (batched contenders)
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	TPS          float64  `json:"tps"`
	Latency      Latency  `json:"latency"`
	// CPUPer1k is CPU seconds per 1,000 transactions; Cores is the average number of cores busy.
	CPUPer1k     CPU     `json:"cpu_seconds_per_1k"`
	Cores        CPU     `json:"cores"`
	ForeignCores float64 `json:"foreign_cores"`
	Load1        float64 `json:"load1"`
}

// meter reads the CPU counters of everything that takes part in a phase.
type meter struct {
	clusters  []*cluster
	services  []int // Bank / Store pids
	clientPID int   // 0: this process (the Go load generator)
}

type reading struct {
	at                             time.Time
	postgres, service, client, sys float64
}

func (m meter) read() reading {
	r := reading{at: time.Now()}
	for _, c := range m.clusters {
		r.postgres += c.cpu()
	}
	for _, pid := range m.services {
		r.service += processCPU(pid)
	}
	pid := m.clientPID
	if pid == 0 {
		pid = os.Getpid()
	}
	r.client = processCPU(pid)
	r.sys, _ = systemCPU()
	return r
}

// fill sets the CPU figures of m from two readings.
func (m *Measure) fill(r0, r1 reading, n int) {
	secs := r1.at.Sub(r0.at).Seconds()
	m.Seconds = secs
	m.Transactions = n
	m.TPS = float64(n) / secs
	used := CPU{Service: r1.service - r0.service, Postgres: r1.postgres - r0.postgres, Client: r1.client - r0.client}
	used.Total = used.Service + used.Postgres + used.Client
	m.Cores = CPU{Service: used.Service / secs, Postgres: used.Postgres / secs, Client: used.Client / secs,
		Total: used.Total / secs}
	if n > 0 {
		k := 1000 / float64(n)
		m.CPUPer1k = CPU{Service: used.Service * k, Postgres: used.Postgres * k, Client: used.Client * k,
			Total: used.Total * k}
	}
	m.ForeignCores = max(0, (r1.sys-r0.sys-used.Total)/secs)
	m.Load1 = loadAvg()
}

// IngestResult is parts 1 and 2 on one topology.
type IngestResult struct {
	Topology string    `json:"topology"`
	Label    string    `json:"label"`
	Rounds   []Measure `json:"rounds"`
	Pgbench  Summary   `json:"pgbench"`
	Bank     Summary   `json:"bank"`
	// PgbenchBatch runs the Bank's batch statement, BankBatch the Bank's batch endpoint, both with -batch
	// transactions per statement/request and -batch-clients clients (tps counts transactions).
	PgbenchBatch *Summary `json:"pgbench_batch,omitempty"`
	BankBatch    *Summary `json:"bank_batch,omitempty"`
	// Ratio is the median over rounds of bank tps / pgbench tps (each round pairs neighbouring windows).
	Ratio       float64   `json:"bank_over_pgbench"`
	RoundRatios []float64 `json:"round_ratios"`
	// CPURatio is pgbench's CPU per transaction over the Bank's (medians; everything that takes part:
	// PostgreSQL, the service, the client): the ratio the throughputs tend to on a saturated machine, a
	// cross-check that other processes' varying load does not move much.
	CPURatio float64 `json:"cpu_ratio"`
	// BatchRatio is the median over rounds of bank-batch tps / pgbench-batch tps; BatchOverPgbench of
	// bank-batch tps / pgbench (single statement) tps, both windows of the same round.
	BatchRatio            float64   `json:"bank_batch_over_pgbench_batch,omitempty"`
	BatchRoundRatios      []float64 `json:"batch_round_ratios,omitempty"`
	BatchCPURatio         float64   `json:"batch_cpu_ratio,omitempty"`
	BatchOverPgbench      float64   `json:"bank_batch_over_pgbench,omitempty"`
	BatchOverPgbenchRound []float64 `json:"bank_batch_over_pgbench_rounds,omitempty"`
	BankRSSMiB            float64   `json:"bank_peak_rss_mib"`
	// NoisyRounds counts rounds kept although other processes used more than -max-foreign cores in them
	// (after -retries attempts).
	NoisyRounds int `json:"noisy_rounds"`
}

// Summary holds the medians over rounds.
type Summary struct {
	TPS      float64 `json:"tps"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	CPUPer1k CPU     `json:"cpu_seconds_per_1k"`
	Cores    CPU     `json:"cores"`
	Errors   int     `json:"errors"`
}

func summary(ms []Measure) Summary {
	pick := func(f func(Measure) float64) float64 {
		v := make([]float64, len(ms))
		for i, m := range ms {
			v[i] = f(m)
		}
		return median(v)
	}
	s := Summary{
		TPS: pick(func(m Measure) float64 { return m.TPS }),
		P50: pick(func(m Measure) float64 { return m.Latency.P50 }),
		P99: pick(func(m Measure) float64 { return m.Latency.P99 }),
		CPUPer1k: CPU{
			Service:  pick(func(m Measure) float64 { return m.CPUPer1k.Service }),
			Postgres: pick(func(m Measure) float64 { return m.CPUPer1k.Postgres }),
			Client:   pick(func(m Measure) float64 { return m.CPUPer1k.Client }),
			Total:    pick(func(m Measure) float64 { return m.CPUPer1k.Total }),
		},
		Cores: CPU{
			Service:  pick(func(m Measure) float64 { return m.Cores.Service }),
			Postgres: pick(func(m Measure) float64 { return m.Cores.Postgres }),
			Client:   pick(func(m Measure) float64 { return m.Cores.Client }),
			Total:    pick(func(m Measure) float64 { return m.Cores.Total }),
		},
	}
	for _, m := range ms {
		s.Errors += m.Errors
	}
	return s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// startBank runs the Bank command on dsn with mTLS and DB_MAX_CONNS = maxConns, on a free port.
func (b *bench) startBank(ctx context.Context, dsn, name string, maxConns int) (*proc.Process, string, error) {
	port, err := pglocal.FreePort()
	if err != nil {
		return nil, "", err
	}
	return b.startBankAddr(ctx, dsn, name, "127.0.0.1:"+strconv.Itoa(port), maxConns)
}

func (b *bench) startBankAddr(ctx context.Context, dsn, name, addr string, maxConns int) (*proc.Process, string,
	error) {
	env := []string{"DATABASE_URL=" + dsn, "HTTP_ADDR=" + addr, "TLS_CERT_FILE=" + b.certs.ServerCert,
		"TLS_KEY_FILE=" + b.certs.ServerKey, "TLS_CLIENT_CA_FILE=" + b.certs.CA, "ALLOWED_CALLERS=" + b.certs.ClientID,
		"DB_MAX_CONNS=" + strconv.Itoa(maxConns), "LOG_LEVEL=warn", "SHUTDOWN_DRAIN_DELAY=0s"}
	env = append(env, b.cfg.BankEnv...)
	url := "https://" + addr
	s, err := startService(ctx, "bank", filepath.Join(b.bin, "bank"), env, filepath.Join(b.dir, name+".log"),
		b.tlsCli, url+"/readyz")
	if err != nil {
		return nil, "", err
	}
	return s, url, nil
}

// bankJobs returns the load generator's requests, one function per worker: each sends one new transaction
// (unique id, random account and amount), which must come back 201 approved.
func (b *bench) bankJobs(url string) (jobs []func(context.Context) error, closeAll func()) {
	next := func() txBody {
		return txBody{ID: newUUID(), StoreID: "bench", AccountID: strconv.Itoa(rand.IntN(b.cfg.Accounts) + 1),
			Amount: rand.Int64N(100) + 1, Currency: "EUR", CreatedAt: time.Now().UTC()}
	}
	var lean []*leanClient
	for range b.cfg.Clients {
		if b.cfg.Loadgen == "nethttp" {
			c := &bankClient{url: url + "/v1/transactions", hc: b.tlsCli}
			jobs = append(jobs, func(ctx context.Context) error { return c.submit(ctx, next()) })
			continue
		}
		c := newLeanClient(url, b.certs)
		lean = append(lean, c)
		jobs = append(jobs, func(ctx context.Context) error { return c.submit(ctx, next()) })
	}
	return jobs, func() {
		for _, c := range lean {
			c.close()
		}
	}
}

// bankBatchJobs returns the batched load generator's requests, one function per worker (-batch-clients):
// each sends a batch of -batch new transactions, which must all come back 201 approved.
func (b *bench) bankBatchJobs(url string) (jobs []func(context.Context) error, closeAll func()) {
	var lean []*leanClient
	for range b.cfg.BatchClients {
		c := newLeanClient(url, b.certs)
		lean = append(lean, c)
		batch := make([]txBody, b.cfg.BatchSize)
		jobs = append(jobs, func(ctx context.Context) error {
			for i := range batch {
				batch[i] = txBody{ID: newUUID(), StoreID: "bench", AccountID: strconv.Itoa(rand.IntN(b.cfg.Accounts) + 1),
					Amount: rand.Int64N(100) + 1, Currency: "EUR", CreatedAt: time.Now().UTC()}
			}
			return c.submitBatch(ctx, batch)
		})
	}
	return jobs, func() {
		for _, c := range lean {
			c.close()
		}
	}
}

func (b *bench) ingest(ctx context.Context, topo string) (*IngestResult, error) {
	b.logf("ingestion on %s: starting PostgreSQL", topologyLabel(topo))
	cl, err := startCluster(ctx, b.dir, topo, b.cfg.Fsync, b.cfg.PgStats)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	const db = "bank"
	dsn, err := cl.createBankDB(ctx, filepath.Join(b.bin, "bank"), db, b.cfg.Accounts)
	if err != nil {
		return nil, err
	}
	bank, url, err := b.startBank(ctx, dsn, "bank-"+topo, b.cfg.Clients)
	if err != nil {
		return nil, err
	}
	defer stop(bank)
	res := &IngestResult{Topology: topo, Label: topologyLabel(topo)}
	for round := 1; round <= b.cfg.Rounds; round++ {
		var best map[string]Measure
		for attempt := 0; attempt <= b.cfg.Retries; attempt++ {
			got, err := b.ingestRound(ctx, cl, db, round, url, bank)
			if err != nil {
				return nil, err
			}
			if best == nil || noise(got) < noise(best) {
				best = got
			}
			if noise(got) <= b.cfg.MaxForeign {
				break
			}
			if attempt < b.cfg.Retries {
				b.logf("  round %d: other processes used %.2f cores (> %.2f): running it again", round, noise(got),
					b.cfg.MaxForeign)
			}
		}
		if noise(best) > b.cfg.MaxForeign {
			res.NoisyRounds++
		}
		for _, who := range contenders(b.cfg) {
			res.Rounds = append(res.Rounds, best[who])
		}
		res.RoundRatios = append(res.RoundRatios, best["bank"].TPS/best["pgbench"].TPS)
		if b.cfg.BatchSize > 0 {
			res.BatchRoundRatios = append(res.BatchRoundRatios, best["bank-batch"].TPS/best["pgbench-batch"].TPS)
			res.BatchOverPgbenchRound = append(res.BatchOverPgbenchRound, best["bank-batch"].TPS/best["pgbench"].TPS)
		}
	}
	by := map[string][]Measure{}
	for _, m := range res.Rounds {
		by[m.Contender] = append(by[m.Contender], m)
	}
	res.Pgbench, res.Bank = summary(by["pgbench"]), summary(by["bank"])
	res.Ratio = median(res.RoundRatios)
	if res.Bank.CPUPer1k.Total > 0 {
		res.CPURatio = res.Pgbench.CPUPer1k.Total / res.Bank.CPUPer1k.Total
	}
	if b.cfg.BatchSize > 0 {
		pb, bb := summary(by["pgbench-batch"]), summary(by["bank-batch"])
		res.PgbenchBatch, res.BankBatch = &pb, &bb
		res.BatchRatio, res.BatchOverPgbench = median(res.BatchRoundRatios), median(res.BatchOverPgbenchRound)
		if bb.CPUPer1k.Total > 0 {
			res.BatchCPURatio = pb.CPUPer1k.Total / bb.CPUPer1k.Total
		}
	}
	if res.BankRSSMiB, err = peakRSS(bank.PID()); err != nil {
		return nil, err
	}
	b.logf("  bank/pgbench = %.2f (rounds %v; CPU ratio %.2f), bank peak RSS %.1f MiB", res.Ratio,
		fmtRatios(res.RoundRatios), res.CPURatio, res.BankRSSMiB)
	if b.cfg.BatchSize > 0 {
		b.logf("  batches of %d: bank-batch/pgbench-batch = %.2f (rounds %v; CPU ratio %.2f), bank-batch/pgbench = %.2f",
			b.cfg.BatchSize, res.BatchRatio, fmtRatios(res.BatchRoundRatios), res.BatchCPURatio, res.BatchOverPgbench)
	}
	return res, nil
}

// contenders of the ingestion rounds, in the order odd rounds run them (even rounds reverse it).
func contenders(cfg Config) []string {
	if cfg.BatchSize == 0 {
		return []string{"pgbench", "bank"}
	}
	return []string{"pgbench", "bank", "bank-batch", "pgbench-batch"}
}

// noise is the most CPU other processes used during a round's windows, in cores.
func noise(round map[string]Measure) float64 {
	n := 0.0
	for _, m := range round {
		n = max(n, m.ForeignCores)
	}
	return n
}

// ingestRound measures each contender once, in the round's order (odd rounds as contenders lists them,
// even rounds reversed: ABBA), each after the database settled.
func (b *bench) ingestRound(ctx context.Context, cl *cluster, db string, round int, url string,
	bank *proc.Process) (map[string]Measure, error) {
	order := contenders(b.cfg)
	if round%2 == 0 {
		slices.Reverse(order)
	}
	got := map[string]Measure{}
	for _, who := range order {
		if err := cl.settle(ctx, db); err != nil {
			return nil, err
		}
		var m Measure
		var err error
		switch who {
		case "pgbench":
			m, err = b.measurePgbench(ctx, cl, db, pgbenchScript(b.bankSQL, b.cfg.Accounts), b.cfg.Clients, 1)
		case "pgbench-batch":
			m, err = b.measurePgbench(ctx, cl, db, pgbenchBatchScript(b.batchSQL, b.cfg.Accounts, b.cfg.BatchSize),
				b.cfg.BatchClients, b.cfg.BatchSize)
		case "bank":
			jobs, closeJobs := b.bankJobs(url)
			m, err = b.measureGo(ctx, meter{clusters: []*cluster{cl}, services: []int{bank.PID()}}, jobs, 1)
			closeJobs()
		case "bank-batch":
			jobs, closeJobs := b.bankBatchJobs(url)
			m, err = b.measureGo(ctx, meter{clusters: []*cluster{cl}, services: []int{bank.PID()}}, jobs,
				b.cfg.BatchSize)
			closeJobs()
		}
		if err != nil {
			return nil, fmt.Errorf("round %d, %s: %w", round, who, err)
		}
		m.Contender, m.Round = who, round
		got[who] = m
		b.logf("  round %d %-13s %8.0f tx/s  p50 %6.2f ms  p99 %6.2f ms  cores: svc %.2f pg %.2f client %.2f "+
			"other %.2f  errors %d", round, who, m.TPS, m.Latency.P50, m.Latency.P99, m.Cores.Service,
			m.Cores.Postgres, m.Cores.Client, m.ForeignCores, m.Errors)
	}
	return got, nil
}

func fmtRatios(v []float64) []string {
	out := make([]string, len(v))
	for i, r := range v {
		out[i] = strconv.FormatFloat(r, 'f', 2, 64)
	}
	return out
}

// measurePgbench runs script with clients for warmup + duration and measures the window; each statement
// of the script is per transactions (a batch statement counts its transactions).
func (b *bench) measurePgbench(ctx context.Context, cl *cluster, db, script string, clients, per int) (Measure, error) {
	total := b.cfg.Warmup + b.cfg.Duration + 500*time.Millisecond
	run, err := startPgbench(ctx, b.dir, script, cl.primary.Port(), db, clients, min(b.cfg.PgbenchThreads, clients),
		total, b.cfg.PgbenchArgs)
	if err != nil {
		return Measure{}, err
	}
	m := meter{clusters: []*cluster{cl}, clientPID: run.p.PID()}
	time.Sleep(b.cfg.Warmup)
	r0 := m.read()
	time.Sleep(b.cfg.Duration)
	r1 := m.read()
	if err := run.wait(); err != nil {
		return Measure{}, err
	}
	samples, err := run.samples(r0.at, r1.at)
	if err != nil {
		return Measure{}, err
	}
	var out Measure
	out.fill(r0, r1, len(samples)*per)
	out.Latency = summarise(latencies(samples))
	if per > 1 {
		out.Batch = per
	}
	return out, nil
}

// measureGo runs the closed-loop Go load generator (one worker per job) for warmup + duration and measures
// the window; each job call is per transactions (a batch request counts its transactions), latency is per
// call.
func (b *bench) measureGo(ctx context.Context, m meter, jobs []func(context.Context) error, per int) (Measure,
	error) {
	start := time.Now()
	until := start.Add(b.cfg.Warmup + b.cfg.Duration + 200*time.Millisecond)
	type result struct {
		obs  []obs
		errs *errorTally
	}
	done := make(chan result, 1)
	go func() {
		o, e := closedLoop(ctx, until, jobs)
		done <- result{o, e}
	}()
	time.Sleep(time.Until(start.Add(b.cfg.Warmup)))
	r0 := m.read()
	time.Sleep(b.cfg.Duration)
	r1 := m.read()
	res := <-done
	in := window(res.obs, r0.at, r1.at)
	var out Measure
	out.fill(r0, r1, len(in)*per)
	out.Latency = summarise(latencies(in))
	out.Errors, out.ErrorSamples = res.errs.n, res.errs.first
	if per > 1 {
		out.Batch = per
	}
	if len(in) == 0 {
		return out, fmt.Errorf("no request succeeded (%d errors: %v)", res.errs.n, res.errs.first)
	}
	return out, nil
}
