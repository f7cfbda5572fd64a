package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/internal/banktest"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env builds a getenv from key/value pairs.
func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

// syncBuffer is a log sink safe for the concurrent writes of a running service.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// service is a store run in-process.
type service struct {
	url  string
	logs *syncBuffer
	stop context.CancelFunc
	done chan error
}

func startService(t testing.TB, vars map[string]string) *service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &service{logs: &syncBuffer{}, stop: cancel, done: make(chan error, 1)}
	ready := make(chan net.Addr, 1)
	base := map[string]string{"HTTP_ADDR": "127.0.0.1:0", "SHUTDOWN_DRAIN_DELAY": "0s", "STORE_ID": "store-test",
		"LOG_LEVEL": "debug"}
	for k, v := range vars {
		base[k] = v
	}
	go func() { s.done <- run(ctx, nil, env(base), s.logs, ready) }()
	select {
	case addr := <-ready:
		s.url = "http://" + addr.String()
	case err := <-s.done:
		t.Fatalf("store exited during start-up: %v\n%s", err, s.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("store not listening after 30s\n%s", s.logs)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Errorf("store did not stop")
		}
	})
	return s
}

// shutdown stops the service and returns run's error.
func (s *service) shutdown(t *testing.T) error {
	t.Helper()
	s.stop()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("store did not stop within 30s\n%s", s.logs)
		return nil
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %d %q: %v", url, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode
}

func TestConfigurationErrors(t *testing.T) {
	dsn := "postgres://u@127.0.0.1:1/db"
	tests := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"no database", map[string]string{"BANK_URL": "http://bank"}, "DATABASE_URL"},
		{"no bank", map[string]string{"DATABASE_URL": dsn}, "BANK_URL is required"},
		{"bank not http", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "ftp://bank"}, "BANK_URL"},
		{"ca over http", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank", "BANK_CA_FILE": "/x"},
			"https"},
		{"cert without key", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "https://bank",
			"BANK_CLIENT_CERT_FILE": "/x"}, "BANK_CLIENT_KEY_FILE"},
		{"bad timeout", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank", "BANK_TIMEOUT": "0s"},
			"BANK_TIMEOUT"},
		{"negative ride-through", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank", "DB_RIDE_THROUGH": "-1s"},
			"DB_RIDE_THROUGH"},
		{"ride-through beyond the request deadline", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank",
			"DB_RIDE_THROUGH": "19s", "HTTP_REQUEST_TIMEOUT": "20s"}, "DB_RIDE_THROUGH 19s must be at most HTTP_REQUEST_TIMEOUT"},
		{"negative body timeout", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank",
			"HTTP_READ_BODY_TIMEOUT": "-1s"}, "HTTP_READ_BODY_TIMEOUT"},
		{"bad store id", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank", "STORE_ID": "a b"},
			"STORE_ID"},
		{"bad generator", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank",
			"GENERATOR_MIN_AMOUNT": "10", "GENERATOR_MAX_AMOUNT": "5"}, "GENERATOR_MIN_AMOUNT"},
		{"bad duration", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank",
			"GENERATOR_INTERVAL": "often"}, "often"},
		{"admin address equal to HTTP_ADDR", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank",
			"HTTP_ADDR": ":8080", "ADMIN_ADDR": ":8080"}, `ADMIN_ADDR ":8080" must differ from HTTP_ADDR`},
		{"admin address on HTTP_ADDR's socket", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank",
			"ADMIN_ADDR": "0.0.0.0:8080"}, `ADMIN_ADDR "0.0.0.0:8080" and HTTP_ADDR ":8080" use the same port`},
		{"admin address without port", map[string]string{"DATABASE_URL": dsn, "BANK_URL": "http://bank",
			"ADMIN_ADDR": "localhost"}, `ADMIN_ADDR "localhost" must be [host]:port`},
		{"unknown command", map[string]string{"DATABASE_URL": dsn}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{}
			if tt.name == "unknown command" {
				args = []string{"launch"}
			}
			err := run(context.Background(), args, env(tt.vars), io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestMigrateThenServeWithGenerator(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	// migrate needs no Bank settings.
	if err := run(context.Background(), []string{"migrate"}, env(map[string]string{"DATABASE_URL": dsn}),
		io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	s := startService(t, map[string]string{"DATABASE_URL": dsn, "MIGRATE_ON_START": "false",
		"BANK_URL": "http://127.0.0.1:1", "GENERATOR_INTERVAL": "10ms", "GENERATOR_ACCOUNTS": "5"})
	if code := getJSON(t, s.url+"/readyz", nil); code != http.StatusOK {
		t.Fatalf("/readyz %d\n%s", code, s.logs)
	}
	var st struct {
		Backlog   int64            `json:"backlog"`
		Purchases map[string]int64 `json:"purchases"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for st.Purchases["pending"] < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("generator created %v after 20s\n%s", st, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
		getJSON(t, s.url+"/v1/outbox", &st)
	}
	if err := s.shutdown(t); err != nil {
		t.Fatalf("shutdown: %v\n%s", err, s.logs)
	}
}

// withBank merges the Store's environment for a test Bank into vars.
func withBank(bank *banktest.Bank, vars map[string]string) map[string]string {
	for k, v := range bank.StoreEnv() {
		vars[k] = v
	}
	return vars
}

func postPurchase(t *testing.T, base, body string) store.Purchase {
	t.Helper()
	resp, err := http.Post(base+"/v1/purchases", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p store.Purchase
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/purchases: %d %v", resp.StatusCode, err)
	}
	return p
}

func TestServeDeliversToTheBankOverMTLS(t *testing.T) {
	bank := banktest.Start(t, banktest.Options{Accounts: 5})
	s := startService(t, withBank(bank, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t),
		"GENERATOR_INTERVAL": "20ms", "GENERATOR_ACCOUNTS": "5", "RELAY_POLL_INTERVAL": "100ms"}))
	p := postPurchase(t, s.url, `{"account_id":"ACC-000002","amount":1250,"currency":"EUR"}`)
	deadline := time.Now().Add(20 * time.Second)
	for p.Status == store.StatusPending {
		if time.Now().After(deadline) {
			t.Fatalf("purchase still pending after 20s\n%s", s.logs)
		}
		time.Sleep(10 * time.Millisecond)
		getJSON(t, s.url+"/v1/purchases/"+p.ID.String(), &p)
	}
	rec, ok := bank.Record(t, p.ID)
	if p.Status != store.StatusApproved || p.Attempts != 1 || !ok || !rec.SameFields(p.Transaction()) ||
		rec.StoreID != "store-test" {
		t.Fatalf("purchase %+v, bank %+v", p, rec)
	}
	var st store.OutboxStatus
	getJSON(t, s.url+"/v1/outbox", &st)
	if st.Breaker != "closed" || st.Purchases.Approved+st.Purchases.Declined < 1 {
		t.Fatalf("outbox %+v", st)
	}
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"store_http_requests_total", "store_outbox_backlog", "store_outbox_oldest_pending_age_seconds",
		`store_deliveries_total{outcome="approved"}`, `store_deliveries_total{outcome="retry"}`,
		"store_delivery_attempts_bucket", "store_breaker_state 0", "store_bank_request_duration_seconds_bucket",
		`store_purchases_created_total{source="api"} 1`, `store_purchases_created_total{source="generator"}`,
		"go_goroutines", `go_sql_max_open_connections{db_name="store"}`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if err := s.shutdown(t); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func TestGracefulShutdownFinishesSendsInFlight(t *testing.T) {
	bank := banktest.Start(t, banktest.Options{Accounts: 5})
	bank.SetFaults(banktest.Faults{Latency: 300 * time.Millisecond}) // every send stays in flight a while
	dsn := pgtest.NewDatabase(t)
	s := startService(t, withBank(bank, map[string]string{"DATABASE_URL": dsn, "GENERATOR_INTERVAL": "0",
		"RELAY_CONCURRENCY": "4"}))
	for range 20 {
		postPurchase(t, s.url, `{"account_id":"ACC-000001","amount":1,"currency":"EUR"}`)
	}
	deadline := time.Now().Add(10 * time.Second)
	for bank.Stats().InFlight == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no send in flight")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.shutdown(t); err != nil {
		t.Fatalf("shutdown: %v\n%s", err, s.logs)
	}
	// Every send that started was recorded; nothing is left claimed.
	db, err := postgres.Open(postgres.Config{URL: dsn, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer postgres.Close(db)
	var claimed, delivered, sentButPending int64
	db.Raw("SELECT count(*) FROM outbox WHERE claim_token IS NOT NULL").Scan(&claimed)
	db.Raw("SELECT count(*) FROM purchases WHERE status <> 'pending'").Scan(&delivered)
	db.Raw("SELECT count(*) FROM purchases WHERE status = 'pending' AND attempts > 0").Scan(&sentButPending)
	if claimed != 0 || sentButPending != 0 || delivered == 0 || delivered != bank.Stats().Created {
		t.Fatalf("after shutdown: %d claimed, %d delivered (Bank created %d), %d sent but pending\n%s", claimed,
			delivered, bank.Stats().Created, sentButPending, s.logs)
	}
	t.Logf("stopped with %d of 20 delivered, the rest pending and unclaimed", delivered)
}
