package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/audit"
	"github.com/txmesh/txmesh/src/internal/bank"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/store"
	"github.com/txmesh/txmesh/src/localenv/pki"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type fixture struct {
	storeDSN, bankDSN string
	storeDB, bankDB   *gorm.DB
	repo              *store.Repository
	ledger            *bank.Repository
	pending           store.Purchase
}

func open(t *testing.T, dsn string) *gorm.DB {
	t.Helper()
	db, err := postgres.Open(postgres.Config{URL: dsn, MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeGorm(db) })
	return db
}

// newFixture: two purchases delivered through the Bank's ledger, one pending.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{storeDSN: pgtest.NewDatabase(t), bankDSN: pgtest.NewDatabase(t)}
	f.storeDB, f.bankDB = open(t, f.storeDSN), open(t, f.bankDSN)
	ctx, quiet := context.Background(), slog.New(slog.DiscardHandler)
	s, _ := f.storeDB.DB()
	b, _ := f.bankDB.DB()
	if _, err := postgres.Migrate(ctx, s, store.Migrations(), store.MigrationLockID, quiet); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Migrate(ctx, b, bank.Migrations(), bank.MigrationLockID, quiet); err != nil {
		t.Fatal(err)
	}
	if _, err := bank.Seed(ctx, f.bankDB, 3, 1000, "EUR"); err != nil {
		t.Fatal(err)
	}
	f.repo, f.ledger = store.NewRepository(f.storeDB, "store-1"), bank.NewRepository(f.bankDB)
	for i := range 3 {
		p, _, err := f.repo.Create(ctx, store.NewPurchase{AccountID: store.AccountID(1 + i), Amount: 600,
			Currency: "EUR", Source: store.SourceAPI})
		if err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			f.pending = p
			break
		}
		f.deliver(t, p)
	}
	return f
}

func (f *fixture) deliver(t *testing.T, p store.Purchase) {
	t.Helper()
	res, _, err := f.ledger.Process(context.Background(), pki.ID("store"), p.Transaction())
	if err != nil {
		t.Error(err)
		return
	}
	if err := f.repo.Complete(context.Background(), p.ID, res); err != nil {
		t.Error(err)
	}
}

func (f *fixture) run(args ...string) (string, error) {
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"--store-dsn", f.storeDSN, "--bank-dsn", f.bankDSN}, args...),
		nil, &out)
	return out.String(), err
}

func TestCleanTextAndJSON(t *testing.T) {
	f := newFixture(t)
	out, err := f.run()
	if err != nil || exitCode(err) != 0 || !strings.Contains(out, "CLEAN") ||
		!strings.Contains(out, "3 purchases — pending 1, approved 2") ||
		!strings.Contains(out, "txaudit: bank by caller: spiffe://txmesh.local/store 2 (approved 2, declined 0)\n") {
		t.Fatalf("exit %d (%v):\n%s", exitCode(err), err, out)
	}
	out, err = f.run("--json")
	var rep audit.Report
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || !rep.Clean || rep.Purchases["approved"] != 2 ||
		rep.Backlog != 1 || rep.Drained != nil || len(rep.Bank.Callers) != 1 ||
		rep.Bank.Callers[0] != (audit.CallerSummary{Caller: pki.ID("store"), Transactions: 2, Approved: 2}) {
		t.Fatalf("--json: %v\n%s", err, out)
	}
}

func TestDefectsExitOne(t *testing.T) {
	f := newFixture(t)
	if err := f.bankDB.Exec("DELETE FROM transactions WHERE amount = 600 AND account_id = 'ACC-000001'").Error; err != nil {
		t.Fatal(err)
	}
	out, err := f.run("--json")
	var rep audit.Report
	if exitCode(err) != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.Clean ||
		rep.Defects[audit.Lost] != 1 || rep.Defects[audit.Imbalance] != 1 || len(rep.Findings) != 2 {
		t.Fatalf("exit %d (%v):\n%s", exitCode(err), err, out)
	}
	out, err = f.run()
	if exitCode(err) != 1 || !strings.Contains(out, "DEFECTS FOUND (2)") || !strings.Contains(out, "- lost ") {
		t.Fatalf("exit %d (%v):\n%s", exitCode(err), err, out)
	}
}

func TestWait(t *testing.T) {
	f := newFixture(t)
	// The backlog (one pending purchase) does not drain: exit 1 after the wait, even with no defect.
	start := time.Now()
	out, err := f.run("--wait", "300ms")
	if exitCode(err) != 1 || !strings.Contains(out, "NOT DRAINED") || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("exit %d (%v) after %s:\n%s", exitCode(err), err, time.Since(start), out)
	}
	// It drains while txaudit waits: judged afterwards, clean.
	go func() {
		time.Sleep(300 * time.Millisecond)
		f.deliver(t, f.pending)
	}()
	out, err = f.run("--wait", "20s", "--json")
	var rep audit.Report
	if exitCode(err) != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Drained == nil || !*rep.Drained ||
		rep.Purchases["approved"] != 3 || rep.Backlog != 0 {
		t.Fatalf("exit %d (%v):\n%s", exitCode(err), err, out)
	}
}

func TestUsageAndConnectionErrorsExitTwo(t *testing.T) {
	unreachable := "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	for name, args := range map[string][]string{
		"no flags":        {},
		"no bank dsn":     {"--store-dsn", unreachable},
		"unknown flag":    {"--store-dsn", "x", "--bank-dsn", "y", "--verbose"},
		"bad duration":    {"--store-dsn", "x", "--bank-dsn", "y", "--wait", "soon"},
		"extra argument":  {"--store-dsn", "x", "--bank-dsn", "y", "now"},
		"bad dsn":         {"--store-dsn", "postgres://%zz", "--bank-dsn", "y"},
		"unreachable":     {"--store-dsn", unreachable, "--bank-dsn", unreachable},
		"negative wait":   {"--store-dsn", "x", "--bank-dsn", "y", "--wait", "-1s"},
		"not a txmesh db": {"--store-dsn", pgtest.NewDatabase(t), "--bank-dsn", pgtest.NewDatabase(t)},
	} {
		err := run(context.Background(), args, nil, &bytes.Buffer{})
		if exitCode(err) != 2 {
			t.Errorf("%s: exit %d (%v), want 2", name, exitCode(err), err)
		}
	}
	if err := run(context.Background(), []string{"-h"}, nil, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) ||
		exitCode(err) != 0 {
		t.Errorf("-h: %v", err)
	}
}
