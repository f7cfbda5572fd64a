package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/internal/audit"
	"github.com/txmesh/txmesh/src/internal/banktest"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
)

// buildStore compiles this command into a temporary directory.
func buildStore(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the store binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "store")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is a store binary running.
type process struct {
	cmd  *exec.Cmd
	log  string
	url  string
	done chan error
}

func startProcess(t *testing.T, bin, name string, vars map[string]string) *process {
	t.Helper()
	p := &process{log: filepath.Join(t.TempDir(), name+".log"), done: make(chan error, 1)}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = append(os.Environ(), "HTTP_ADDR=127.0.0.1:0", "SHUTDOWN_DRAIN_DELAY=0s")
	for k, v := range vars {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log (tail):\n%s", name, tail(string(b), 3000))
		}
	})
	// The address and scheme come from the "listening" log line.
	deadline := time.Now().Add(30 * time.Second)
	for p.url == "" {
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening after 30s", name)
		}
		b, _ := os.ReadFile(p.log)
		for _, line := range strings.Split(string(b), "\n") {
			var entry struct{ Msg, Addr, Scheme string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" {
				p.url = entry.Scheme + "://" + entry.Addr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestKilledMidBatchLosesNothing SIGKILLs a store process while it has sends in flight and claimed rows in
// its outbox, restarts it, and lets txaudit judge: nothing lost, nothing applied twice.
func TestKilledMidBatchLosesNothing(t *testing.T) {
	bin := buildStore(t)
	bank := banktest.Start(t, banktest.Options{Accounts: 20})
	bank.SetFaults(banktest.Faults{Latency: 100 * time.Millisecond}) // sends stay in flight a while
	dsn := pgtest.NewDatabase(t)
	vars := withBank(bank, map[string]string{"DATABASE_URL": dsn, "STORE_ID": "store-kill", "LOG_LEVEL": "info",
		"GENERATOR_INTERVAL": "2ms", "GENERATOR_ACCOUNTS": "20", "BANK_TIMEOUT": "500ms", "RELAY_LEASE": "6s",
		"RELAY_CONCURRENCY": "8", "RELAY_POLL_INTERVAL": "100ms", "RELAY_MAX_BACKOFF": "200ms"})
	first := startProcess(t, bin, "store-1", vars)

	var st struct {
		Backlog   int64            `json:"backlog"`
		Purchases map[string]int64 `json:"purchases"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for st.Purchases["approved"]+st.Purchases["declined"] < 50 || st.Backlog < 20 || bank.Stats().InFlight < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("never reached a busy state: %+v, bank %+v", st, bank.Stats())
		}
		time.Sleep(5 * time.Millisecond)
		getJSON(t, first.url+"/v1/outbox", &st)
	}
	// Sends in flight are counted at the Bank just before the kill: once the process is gone its connections
	// close and, on a loaded machine, the Bank may have finished them by the time the exit is observed.
	atKill := bank.Stats()
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-first.done
	first.done <- err

	db, err := postgres.Open(postgres.Config{URL: dsn, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer postgres.Close(db)
	var claimed, pending int64
	db.Raw("SELECT count(*) FROM outbox WHERE claim_token IS NOT NULL").Scan(&claimed)
	db.Raw("SELECT count(*) FROM outbox").Scan(&pending)
	if claimed == 0 || atKill.InFlight == 0 {
		t.Fatalf("killed with %d claimed rows and %d sends in flight: not mid-batch", claimed, atKill.InFlight)
	}
	t.Logf("SIGKILL with %d purchases pending, %d of them claimed, %d sends in flight at the Bank", pending,
		claimed, atKill.InFlight)

	// Restart without the generator: the dead process's claims come due when their lease ends.
	vars["GENERATOR_INTERVAL"] = "0"
	second := startProcess(t, bin, "store-2", vars)
	storeDB, _ := db.DB()
	if left, err := audit.WaitDrained(context.Background(), storeDB, 60*time.Second, 100*time.Millisecond); err != nil ||
		left != 0 {
		t.Fatalf("backlog %d after restart (%v)", left, err)
	}
	bankDB, _ := bank.DB.DB()
	rep, err := audit.Run(context.Background(), storeDB, bankDB)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean || rep.Purchases["pending"] != 0 || rep.InFlight != 0 {
		var out strings.Builder
		_ = rep.WriteText(&out)
		t.Fatalf("audit after kill and restart:\n%s", out.String())
	}
	total := rep.Purchases["approved"] + rep.Purchases["declined"] + rep.Purchases["rejected"]
	final := bank.Stats()
	if rep.Bank.Transactions != total {
		t.Fatalf("the Bank holds %d transactions, the Store has %d decided purchases", rep.Bank.Transactions, total)
	}
	t.Logf("after restart: %d purchases all delivered once in effect; %d requests reached the Bank, %d resent",
		total, final.Requests, final.Duplicates())

	// The restarted store stops gracefully on SIGTERM.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-second.done:
		second.done <- err
		if err != nil {
			t.Fatalf("store exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("store did not stop within 30s of SIGTERM")
	}
}
