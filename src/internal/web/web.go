// Package web holds what both services' HTTP servers share: serving with (m)TLS and a graceful drain, health
// endpoints, the JSON error body, request metrics and gin middleware.
package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// ServerConfig is the serving part of a service's configuration, filled from the environment.
type ServerConfig struct {
	Addr            string        `env:"HTTP_ADDR" envDefault:":8080"`
	TLSCertFile     string        `env:"TLS_CERT_FILE"`
	TLSKeyFile      string        `env:"TLS_KEY_FILE"`
	TLSClientCAFile string        `env:"TLS_CLIENT_CA_FILE"`
	DrainDelay      time.Duration `env:"SHUTDOWN_DRAIN_DELAY" envDefault:"5s"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
}

// Validate checks the combination of TLS settings.
func (c ServerConfig) Validate() error {
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("TLS_CERT_FILE and TLS_KEY_FILE must be set together")
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		return errors.New("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE")
	}
	if c.DrainDelay < 0 || c.ShutdownTimeout <= 0 {
		return errors.New("SHUTDOWN_DRAIN_DELAY must be >= 0 and SHUTDOWN_TIMEOUT > 0")
	}
	return nil
}

// TLS returns the server TLS configuration, or nil for plain HTTP. With a client CA, client certificates
// signed by it are required (mTLS).
func (c ServerConfig) TLS() (*tls.Config, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.TLSClientCAFile != "" {
		pem, err := os.ReadFile(c.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s holds no PEM certificate", c.TLSClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Health answers /healthz and /readyz. Readiness fails while draining or when the check fails.
type Health struct {
	draining atomic.Bool
	check    func(context.Context) error
	timeout  time.Duration
}

// NewHealth returns a Health whose readiness runs check with a short timeout.
func NewHealth(check func(context.Context) error) *Health {
	return &Health{check: check, timeout: time.Second}
}

// SetDraining makes readiness fail from now on.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Ready runs the readiness check.
func (h *Health) Ready(ctx context.Context) error {
	if h.draining.Load() {
		return errors.New("draining")
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	return h.check(ctx)
}

// Serve listens on cfg.Addr and serves h until ctx ends; then it drains: readiness fails, it waits
// cfg.DrainDelay (so load balancers stop sending), and shuts down, letting in-flight requests finish within
// cfg.ShutdownTimeout. ready, when not nil, receives the bound address once listening.
func Serve(ctx context.Context, cfg ServerConfig, h http.Handler, health *Health, log *slog.Logger,
	ready chan<- net.Addr) error {
	tlsCfg, err := cfg.TLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
		ln = tls.NewListener(ln, tlsCfg)
	}
	log.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "mtls", cfg.TLSClientCAFile != "")
	if ready != nil {
		ready <- ln.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	health.SetDraining()
	log.Info("draining: readiness fails now", "delay", cfg.DrainDelay)
	time.Sleep(cfg.DrainDelay)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("http server stopped")
	return nil
}

// ErrorBody builds the JSON error body.
func ErrorBody(code, msg string, fields map[string]string) payment.ErrorBody {
	return payment.ErrorBody{Error: payment.APIError{Code: code, Message: msg, Fields: fields}}
}
