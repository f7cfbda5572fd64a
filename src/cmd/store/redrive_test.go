package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/internal/banktest"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/store"
)

// TestRedriveSendsDeadLettersAgain: requests garbled on their way to the Bank get the Bank's own 400 —
// dead letters, confirmed by a lookup. Once the path is mended, `store redrive --all` makes them pending
// again with one audit line each, the running Store delivers them under the same ids, and the Bank applies
// each exactly once; a second redrive sends nothing.
func TestRedriveSendsDeadLettersAgain(t *testing.T) {
	bank := banktest.Start(t, banktest.Options{Accounts: 5})
	bank.SetFaults(banktest.Faults{Corrupt: 1})
	dsn := pgtest.NewDatabase(t)
	s := startService(t, withBank(bank, map[string]string{"DATABASE_URL": dsn, "GENERATOR_INTERVAL": "0",
		"RELAY_POLL_INTERVAL": "100ms"}))
	var ids []uuid.UUID
	for range 4 {
		ids = append(ids, postPurchase(t, s.url, `{"account_id":"ACC-000003","amount":100,"currency":"EUR"}`).ID)
	}
	outbox := waitOutbox(t, s, "every purchase dead-lettered", func(st store.OutboxStatus) bool {
		return st.Purchases.Rejected == 4 && st.Backlog == 0 // two reads: the backlog may lag the counts
	})
	if outbox.Purchases.Pending != 0 || bank.Transactions(t) != 0 {
		t.Fatalf("dead letters: %+v, bank rows %d", outbox, bank.Transactions(t))
	}
	if m := metric(t, s.url, "store_dead_letters"); m != 4 {
		t.Fatalf("store_dead_letters = %v, want 4", m)
	}
	bank.SetFaults(banktest.Faults{})
	vars := map[string]string{"DATABASE_URL": dsn, "STORE_ID": "store-test"}

	var out strings.Builder
	if err := run(context.Background(), []string{"redrive", "--all"}, env(vars), &out, nil); err != nil {
		t.Fatal(err)
	}
	lines := auditLines(t, out.String())
	if len(lines) != 4 {
		t.Fatalf("%d audit lines, want 4:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		if l.ErrorCode != payment.CodeInvalidRequest || l.RedrivenAt.IsZero() || !contains(ids, l.ID) {
			t.Errorf("audit line %+v", l)
		}
	}
	waitOutbox(t, s, "every purchase approved", func(st store.OutboxStatus) bool {
		return st.Purchases.Approved == 4 && st.Backlog == 0
	})
	for _, id := range ids {
		if rec, ok := bank.Record(t, id); !ok || rec.Status != payment.StatusApproved {
			t.Errorf("purchase %s at the Bank: %+v %v", id, rec, ok)
		}
	}
	if n := bank.Transactions(t); n != 4 {
		t.Fatalf("the Bank holds %d transactions, want 4", n)
	}
	if m := metric(t, s.url, "store_dead_letters"); m != 0 {
		t.Fatalf("store_dead_letters = %v after the redrive, want 0", m)
	}

	// Idempotent: nothing is dead-lettered any more.
	out.Reset()
	if err := run(context.Background(), []string{"redrive", "--id", ids[0].String()}, env(vars), &out, nil); err != nil ||
		len(auditLines(t, out.String())) != 0 || !strings.Contains(out.String(), "not dead-lettered") {
		t.Fatalf("second redrive: %v\n%s", err, out.String())
	}
	if err := run(context.Background(), []string{"redrive", "--id", uuid.NewString()}, env(vars), io.Discard,
		nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("redrive of an unknown id: %v", err)
	}
}

func TestRedriveUsage(t *testing.T) {
	vars := env(map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db"})
	for _, args := range [][]string{{"redrive"}, {"redrive", "--all", "--id", uuid.NewString()},
		{"redrive", "--id", "nope"}, {"redrive", "--all", "extra"}, {"redrive", "--every"}} {
		err := run(context.Background(), args, vars, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), "usage: store redrive") {
			t.Errorf("%q: %v", args, err)
		}
	}
}

type auditLine struct {
	Msg        string    `json:"msg"`
	ID         uuid.UUID `json:"purchase_id"`
	ErrorCode  string    `json:"error_code"`
	RedrivenAt time.Time `json:"redriven_at"`
}

// auditLines returns the redrive's per-purchase lines from its JSON log.
func auditLines(t *testing.T, logs string) []auditLine {
	t.Helper()
	var out []auditLine
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if strings.HasPrefix(l.Msg, "redriven") {
			out = append(out, l)
		}
	}
	return out
}

func contains(ids []uuid.UUID, id uuid.UUID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// waitOutbox polls GET /v1/outbox until cond holds.
func waitOutbox(t *testing.T, s *service, what string, cond func(store.OutboxStatus) bool) store.OutboxStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st store.OutboxStatus
		getJSON(t, s.url+"/v1/outbox", &st)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %+v\n%s", what, st, s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metric reads an unlabelled metric from the Store's /metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	var v float64
	getBody := func() string {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for _, line := range strings.Split(getBody(), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			if _, err := fmt.Sscan(f[1], &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
