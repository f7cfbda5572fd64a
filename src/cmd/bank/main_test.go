package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
	"github.com/txmesh/txmesh/src/localenv/pki"
)

// Integration tests of the bank command: a real PostgreSQL, the real program, real HTTPS with client
// certificates (mTLS as outside a mesh).

func TestMain(m *testing.M) { pgtest.Main(m) }

type bankUnderTest struct {
	url    string
	client *http.Client
	dsn    string
	ca     string    // the CA of the server and client certificates
	certs  pki.Files // the CA, the Bank's certificate and the allowed client's
}

// envOf turns key/value pairs into a getenv function.
func envOf(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

// tlsEnv generates certificates and returns the serving variables — the Store's certificate's ID the one
// allowed caller — and a client trusting the Bank with that certificate.
func tlsEnv(t *testing.T) (map[string]string, *http.Client) {
	t.Helper()
	env, client, _ := certEnv(t)
	return env, client
}

// certEnv is tlsEnv, with the certificate files.
func certEnv(t *testing.T) (map[string]string, *http.Client, pki.Files) {
	t.Helper()
	files, err := pki.Write(t.TempDir(), "store", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := bankclient.TLSConfig(files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"TLS_CERT_FILE": files.ServerCert, "TLS_KEY_FILE": files.ServerKey, "TLS_CLIENT_CA_FILE": files.CA,
		"ALLOWED_CALLERS": files.ClientID,
	}, bankclient.HTTPClient(10*time.Second, 64, tlsCfg), files
}

// startBank runs the bank program in-process on dsn (seeded with 3 EUR accounts of 1000) until the test ends;
// extra overrides its environment (an empty value unsets: TLS_CERT_FILE "" serves plain HTTP).
func startBank(t *testing.T, dsn string, extra map[string]string) bankUnderTest {
	t.Helper()
	env, client, files := certEnv(t)
	env["DATABASE_URL"] = dsn
	env["HTTP_ADDR"] = "127.0.0.1:0"
	env["SHUTDOWN_DRAIN_DELAY"] = "0s"
	env["LOG_LEVEL"] = "error"
	env["DB_MAX_CONNS"] = "20"
	for k, v := range extra {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := run(ctx, []string{"seed", "--accounts", "3", "--balance", "1000"}, envOf(env), io.Discard, nil); err != nil {
		t.Fatalf("seed: %v", err)
	}
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envOf(env), io.Discard, ready) }()
	select {
	case addr := <-ready:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("bank exited with %v", err)
			}
		})
		scheme := "https://"
		if env["TLS_CERT_FILE"] == "" {
			scheme = "http://"
		}
		return bankUnderTest{url: scheme + addr.String(), client: client, dsn: dsn, ca: env["TLS_CLIENT_CA_FILE"],
			certs: files}
	case err := <-done:
		cancel()
		t.Fatalf("bank did not start: %v", err)
	}
	return bankUnderTest{}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (b bankUnderTest) do(t *testing.T, method, path, contentType string, body []byte) (reply, error) {
	t.Helper()
	req, err := http.NewRequest(method, b.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: data}, err
}

func (b bankUnderTest) post(t *testing.T, v any) (reply, error) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, "POST", "/v1/transactions", "application/json", data)
}

// snapshot is the database state a bad request must not change.
type snapshot struct {
	rows    int64
	balance int64
}

func (b bankUnderTest) snapshot(t *testing.T) snapshot {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s snapshot
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM transactions), (SELECT sum(balance) FROM accounts)`).
		Scan(&s.rows, &s.balance); err != nil {
		t.Fatal(err)
	}
	return s
}

func tx(account string, amount int64) payment.Transaction {
	return payment.Transaction{ID: uuid.New(), StoreID: "store-1", AccountID: account, Amount: amount,
		Currency: "EUR", CreatedAt: time.Now().UTC()}
}

// TestFiftyConcurrentPostsOfOneID: one 201, 49 × 200 with the identical body, one row, one debit.
func TestFiftyConcurrentPostsOfOneID(t *testing.T) {
	b := startBank(t, pgtest.NewDatabase(t), nil)
	one := tx("ACC-000001", 250)
	var wg sync.WaitGroup
	replies := make([]reply, 50)
	for i := range replies {
		wg.Go(func() {
			r, err := b.post(t, one)
			if err != nil {
				t.Error(err)
			}
			replies[i] = r
		})
	}
	wg.Wait()
	created, replayed := 0, 0
	var first []byte
	for _, r := range replies {
		switch r.status {
		case http.StatusCreated:
			created++
		case http.StatusOK:
			replayed++
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if first == nil {
			first = r.body
		} else if !bytes.Equal(first, r.body) {
			t.Fatalf("bodies differ:\n%s\n%s", first, r.body)
		}
	}
	if created != 1 || replayed != 49 {
		t.Fatalf("%d created, %d replayed; want 1 and 49", created, replayed)
	}
	if s := b.snapshot(t); s.rows != 1 || s.balance != 3000-250 {
		t.Fatalf("%d rows and total balance %d; want 1 row and %d", s.rows, s.balance, 3000-250)
	}
}

// TestConcurrentDistinctDebitsOverHTTPS: 30 debits of 100 on a balance of 1000 approve exactly 10.
func TestConcurrentDistinctDebitsOverHTTPS(t *testing.T) {
	b := startBank(t, pgtest.NewDatabase(t), nil)
	var wg sync.WaitGroup
	var approved, declined atomic.Int64
	for range 30 {
		wg.Go(func() {
			r, err := b.post(t, tx("ACC-000002", 100))
			if err != nil || r.status != http.StatusCreated {
				t.Errorf("post: %v %d %s", err, r.status, r.body)
				return
			}
			var res payment.Result
			if err := json.Unmarshal(r.body, &res); err != nil {
				t.Error(err)
				return
			}
			if res.Status == payment.StatusApproved {
				approved.Add(1)
			} else if res.Reason == payment.ReasonInsufficientFunds {
				declined.Add(1)
			}
		})
	}
	wg.Wait()
	r, err := b.do(t, "GET", "/v1/accounts/ACC-000002", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var acc payment.Account
	if err := json.Unmarshal(r.body, &acc); err != nil {
		t.Fatal(err)
	}
	if approved.Load() != 10 || declined.Load() != 20 || acc.Balance != 0 {
		t.Fatalf("approved %d declined %d balance %d; want 10, 20, 0", approved.Load(), declined.Load(), acc.Balance)
	}
}

// TestBadInputChangesNothing sends every bad-input class and checks the answer and that no row moved.
func TestBadInputChangesNothing(t *testing.T) {
	b := startBank(t, pgtest.NewDatabase(t), nil)
	existing := tx("ACC-000001", 10)
	if r, err := b.post(t, existing); err != nil || r.status != http.StatusCreated {
		t.Fatalf("setup: %v %d", err, r.status)
	}
	conflicting := existing
	conflicting.Amount = 999
	conflictBody, _ := json.Marshal(conflicting)
	good, _ := json.Marshal(tx("ACC-000001", 10))
	before := b.snapshot(t)
	cases := []struct {
		name, contentType string
		body              []byte
		status            int
		code, field       string
	}{
		{"malformed JSON", "application/json", []byte(`{"id":"x",`), 400, payment.CodeInvalidRequest, ""},
		{"unknown field", "application/json", bytes.Replace(good, []byte(`{`), []byte(`{"admin":true,`), 1), 400,
			payment.CodeInvalidRequest, "admin"},
		{"fractional amount", "application/json", bytes.Replace(good, []byte(`"amount":10`), []byte(`"amount":10.5`), 1),
			400, payment.CodeInvalidRequest, "amount"},
		{"string amount", "application/json", bytes.Replace(good, []byte(`"amount":10`), []byte(`"amount":"10"`), 1),
			400, payment.CodeInvalidRequest, "amount"},
		{"lower-case currency", "application/json", bytes.Replace(good, []byte(`"EUR"`), []byte(`"eur"`), 1), 400,
			payment.CodeInvalidRequest, "currency"},
		{"bad timestamp", "application/json", bytes.Replace(good, []byte(`"created_at":"`), []byte(`"created_at":"x`), 1),
			400, payment.CodeInvalidRequest, "created_at"},
		{"conflicting replay", "application/json", conflictBody, 409, payment.CodeIdempotencyConflict, ""},
		{"too large", "application/json", append(bytes.Repeat([]byte(" "), payment.MaxBodyBytes), good...), 413,
			payment.CodePayloadTooLarge, ""},
		{"form content type", "application/x-www-form-urlencoded", good, 415, payment.CodeUnsupportedMediaType,
			"Content-Type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := b.do(t, "POST", "/v1/transactions", c.contentType, c.body)
			if err != nil {
				t.Fatal(err)
			}
			var e payment.ErrorBody
			if r.status != c.status || json.Unmarshal(r.body, &e) != nil || e.Error.Code != c.code {
				t.Fatalf("got %d %s; want %d with code %s", r.status, r.body, c.status, c.code)
			}
			if _, ok := e.Error.Fields[c.field]; c.field != "" && !ok {
				t.Fatalf("fields %v lack %q", e.Error.Fields, c.field)
			}
			if after := b.snapshot(t); after != before {
				t.Fatalf("database changed: %+v → %+v", before, after)
			}
		})
	}
}

// TestDatabaseOutage stops PostgreSQL under a running Bank: writes and readiness answer 503 with Retry-After
// (never 500), liveness stays 200; once PostgreSQL is back the same process serves again.
func TestDatabaseOutage(t *testing.T) {
	ctx := context.Background()
	srv, err := pglocal.Start(ctx, pglocal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := srv.CreateDatabase(ctx, "bank"); err != nil {
		t.Fatal(err)
	}
	b := startBank(t, srv.DSN("bank")+"&connect_timeout=1", nil)
	if r, err := b.post(t, tx("ACC-000001", 1)); err != nil || r.status != http.StatusCreated {
		t.Fatalf("before the outage: %v %d", err, r.status)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/transactions", "/readyz", "/v1/accounts/ACC-000001"} {
		var r reply
		if path == "/v1/transactions" {
			r, err = b.post(t, tx("ACC-000001", 1))
		} else {
			r, err = b.do(t, "GET", path, "", nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		var e payment.ErrorBody
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
			json.Unmarshal(r.body, &e) != nil || e.Error.Code != payment.CodeUnavailable {
			t.Fatalf("%s while the database is down: %d %v %s", path, r.status, r.header, r.body)
		}
	}
	if r, err := b.do(t, "GET", "/healthz", "", nil); err != nil || r.status != http.StatusOK {
		t.Fatalf("liveness must not depend on the database: %v %d", err, r.status)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := b.post(t, tx("ACC-000001", 1))
		if err == nil && r.status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bank did not recover after the database came back: %v %d %s", err, r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r, err := b.do(t, "GET", "/readyz", "", nil); err != nil || r.status != http.StatusOK {
		t.Fatalf("readiness after recovery: %v %d", err, r.status)
	}
	if s := b.snapshot(t); s.rows != 2 || s.balance != 3000-2 {
		t.Fatalf("after the outage: %+v, want 2 rows and balance %d (the 503 request applied nothing)", s, 3000-2)
	}
}

// buildBank compiles this command into a temporary directory.
func buildBank(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bank")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSIGTERMDuringLoad runs the real binary, keeps 16 clients posting, sends SIGTERM and checks that the
// process exits cleanly, that every request either got a full answer or was never accepted, and that the
// database holds exactly the answered transactions with consistent balances (nothing lost or half-applied).
func TestSIGTERMDuringLoad(t *testing.T) {
	bin := buildBank(t)
	dsn := pgtest.NewDatabase(t)
	env, client := tlsEnv(t)
	env["DATABASE_URL"] = dsn
	env["HTTP_ADDR"] = "127.0.0.1:0"
	env["SHUTDOWN_DRAIN_DELAY"] = "500ms"
	env["SHUTDOWN_TIMEOUT"] = "10s"
	environ := os.Environ()
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	seed := exec.Command(bin, "seed", "--accounts", "4", "--balance", "100000000")
	seed.Env = environ
	if out, err := seed.CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = environ
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	addr := make(chan string, 1)
	logs := &strings.Builder{}
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
	}()
	var url string
	select {
	case a := <-addr:
		url = "https://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("bank did not start listening")
	}
	b := bankUnderTest{url: url, client: client, dsn: dsn}

	var answered sync.Map // id → amount, for every 201
	var sent, refused, otherStatus atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				one := tx(fmt.Sprintf("ACC-%06d", i%4+1), int64(1+i))
				r, err := b.post(t, one)
				sent.Add(1)
				switch {
				case err != nil:
					refused.Add(1) // the listener is closed: the request never reached a handler
					var opErr *net.OpError
					if !errors.As(err, &opErr) && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "connection") {
						t.Errorf("unexpected client error: %v", err)
					}
					return
				case r.status == http.StatusCreated:
					answered.Store(one.ID, one.Amount)
				default:
					otherStatus.Add(1)
					t.Errorf("status %d during shutdown: %s", r.status, r.body)
					return
				}
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			logMu.Lock()
			t.Fatalf("bank exited with %v\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("bank did not exit after SIGTERM")
	}
	close(stop)
	wg.Wait()

	var count, total int64
	answered.Range(func(_, v any) bool { count++; total += v.(int64); return true })
	if count < 50 {
		t.Fatalf("only %d transactions answered before shutdown: the load did not run", count)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, debited, spent int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM transactions),
		(SELECT coalesce(sum(amount),0) FROM transactions WHERE status='approved'),
		(SELECT sum(initial_balance - balance) FROM accounts)`).Scan(&rows, &debited, &spent); err != nil {
		t.Fatal(err)
	}
	if rows != count || debited != total || spent != total {
		t.Fatalf("answered %d (sum %d); database has %d rows, approved sum %d, debited %d", count, total, rows,
			debited, spent)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), `"msg":"draining: readiness fails now"`) {
		t.Fatalf("no drain in the logs:\n%s", logs)
	}
	t.Logf("%d requests, %d answered 201 before exit, %d refused after the listener closed", sent.Load(), count,
		refused.Load())
}

// TestSeedCommand: `bank seed` creates canary accounts (--canary-accounts, --canary-balance) beside or
// instead of customer accounts (--accounts 0: what a production canary Job runs), and refuses nonsense
// without touching the database.
func TestSeedCommand(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	env := envOf(map[string]string{"DATABASE_URL": dsn, "LOG_LEVEL": "error"})
	ctx := context.Background()
	accounts := func() string {
		t.Helper()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, "SELECT id, balance FROM accounts ORDER BY id")
		if err != nil {
			return "no table: " + err.Error()
		}
		var out []string
		for rows.Next() {
			var id string
			var b int64
			if err := rows.Scan(&id, &b); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s=%d", id, b))
		}
		return strings.Join(out, " ")
	}
	for _, bad := range [][]string{{"--accounts", "0"}, {"--accounts", "0", "--canary-accounts", "0"},
		{"--canary-accounts", "-1"}, {"--accounts", "-1", "--canary-accounts", "1"},
		{"--canary-accounts", "1000000"}, {"--canary-accounts", "2", "extra"}} {
		if err := run(ctx, append([]string{"seed"}, bad...), env, io.Discard, nil); err == nil {
			t.Errorf("seed %q: no error", bad)
		}
	}
	if got := accounts(); !strings.HasPrefix(got, "no table") {
		t.Fatalf("refused seeds left accounts: %s", got)
	}
	if err := run(ctx, []string{"seed", "--accounts", "0", "--canary-accounts", "2", "--canary-balance", "5000"},
		env, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := accounts(), "CANARY-000001=5000 CANARY-000002=5000"; got != want {
		t.Fatalf("canary-only seed: %s, want %s", got, want)
	}
	if err := run(ctx, []string{"seed", "--accounts", "2", "--balance", "70", "--canary-accounts", "3"}, env,
		io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	want := "ACC-000001=70 ACC-000002=70 CANARY-000001=5000 CANARY-000002=5000 CANARY-000003=1000000000000"
	if got := accounts(); got != want {
		t.Fatalf("seed of both: %s, want %s", got, want)
	}
}
