package bank

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/bankclient"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
	"github.com/txmesh/txmesh/src/internal/postgres"
	"github.com/txmesh/txmesh/src/internal/web"
	"github.com/txmesh/txmesh/src/localenv/pki"
)

// BenchmarkPostBatchMTLS profiles the batch endpoint as BenchmarkPostTransactionMTLS does the single one: a
// real Bank (mTLS, gin, pgx, PostgreSQL) and the Store's bankclient in one process, 8 concurrent clients
// sending batches of 32 new transactions on 1,000 accounts; one op is one batch. Server goroutines carry the
// pprof label side=bank, client goroutines side=client:
//
//	go test -run '^$' -bench PostBatchMTLS -benchtime 2000x -cpuprofile cpu.out ./src/internal/bank
//	go tool pprof -tagfocus side=bank -top bank.test cpu.out
func BenchmarkPostBatchMTLS(b *testing.B) {
	const accounts, clients, size = 1000, 8, 32
	ctx, cancel := context.WithCancel(context.Background())
	db, err := postgres.Open(postgres.Config{URL: pgtest.NewDatabase(b), MaxConns: clients,
		ConnMaxLifetime: time.Hour, ConnMaxIdleTime: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	sqlDB, _ := db.DB()
	log := slog.New(slog.DiscardHandler)
	if _, err := postgres.Migrate(ctx, sqlDB, Migrations(), MigrationLockID, log); err != nil {
		b.Fatal(err)
	}
	if _, err := Seed(ctx, db, accounts, 1_000_000_000_000, "EUR"); err != nil {
		b.Fatal(err)
	}
	files, err := pki.Write(b.TempDir(), "store", "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	health := web.NewHealth(func(context.Context) error { return nil })
	h := NewServer(NewRepository(db), anonymous(), health, prometheus.NewRegistry(), log)
	cfg := web.ServerConfig{Addr: "127.0.0.1:0", TLSCertFile: files.ServerCert, TLSKeyFile: files.ServerKey,
		TLSClientCAFile: files.CA, ShutdownTimeout: 5 * time.Second}
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go pprof.Do(ctx, pprof.Labels("side", "bank"), func(ctx context.Context) {
		done <- web.Serve(ctx, cfg, h, health, log, ready)
	})
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		<-done
		_ = sqlDB.Close()
	})
	tlsCfg, err := bankclient.TLSConfig(files.CA, files.ClientCert, files.ClientKey)
	if err != nil {
		b.Fatal(err)
	}
	client, err := bankclient.New("https://"+addr.String(), bankclient.HTTPClient(10*time.Second, clients, tlsCfg))
	if err != nil {
		b.Fatal(err)
	}
	b.SetParallelism((clients + 1) / 2) // × GOMAXPROCS (2 here) goroutines
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("side", "client")))
		txs := make([]payment.Transaction, size)
		for pb.Next() {
			for i := range txs {
				txs[i] = payment.Transaction{ID: uuid.New(), StoreID: "bench",
					AccountID: fmt.Sprintf("ACC-%06d", rand.IntN(accounts)+1), Amount: rand.Int64N(100) + 1,
					Currency: "EUR", CreatedAt: time.Now().UTC()}
			}
			answers, err := client.SubmitBatch(ctx, txs)
			if err != nil {
				b.Errorf("submit batch: %v", err)
				return
			}
			for _, a := range answers {
				if a.Err != nil || a.Result.Status != payment.StatusApproved {
					b.Errorf("item: %+v", a)
					return
				}
			}
		}
	})
	// CPU of this process (Bank + client + GC) per transaction; PostgreSQL's is not included.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N*size), "cpu-µs/tx")
}
