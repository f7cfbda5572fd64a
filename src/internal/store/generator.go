package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// GeneratorConfig configures the purchase generator, filled from the environment.
type GeneratorConfig struct {
	// Interval between two purchases; 0 switches the generator off.
	Interval time.Duration `env:"GENERATOR_INTERVAL" envDefault:"1s"`
	// Accounts: purchases pick ACC-000001…ACC-<Accounts> uniformly, the accounts `bank seed` creates.
	Accounts int    `env:"GENERATOR_ACCOUNTS" envDefault:"100"`
	Currency string `env:"GENERATOR_CURRENCY" envDefault:"EUR"`
	// Amounts are uniform in [MinAmount, MaxAmount], in minor units.
	MinAmount int64 `env:"GENERATOR_MIN_AMOUNT" envDefault:"100"`
	MaxAmount int64 `env:"GENERATOR_MAX_AMOUNT" envDefault:"10000"`
}

// Validate checks the settings.
func (c GeneratorConfig) Validate() error {
	var errs []error
	if c.Interval < 0 {
		errs = append(errs, errors.New("GENERATOR_INTERVAL must be >= 0 (0 switches the generator off)"))
	}
	if c.Accounts < 1 || c.Accounts > 999_999 {
		errs = append(errs, errors.New("GENERATOR_ACCOUNTS must be between 1 and 999999"))
	}
	if !payment.ValidCurrency(c.Currency) {
		errs = append(errs, fmt.Errorf("GENERATOR_CURRENCY %q is not an ISO 4217 code", c.Currency))
	}
	if c.MinAmount < payment.MinAmount || c.MaxAmount > payment.MaxAmount || c.MinAmount > c.MaxAmount {
		errs = append(errs, fmt.Errorf("GENERATOR_MIN_AMOUNT and GENERATOR_MAX_AMOUNT must satisfy %d <= min <= max <= %d",
			payment.MinAmount, payment.MaxAmount))
	}
	return errors.Join(errs...)
}

// AccountID is the id of the n-th seeded account (the naming of `bank seed`): ACC-000001, ACC-000002, …
func AccountID(n int) string { return fmt.Sprintf("ACC-%06d", n) }

// Generator creates purchases periodically: the seed's "periodic transactions from the Store".
type Generator struct {
	repo    *Repository
	cfg     GeneratorConfig
	metrics *Metrics
	log     *slog.Logger
	rnd     *rand.Rand
}

// NewGenerator returns a generator; Run does nothing when cfg.Interval is 0.
func NewGenerator(repo *Repository, cfg GeneratorConfig, metrics *Metrics, log *slog.Logger) *Generator {
	return &Generator{repo: repo, cfg: cfg, metrics: metrics, log: log,
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// Next draws the next purchase.
func (g *Generator) Next() NewPurchase {
	return NewPurchase{
		AccountID: AccountID(1 + g.rnd.IntN(g.cfg.Accounts)),
		Amount:    g.cfg.MinAmount + g.rnd.Int64N(g.cfg.MaxAmount-g.cfg.MinAmount+1),
		Currency:  g.cfg.Currency,
		Source:    SourceGenerator,
	}
}

// Run creates a purchase every interval until ctx ends. A failed creation is logged (once per outage) and
// skipped: the generator is a load source, not a client that must not lose its requests.
func (g *Generator) Run(ctx context.Context) {
	if g.cfg.Interval <= 0 {
		g.log.Info("generator off")
		return
	}
	g.log.Info("generator on", "interval", g.cfg.Interval, "accounts", g.cfg.Accounts, "currency", g.cfg.Currency,
		"min_amount", g.cfg.MinAmount, "max_amount", g.cfg.MaxAmount)
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			g.log.Info("generator stopped")
			return
		case <-t.C:
		}
		// A stop signal does not cancel an insert half-way: what was created is counted.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, _, err := g.repo.Create(cctx, g.Next())
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			g.log.Warn("generator cannot create purchases", "err", err)
		case err == nil:
			if failing {
				failing = false
				g.log.Info("generator creates purchases again")
			}
			g.metrics.created.WithLabelValues(string(SourceGenerator)).Inc()
		}
	}
}

// WatchBacklog measures the outbox every interval and publishes it as metrics until ctx ends.
func WatchBacklog(ctx context.Context, repo *Repository, metrics *Metrics, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, every)
		b, err := repo.Backlog(qctx)
		cancel()
		if err == nil {
			metrics.SetBacklog(b)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
