package store

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestGeneratorDrawsWithinConfiguredRanges(t *testing.T) {
	cfg := GeneratorConfig{Interval: time.Second, Accounts: 3, Currency: "CHF", MinAmount: 10, MaxAmount: 12}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g := NewGenerator(nil, cfg, nil, slog.New(slog.DiscardHandler))
	accounts, amounts := map[string]bool{}, map[int64]bool{}
	for range 500 {
		p := g.Next()
		accounts[p.AccountID], amounts[p.Amount] = true, true
		if p.Currency != "CHF" || p.Source != SourceGenerator || p.Amount < 10 || p.Amount > 12 {
			t.Fatalf("drew %+v", p)
		}
	}
	if len(accounts) != 3 || !accounts["ACC-000001"] || !accounts["ACC-000003"] || len(amounts) != 3 {
		t.Fatalf("accounts %v amounts %v: the whole ranges should be drawn", accounts, amounts)
	}
}

func TestGeneratorConfigValidation(t *testing.T) {
	ok := GeneratorConfig{Interval: 0, Accounts: 100, Currency: "EUR", MinAmount: 1, MaxAmount: 1}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	for name, mutate := range map[string]func(*GeneratorConfig){
		"negative interval": func(c *GeneratorConfig) { c.Interval = -time.Second },
		"no accounts":       func(c *GeneratorConfig) { c.Accounts = 0 },
		"bad currency":      func(c *GeneratorConfig) { c.Currency = "eur" },
		"min above max":     func(c *GeneratorConfig) { c.MinAmount, c.MaxAmount = 5, 4 },
		"min zero":          func(c *GeneratorConfig) { c.MinAmount = 0 },
		"max too large":     func(c *GeneratorConfig) { c.MaxAmount = 1_000_000_001 },
	} {
		c := ok
		mutate(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestGeneratorCreatesPurchasesUntilStopped(t *testing.T) {
	repo, db := newRepo(t)
	metrics := NewMetrics(prometheus.NewRegistry())
	g := NewGenerator(repo, GeneratorConfig{Interval: 5 * time.Millisecond, Accounts: 10, Currency: "EUR",
		MinAmount: 1, MaxAmount: 100}, metrics, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for count(t, db, "purchases") < 5 {
		if time.Now().After(deadline) {
			t.Fatal("generator created fewer than 5 purchases in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	n := count(t, db, "purchases")
	if o := count(t, db, "outbox"); o != n {
		t.Fatalf("%d purchases but %d outbox rows", n, o)
	}
	if v := testutil.ToFloat64(metrics.created.WithLabelValues("generator")); int64(v) != n {
		t.Fatalf("store_purchases_created_total{source=generator} = %v, want %d", v, n)
	}
	time.Sleep(20 * time.Millisecond)
	if count(t, db, "purchases") != n {
		t.Fatal("generator kept creating after it was stopped")
	}
}
