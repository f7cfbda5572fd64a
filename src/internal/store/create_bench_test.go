package store

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"gorm.io/gorm"

	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

// BenchmarkCreateSynchronous measures Create from 32 concurrent callers on a primary whose commits wait for
// a real synchronous standby (group commit, up to 4 statements in flight). Run:
// go test -run '^$' -bench CreateSynchronous -benchtime 4000x ./src/internal/store/
func BenchmarkCreateSynchronous(b *testing.B) {
	ctx := context.Background()
	primary, err := pglocal.Start(ctx, pglocal.Options{Settings: map[string]string{
		"synchronous_standby_names": "bench_standby"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = primary.Close() })
	standby, err := primary.Standby(ctx, "bench_standby", pglocal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = standby.Close() })
	if err := primary.CreateDatabase(ctx, "store"); err != nil {
		b.Fatal(err)
	}
	repo := NewRepository(openDBBench(b, primary.DSN("store")), "store-bench")
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, _, err := repo.Create(ctx, sampleIn("")); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "purchases/s")
}

func openDBBench(b *testing.B, dsn string) *gorm.DB {
	b.Helper()
	db, err := postgres.Open(postgres.Config{URL: dsn, MaxConns: 20})
	if err != nil {
		b.Fatal(err)
	}
	sqlDB, _ := db.DB()
	b.Cleanup(func() { _ = sqlDB.Close() })
	if _, err := postgres.Migrate(context.Background(), sqlDB, Migrations(), MigrationLockID,
		slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	return db
}
