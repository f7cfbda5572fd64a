// Package lab is the HA lab: it proves, with processes, real faults and an audit, that no transaction is
// lost when a Bank process, a Store process, the network or the Bank's database primary fails, and that the
// contract holds at its edges: only the Bank's own rejection ends a purchase, and the Store never answers
// anything false.
//
// One run starts on loopback: bank-db (a PostgreSQL primary and a streaming standby, synchronous or — the
// negative control — asynchronous), store-db (a primary and a synchronous standby), two Bank processes behind
// a TCP balancer (the Service), two Store processes (generator on) plus extra load through the Store API, a
// sidecar per Store (plain HTTP in, mTLS out, mesh faults), and toxiproxy proxies sidecars→Bank,
// Bank→bank-db (the `-rw` address) and standby→primary (replication). A seeded schedule then injects kill -9
// of Bank and Store processes and of store-db, latency/reset_peer/timeout/bandwidth toxics, a Bank outage
// long enough to open the Stores' circuit breakers, a failover (replication cut, kill -9 of the primary,
// promotion of the standby, the rw proxy re-pointed, the old primary re-joined with pg_rewind), mesh faults
// in the sidecars (403 RBAC, an empty 404, a 403 after the Bank applied, garbled bodies), store-db's
// standby gone, and stalled clients. Then faults stop, the backlog drains, the dead letters are judged and
// redriven (`store redrive --all`), txaudit judges, and Run returns the measurements (see Result.Table).
//
// The PostgreSQL servers (initdb, base backup, kill -9, promotion, pg_rewind) come from src/localenv/pglocal
// and the certificates from src/localenv/pki, the packages the tests, `make run` and the benchmark use too.
package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
	"github.com/txmesh/txmesh/src/localenv/pki"
	"github.com/txmesh/txmesh/src/localenv/proc"
)

// Config is one run.
type Config struct {
	BinDir   string        // holds the bank, store and txaudit binaries
	WorkDir  string        // data, logs, certificates; a new temporary directory when empty
	Keep     bool          // keep WorkDir afterwards
	Mode     Replication   // Sync, or Async for the negative control
	Duration time.Duration // fault phase (at least MinDuration unless FailoverOnly)
	Seed     uint64
	// Rate is the extra load: purchases per second through the Store API, spread over both Stores.
	Rate float64
	// GeneratorInterval is each Store's generator period.
	GeneratorInterval time.Duration
	Accounts          int
	Cut               time.Duration // replication stream cut before the primary is killed
	Outage            time.Duration // Bank outage (Store→Bank refused)
	FailoverOnly      bool          // the failover and nothing else (a quick negative control)
	// StoreBin is the store binary; BinDir's when empty. NegativeRelay says it is the negative control's
	// (built with -tags txmesh_negative_control: the failure policy before issue 19), which the judge must
	// catch dead-lettering purchases the Bank never rejected.
	StoreBin      string
	NegativeRelay bool
	DrainTimeout  time.Duration
	Progress      time.Duration // period of the progress line
	Out           io.Writer
}

// MinDuration is the shortest fault phase that holds a failover, a Bank outage and a few other faults.
const MinDuration = 45 * time.Second

func (c *Config) defaults() error {
	if c.Mode == "" {
		c.Mode = Sync
	}
	if c.Mode != Sync && c.Mode != Async {
		return fmt.Errorf("mode %q: sync or async", c.Mode)
	}
	if c.Duration == 0 {
		c.Duration = 2 * time.Minute
	}
	if c.Duration < MinDuration && !c.FailoverOnly {
		return fmt.Errorf("duration %s: at least %s", c.Duration, MinDuration)
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Rate < 0 {
		return errors.New("rate must be >= 0")
	}
	if c.GeneratorInterval == 0 {
		c.GeneratorInterval = 100 * time.Millisecond
	}
	if c.Accounts == 0 {
		c.Accounts = 100
	}
	if c.Cut == 0 {
		c.Cut = 4 * time.Second
	}
	if c.Outage == 0 {
		c.Outage = 12 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 3 * time.Minute
	}
	if c.Progress == 0 {
		c.Progress = 5 * time.Second
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.StoreBin == "" {
		c.StoreBin = filepath.Join(c.BinDir, "store")
	}
	if _, err := os.Stat(filepath.Join(c.BinDir, "bank")); err != nil {
		return fmt.Errorf("bank binary not found in %s: %w", c.BinDir, err)
	}
	if _, err := os.Stat(c.StoreBin); err != nil {
		hint := ""
		if c.NegativeRelay {
			hint = " (build it: go build -tags txmesh_negative_control -o bin/negative/ ./src/cmd/store)"
		}
		return fmt.Errorf("store binary %s not found%s: %w", c.StoreBin, hint, err)
	}
	return nil
}

// name is the run's name in logs and directories: its replication mode, or negative-relay.
func (c *Config) name() string {
	if c.NegativeRelay {
		return "negative-relay"
	}
	return string(c.Mode)
}

// run is one lab run in progress.
type run struct {
	cfg     Config
	dir     string
	started time.Time // start of the fault phase
	logMu   sync.Mutex

	ps            *proxies
	db            *cluster
	storeDB       *pglocal.Server
	storeStandby  *pglocal.Server // store-db's synchronous standby
	toBank        *netProxy       // sidecars → the Bank's balancer
	sidecars      map[string]*sidecar
	refusals      *refusals
	lb            *balancer
	banks, stores []*proc.Process
	bankAddrs     []string
	storeURLs     []string
	certs         pki.Files
	bankTLS       *tls.Config
	http          *http.Client
	res           *Result
	exec          *executor
	mon           *monitor
	load          *loader
	seedBalance   int64
	cleanup       []func()
}

func (r *run) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	el := 0.0
	if !r.started.IsZero() {
		el = time.Since(r.started).Seconds()
	}
	fmt.Fprintf(r.cfg.Out, "[%s %6.1fs] %s\n", r.cfg.name(), el, fmt.Sprintf(format, args...))
}

// Run performs one lab run. The error is for a run that could not be carried out (set-up, a process that
// would not start, a backlog that did not drain); a run that lost transactions returns a Result saying so.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, res: newResult(cfg), seedBalance: 1_000_000_00}
	dir := cfg.WorkDir
	if dir == "" {
		var err error
		if dir, err = proc.TempDir("txmesh-lab-" + cfg.name() + "-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// PostgreSQL may run as another user (when we are root): it must reach its directories below this one.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	r.dir = dir
	var failed bool
	defer func() {
		for i := len(r.cleanup) - 1; i >= 0; i-- {
			r.cleanup[i]()
		}
		if cfg.Keep || failed {
			_ = proc.Keep(dir)
			r.logf("data and logs kept in %s", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
	}()
	r.res.WorkDir = dir
	err := r.phases(ctx)
	failed = err != nil || !r.res.Passed()
	return r.res, err
}

func (r *run) phases(ctx context.Context) error {
	t0 := time.Now()
	if err := r.setUp(ctx); err != nil {
		return fmt.Errorf("set-up: %w", err)
	}
	r.res.SetUp = time.Since(t0)
	if err := r.faultPhase(ctx); err != nil {
		return err
	}
	if err := r.drain(ctx); err != nil {
		return err
	}
	return r.judge(ctx)
}

func (r *run) setUp(ctx context.Context) error {
	r.logf("setting up in %s (bank-db %s replication, seed %d, store %s)", r.dir, r.cfg.Mode, r.cfg.Seed,
		r.cfg.StoreBin)
	var err error
	certDir := filepath.Join(r.dir, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	// The Banks serve for 127.0.0.1 and require client certificates signed by the CA; the Stores present one.
	if r.certs, err = pki.Write(certDir, "store", "127.0.0.1", "localhost"); err != nil {
		return err
	}
	if r.bankTLS, err = clientTLS(r.certs); err != nil {
		return err
	}
	r.http = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	r.ps = newProxies()
	if r.db, err = startCluster(ctx, filepath.Join(r.dir, "bank-db"), r.cfg.Mode, r.ps); err != nil {
		return err
	}
	r.cleanup = append(r.cleanup, r.db.close)
	if r.storeDB, r.storeStandby, err = startStoreDB(ctx, r.dir); err != nil {
		return err
	}
	r.cleanup = append(r.cleanup, func() {
		stopPG(r.storeDB)
		stopPG(r.storeStandby)
	})
	bankBin := filepath.Join(r.cfg.BinDir, "bank")
	if _, err := proc.Run(ctx, proc.Spec{Name: "bank seed", Path: bankBin, Args: []string{"seed", "--accounts",
		strconv.Itoa(r.cfg.Accounts), "--balance", strconv.FormatInt(r.seedBalance, 10), "--currency", "EUR"},
		Env: []string{"DATABASE_URL=" + r.db.dsn(), "LOG_LEVEL=warn"}}); err != nil {
		return err
	}

	// Two Banks behind the balancer, the toxiproxy proxy in front of it, a sidecar per Store in front of that.
	for i := 1; i <= 2; i++ {
		port, err := pglocal.FreePort()
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		r.bankAddrs = append(r.bankAddrs, addr)
		name := fmt.Sprintf("bank-%d", i)
		r.banks = append(r.banks, proc.New(proc.Spec{Name: name, Path: bankBin, Args: []string{"serve"},
			Log: filepath.Join(r.dir, name+".log"),
			Env: []string{"DATABASE_URL=" + r.db.dsn(), "HTTP_ADDR=" + addr, "TLS_CERT_FILE=" + r.certs.ServerCert,
				"TLS_KEY_FILE=" + r.certs.ServerKey, "TLS_CLIENT_CA_FILE=" + r.certs.CA,
				"ALLOWED_CALLERS=" + r.certs.ClientID, "LOG_LEVEL=info",
				"SHUTDOWN_DRAIN_DELAY=200ms", "SHUTDOWN_TIMEOUT=10s", "DB_MAX_CONNS=10"}}))
	}
	if r.lb, err = newBalancer(r.bankAddrs); err != nil {
		return err
	}
	r.cleanup = append(r.cleanup, r.lb.close)
	if r.toBank, err = r.ps.add("store-bank", r.lb.addr()); err != nil {
		return err
	}
	r.cleanup = append(r.cleanup, r.toBank.close)
	r.sidecars, r.refusals = map[string]*sidecar{}, newRefusals()
	for i := 1; i <= 2; i++ {
		port, err := pglocal.FreePort()
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		name := fmt.Sprintf("store-%d", i)
		// The Store talks plain HTTP to its sidecar, which holds the mTLS identity (as Envoy does in the mesh).
		sc, err := startSidecar(name, "https://"+r.toBank.addr, r.bankTLS, r.refusals)
		if err != nil {
			return err
		}
		r.sidecars[name] = sc
		r.cleanup = append(r.cleanup, sc.close)
		r.storeURLs = append(r.storeURLs, "http://"+addr)
		r.stores = append(r.stores, proc.New(proc.Spec{Name: name, Path: r.cfg.StoreBin,
			Args: []string{"serve"}, Log: filepath.Join(r.dir, name+".log"),
			Env: []string{"DATABASE_URL=" + r.storeDB.DSN("store"), "HTTP_ADDR=" + addr, "BANK_URL=" + sc.url,
				"STORE_ID=" + name, "GENERATOR_INTERVAL=" + r.cfg.GeneratorInterval.String(),
				"GENERATOR_ACCOUNTS=" + strconv.Itoa(r.cfg.Accounts), "BANK_TIMEOUT=2s", "LOG_LEVEL=info",
				"SHUTDOWN_DRAIN_DELAY=200ms", "SHUTDOWN_TIMEOUT=10s",
				// Shorter than production so that a run stays short; the semantics are the same.
				"BREAKER_OPEN_TIMEOUT=5s", "RELAY_MAX_BACKOFF=5s", "RELAY_LEASE=10s",
				"HTTP_REQUEST_TIMEOUT=8s", "DB_RIDE_THROUGH=5s"}}))
	}
	r.cleanup = append(r.cleanup, func() {
		for _, p := range r.services() {
			p.Kill()
		}
	})
	if err := r.startAll(ctx, r.banks); err != nil {
		return err
	}
	return r.startAll(ctx, r.stores)
}

// startAll starts the processes (those that do not run already) and waits until each is ready.
func (r *run) startAll(ctx context.Context, ps []*proc.Process) error {
	for _, p := range ps {
		if err := p.Start(); err != nil {
			return err
		}
	}
	for _, p := range ps {
		if err := r.waitReady(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func clientTLS(c pki.Files) (*tls.Config, error) {
	ca, err := os.ReadFile(c.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// readyURL is the process's readiness endpoint and the client that reaches it.
func (r *run) readyURL(p *proc.Process) (string, *http.Client) {
	for i, b := range r.banks {
		if b == p {
			return "https://" + r.bankAddrs[i] + "/readyz", &http.Client{Timeout: 2 * time.Second,
				Transport: &http.Transport{TLSClientConfig: r.bankTLS}}
		}
	}
	for i, s := range r.stores {
		if s == p {
			return r.storeURLs[i] + "/readyz", r.http
		}
	}
	return "", nil
}

func (r *run) waitReady(ctx context.Context, p *proc.Process) error {
	url, client := r.readyURL(p)
	return p.WaitReady(ctx, 60*time.Second, proc.HTTPReady(client, url))
}

// services are the Banks and the Stores.
func (r *run) services() []*proc.Process {
	return append(append([]*proc.Process{}, r.banks...), r.stores...)
}

// service is the Bank or Store process called name.
func (r *run) service(name string) *proc.Process {
	for _, p := range r.services() {
		if p.Name() == name {
			return p
		}
	}
	return nil
}
