// Package config fills a command's typed configuration from the environment (caarlos0/env), so defaults and
// validation live in one struct per command, and builds the JSON logger every command uses.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"reflect"
	"regexp"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Load fills cfg (a pointer to a struct with `env` tags) from getenv. An empty variable counts as unset.
func Load(cfg any, getenv func(string) string) error {
	params, err := env.GetFieldParams(cfg)
	if err != nil {
		return err
	}
	vars := map[string]string{}
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			vars[p.Key] = v
		}
	}
	if err := env.ParseWithOptions(cfg, env.Options{Environment: vars}); err != nil {
		return fmt.Errorf("configuration: %w", nameVariables(err, reflect.TypeOf(cfg)))
	}
	return nil
}

// nameVariables rewrites the library's parse errors, which name the struct field ("Interval"), so that they
// name the environment variable the user set ("GENERATOR_INTERVAL").
func nameVariables(err error, t reflect.Type) error {
	keys := map[string]string{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
				keys[f.Name] = key
			} else if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			}
		}
	}
	walk(t)
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	msgs := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) && keys[pe.Name] != "" {
			msgs = append(msgs, fmt.Errorf("%s: %w", keys[pe.Name], pe.Err))
			continue
		}
		msgs = append(msgs, e)
	}
	return errors.Join(msgs...)
}

// Logger returns a JSON slog logger writing to w at level.
func Logger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

var kvPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// Redact hides the password of a libpq URL or key/value DSN, for logs.
func Redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}
