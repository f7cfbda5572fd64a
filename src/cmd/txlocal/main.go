// Command txlocal is `make run`: it starts a throwaway PostgreSQL (databases bank and store), generates a CA
// and certificates, runs the Bank (HTTPS, client certificates required) and the Store (generator on, relay
// speaking mTLS to the Bank) as processes, prints a progress line every second, and on Ctrl-C stops
// everything gracefully — Store first, so it stops sending, then the Bank, then PostgreSQL — and prints the
// txaudit report. Its exit status is the audit's.
//
// The bank, store and txaudit binaries are expected next to txlocal (make run builds them into bin/).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
	"github.com/txmesh/txmesh/src/localenv/pki"
	"github.com/txmesh/txmesh/src/localenv/proc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "txlocal:", err)
		if code == 0 {
			code = 2
		}
	}
	stop()
	os.Exit(code)
}

type options struct {
	binDir, dataDir     string
	bankAddr, storeAddr string
	interval, duration  time.Duration
	accounts            int
	balance             int64
	keep                bool
}

func parse(args []string) (options, error) {
	var o options
	exe, _ := os.Executable()
	fs := flag.NewFlagSet("txlocal", flag.ContinueOnError)
	fs.StringVar(&o.binDir, "bin", filepath.Dir(exe), "directory holding the bank, store and txaudit binaries")
	fs.StringVar(&o.dataDir, "dir", "", "working directory for PostgreSQL, certificates and logs (default: a new temporary one)")
	fs.StringVar(&o.bankAddr, "bank-addr", "127.0.0.1:8443", "Bank HTTPS address (a free port if taken)")
	fs.StringVar(&o.storeAddr, "store-addr", "127.0.0.1:8080", "Store HTTP address (a free port if taken)")
	fs.DurationVar(&o.interval, "interval", 100*time.Millisecond, "generator interval (0 switches it off)")
	fs.DurationVar(&o.duration, "duration", 0, "stop by itself after this long (0: run until Ctrl-C)")
	fs.IntVar(&o.accounts, "accounts", 100, "accounts to seed (ACC-000001…)")
	fs.Int64Var(&o.balance, "balance", 100_000_00, "initial balance of each account, minor units")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory (data, logs, certificates) on exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

// freeAddr returns addr with a concrete port: addr itself when it can be bound, otherwise (or for port 0) a
// free port on the same host.
func freeAddr(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, splitErr := net.SplitHostPort(addr)
		if splitErr != nil {
			return "", splitErr
		}
		if l, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			return "", err
		}
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func run(ctx context.Context, args []string, out io.Writer) (int, error) {
	o, err := parse(args)
	if err != nil {
		return 2, err
	}
	for _, b := range []string{"bank", "store", "txaudit"} {
		if _, err := os.Stat(filepath.Join(o.binDir, b)); err != nil {
			return 2, fmt.Errorf("%s binary not found in %s (run `make run`, which builds it): %w", b, o.binDir, err)
		}
	}
	if o.dataDir == "" {
		if o.dataDir, err = proc.TempDir("txmesh-run-"); err != nil {
			return 2, err
		}
		if o.keep {
			_ = proc.Keep(o.dataDir)
		} else {
			defer os.RemoveAll(o.dataDir)
		}
	}
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		return 2, err
	}
	if o.bankAddr, err = freeAddr(o.bankAddr); err != nil {
		return 2, err
	}
	if o.storeAddr, err = freeAddr(o.storeAddr); err != nil {
		return 2, err
	}

	fmt.Fprintln(out, "txmesh: starting PostgreSQL…")
	// pglocal picks its own directory: when we are root, the server runs as the postgres user, which must
	// be able to reach it.
	pg, err := pglocal.Start(ctx, pglocal.Options{
		Settings: map[string]string{"fsync": "on", "full_page_writes": "on"}})
	if err != nil {
		return 2, err
	}
	defer pg.Close()
	for _, db := range []string{"bank", "store"} {
		if err := pg.CreateDatabase(ctx, db); err != nil {
			return 2, err
		}
	}
	certDir := filepath.Join(o.dataDir, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return 2, err
	}
	certs, err := pki.Write(certDir, "store", "127.0.0.1", "localhost")
	if err != nil {
		return 2, err
	}
	common := []string{"LOG_LEVEL=info", "SHUTDOWN_DRAIN_DELAY=1s", "SHUTDOWN_TIMEOUT=10s"}
	bankEnv := append([]string{"DATABASE_URL=" + pg.DSN("bank"), "HTTP_ADDR=" + o.bankAddr,
		"TLS_CERT_FILE=" + certs.ServerCert, "TLS_KEY_FILE=" + certs.ServerKey, "TLS_CLIENT_CA_FILE=" + certs.CA,
		"ALLOWED_CALLERS=" + certs.ClientID}, common...)
	if _, err := proc.Run(ctx, proc.Spec{Name: "bank seed", Path: filepath.Join(o.binDir, "bank"), Env: bankEnv,
		Args: []string{"seed", "--accounts", strconv.Itoa(o.accounts), "--balance", strconv.FormatInt(o.balance, 10),
			"--currency", "EUR"}}); err != nil {
		return 2, err
	}
	// Own process groups: Ctrl-C reaches txlocal only, which stops the services in order.
	bank, err := proc.Start(proc.Spec{Name: "bank", Path: filepath.Join(o.binDir, "bank"), Args: []string{"serve"},
		Env: bankEnv, Log: filepath.Join(o.dataDir, "bank.log")})
	if err != nil {
		return 2, err
	}
	defer bank.Kill()
	bankURL := "https://" + o.bankAddr
	storeEnv := append([]string{"DATABASE_URL=" + pg.DSN("store"), "HTTP_ADDR=" + o.storeAddr,
		"BANK_URL=" + bankURL, "BANK_CA_FILE=" + certs.CA, "BANK_CLIENT_CERT_FILE=" + certs.ClientCert,
		"BANK_CLIENT_KEY_FILE=" + certs.ClientKey, "STORE_ID=store-local",
		"GENERATOR_INTERVAL=" + o.interval.String(), "GENERATOR_ACCOUNTS=" + strconv.Itoa(o.accounts)}, common...)
	store, err := proc.Start(proc.Spec{Name: "store", Path: filepath.Join(o.binDir, "store"),
		Args: []string{"serve"}, Env: storeEnv, Log: filepath.Join(o.dataDir, "store.log")})
	if err != nil {
		return 2, err
	}
	defer store.Kill()

	tlsCfg, err := bankclient.TLSConfig(certs.CA, certs.ClientCert, certs.ClientKey)
	if err != nil {
		return 2, err
	}
	bankClient := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	plain := &http.Client{Timeout: 2 * time.Second}
	storeURL := "http://" + o.storeAddr
	if err := bank.WaitReady(ctx, 60*time.Second, proc.HTTPReady(bankClient, bankURL+"/readyz")); err != nil {
		return 2, err
	}
	if err := store.WaitReady(ctx, 60*time.Second, proc.HTTPReady(plain, storeURL+"/readyz")); err != nil {
		return 2, err
	}
	printBanner(out, o, certs, bankURL, storeURL)

	var stopAfter <-chan time.Time
	if o.duration > 0 {
		stopAfter = time.After(o.duration)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	started := time.Now()
loop:
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\ntxmesh: Ctrl-C — stopping the Store, then the Bank…")
			break loop
		case <-stopAfter:
			fmt.Fprintln(out, "txmesh: duration reached — stopping the Store, then the Bank…")
			break loop
		case <-bank.Done():
			return 2, fmt.Errorf("bank exited unexpectedly (%w); see %s", bank.Err(), bank.Log())
		case <-store.Done():
			return 2, fmt.Errorf("store exited unexpectedly (%w); see %s", store.Err(), store.Log())
		case <-tick.C:
			fmt.Fprintln(out, progress(plain, storeURL, time.Since(started)))
		}
	}
	// The Store stops its generator and relay first; with the Bank still up, the final audit below waits
	// for nothing that cannot drain: what is pending stays pending, durably, in store-db.
	if err := store.Stop(30 * time.Second); err != nil {
		return 2, fmt.Errorf("store: %w", err)
	}
	if err := bank.Stop(30 * time.Second); err != nil {
		return 2, fmt.Errorf("bank: %w", err)
	}
	fmt.Fprintln(out, "txmesh: services stopped cleanly; auditing store-db against bank-db…")
	_, err = proc.Run(context.WithoutCancel(ctx), proc.Spec{Name: "txaudit", Path: filepath.Join(o.binDir, "txaudit"),
		Args: []string{"--store-dsn", pg.DSN("store"), "--bank-dsn", pg.DSN("bank")}, Stdout: out, Stderr: out})
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 2, err
	}
	if o.keep {
		fmt.Fprintln(out, "txmesh: working directory kept:", o.dataDir)
	}
	return 0, nil
}

// outbox is the Store's GET /v1/outbox answer.
type outbox struct {
	Backlog   int64   `json:"backlog"`
	OldestAge float64 `json:"oldest_pending_age_seconds"`
	Breaker   string  `json:"breaker"`
	Purchases struct {
		Pending, Approved, Declined, Rejected int64
	} `json:"purchases"`
}

func progress(c *http.Client, storeURL string, elapsed time.Duration) string {
	resp, err := c.Get(storeURL + "/v1/outbox")
	if err != nil {
		return fmt.Sprintf("[%6s] store unreachable: %v", elapsed.Truncate(time.Second), err)
	}
	defer resp.Body.Close()
	var o outbox
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("[%6s] store answered %d", elapsed.Truncate(time.Second), resp.StatusCode)
	}
	p := o.Purchases
	created := p.Pending + p.Approved + p.Declined + p.Rejected
	return fmt.Sprintf("[%6s] created %d  delivered %d (approved %d, declined %d)  rejected %d  backlog %d "+
		"(oldest %.1fs)  breaker %s", elapsed.Truncate(time.Second), created, p.Approved+p.Declined, p.Approved,
		p.Declined, p.Rejected, o.Backlog, o.OldestAge, o.Breaker)
}

func printBanner(out io.Writer, o options, certs pki.Files, bankURL, storeURL string) {
	fmt.Fprintf(out, `
txmesh is running (PostgreSQL, Bank, Store; mTLS between Store and Bank)
  Bank   %s   (allowed caller: the client certificate %s)   log: %s
  Store  %s    (generator every %s)               log: %s

Try:
  curl -s -X POST %s/v1/purchases -H 'Content-Type: application/json' \
       -d '{"account_id":"ACC-000001","amount":1250,"currency":"EUR"}'
  curl -s %s/v1/outbox
  curl -s --cacert %s --cert %s --key %s %s/v1/accounts/ACC-000001

Ctrl-C stops everything and prints the audit.
`, bankURL, certs.ClientID, filepath.Join(o.dataDir, "bank.log"), storeURL, o.interval, filepath.Join(o.dataDir, "store.log"),
		storeURL, storeURL, certs.CA, certs.ClientCert, certs.ClientKey, bankURL)
}
