package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txmesh/txmesh/src/internal/postgres"
)

func TestUnavailableClassification(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", fmt.Errorf("q: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}), true},
		{"deadline", fmt.Errorf("q: %w", context.DeadlineExceeded), true},
		{"conn done", sql.ErrConnDone, true},
		{"admin shutdown 57P01", &pgconn.PgError{Code: "57P01"}, true},
		{"too many connections 53300", &pgconn.PgError{Code: "53300"}, true},
		{"read-only standby 25006", &pgconn.PgError{Code: "25006"}, true},
		{"serialization 40001", &pgconn.PgError{Code: "40001"}, true},
		{"lock timeout 55P03", &pgconn.PgError{Code: "55P03"}, true},
		{"unexpected EOF", fmt.Errorf("q: %w", io.ErrUnexpectedEOF), true},
		{"check violation 23514 is a bug", &pgconn.PgError{Code: "23514"}, false},
		{"syntax error 42601 is a bug", &pgconn.PgError{Code: "42601"}, false},
		{"plain error", errors.New("boom"), false},
	}
	for _, tt := range tests {
		if got := postgres.Unavailable(tt.err); got != tt.want {
			t.Errorf("%s: Unavailable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := postgres.Config{URL: "postgres://u@h/db", MaxConns: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []postgres.Config{
		{URL: "postgres://u@h/db", MaxConns: 0},
		{URL: "postgres://u@h/db", MaxConns: 1, QueryExecMode: "fast"},
		{URL: "host=h port=notaport", MaxConns: 1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
