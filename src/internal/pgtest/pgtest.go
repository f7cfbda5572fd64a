// Package pgtest gives each test a fresh database on one throwaway PostgreSQL server per test binary.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

var (
	once    sync.Once
	server  *pglocal.Server
	errBoot error
	seq     atomic.Int64
)

// Main runs the package's tests and then stops the shared server. Use it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if server != nil {
		_ = server.Close()
	}
	os.Exit(code)
}

// Server returns the shared server, starting it on first use. A missing PostgreSQL fails the test: a test
// that skips proves nothing.
func Server(t testing.TB) *pglocal.Server {
	t.Helper()
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server, errBoot = pglocal.Start(ctx, pglocal.Options{})
	})
	if errBoot != nil {
		t.Fatalf("start PostgreSQL: %v", errBoot)
	}
	return server
}

// NewDatabase creates an empty database for this test and returns its DSN; it is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s := Server(t)
	name := fmt.Sprintf("t%d_%s", seq.Add(1), sanitize(t.Name()))
	ctx := context.Background()
	if err := s.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Exec(ctx, "postgres", fmt.Sprintf("DROP DATABASE IF EXISTS %q WITH (FORCE)", name))
	})
	return s.DSN(name)
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}
