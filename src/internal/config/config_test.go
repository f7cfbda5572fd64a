package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/internal/config"
)

type inner struct {
	Interval time.Duration `env:"GENERATOR_INTERVAL" envDefault:"1s"`
}

type settings struct {
	Gen   inner
	URL   string `env:"DATABASE_URL,required"`
	Conns int    `env:"DB_MAX_CONNS" envDefault:"10"`
}

func getenv(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestLoadDefaultsAndValues(t *testing.T) {
	var s settings
	if err := config.Load(&s, getenv(map[string]string{"DATABASE_URL": "postgres://x", "DB_MAX_CONNS": ""})); err != nil {
		t.Fatal(err)
	}
	if s.URL != "postgres://x" || s.Conns != 10 || s.Gen.Interval != time.Second {
		t.Fatalf("got %+v", s)
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	var s settings
	err := config.Load(&s, getenv(map[string]string{"GENERATOR_INTERVAL": "soon", "DB_MAX_CONNS": "many"}))
	if err == nil {
		t.Fatal("invalid values accepted")
	}
	for _, want := range []string{"GENERATOR_INTERVAL", "DB_MAX_CONNS", "DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://app:s3cret@db:5432/bank?sslmode=require": "postgres://app:xxxxx@db:5432/bank?sslmode=require",
		"host=db user=app password=s3cret dbname=bank":       "host=db user=app password=xxxxx dbname=bank",
		"host=db password='a b' dbname=bank":                 "host=db password=xxxxx dbname=bank",
		"postgres://db/bank?password=s3cret":                 "postgres://db/bank?password=xxxxx",
	} {
		if got := config.Redact(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
