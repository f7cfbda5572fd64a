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
	"strconv"
	"sync/atomic"
	"time"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// ServerConfig is the serving part of a service's configuration, filled from the environment.
type ServerConfig struct {
	Addr string `env:"HTTP_ADDR" envDefault:":8080"`
	// AdminAddr, when set, is the management listener: plain HTTP serving only the main handler's /healthz,
	// /readyz and /metrics, for clients that present no client certificate (kubelet probes, Prometheus)
	// when the main listener requires one.
	AdminAddr       string        `env:"ADMIN_ADDR"`
	TLSCertFile     string        `env:"TLS_CERT_FILE"`
	TLSKeyFile      string        `env:"TLS_KEY_FILE"`
	TLSClientCAFile string        `env:"TLS_CLIENT_CA_FILE"`
	DrainDelay      time.Duration `env:"SHUTDOWN_DRAIN_DELAY" envDefault:"5s"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// MaxInFlight bounds the requests handled at once (LimitInFlight); 0 switches the bound off.
	MaxInFlight int `env:"HTTP_MAX_IN_FLIGHT" envDefault:"64"`
	// ReadHeaderTimeout bounds reading a request's headers; ReadBodyTimeout its body, from then on (Bounded);
	// RequestTimeout its handling once the body is in (the handler's context deadline). Zero: the default
	// (Timeouts).
	ReadHeaderTimeout time.Duration `env:"HTTP_READ_HEADER_TIMEOUT" envDefault:"5s"`
	ReadBodyTimeout   time.Duration `env:"HTTP_READ_BODY_TIMEOUT" envDefault:"10s"`
	RequestTimeout    time.Duration `env:"HTTP_REQUEST_TIMEOUT" envDefault:"18s"`
	// Service names the service on the answers Bounded gives itself (payment.ServiceHeader); set by the
	// command, not the environment.
	Service string `env:"-"`
	// ClientCertOptional is for a service that refuses unidentified callers itself, with an answer of its
	// own (the Bank's 403 caller_not_allowed): with TLS_CLIENT_CA_FILE, a client certificate is verified
	// when presented instead of required at the handshake. Set by the command, not the environment.
	ClientCertOptional bool `env:"-"`
}

// Validate checks the combination of TLS settings, the management address, the in-flight bound and the
// timeouts.
func (c ServerConfig) Validate() error {
	var errs []error
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("TLS_CERT_FILE and TLS_KEY_FILE must be set together"))
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		errs = append(errs, errors.New("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE"))
	}
	if c.DrainDelay < 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("SHUTDOWN_DRAIN_DELAY must be >= 0 and SHUTDOWN_TIMEOUT > 0"))
	}
	if c.AdminAddr != "" {
		errs = append(errs, c.validateAdminAddr())
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("HTTP_MAX_IN_FLIGHT must be >= 0 (0: no bound), got %d", c.MaxInFlight))
	}
	if c.ReadHeaderTimeout < 0 || c.ReadBodyTimeout < 0 || c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("HTTP_READ_HEADER_TIMEOUT (%v), HTTP_READ_BODY_TIMEOUT (%v) and "+
			"HTTP_REQUEST_TIMEOUT (%v) must be > 0", c.ReadHeaderTimeout, c.ReadBodyTimeout, c.RequestTimeout))
	}
	return errors.Join(errs...)
}

// validateAdminAddr checks that ADMIN_ADDR is a host:port with a numeric port and cannot be HTTP_ADDR's
// socket: the same port, on the same host or where either one listens on every address. Port 0 (a port
// chosen by the kernel, for tests) never collides.
func (c ServerConfig) validateAdminAddr() error {
	host, port, err := splitAddr(c.AdminAddr)
	if err != nil {
		return fmt.Errorf("ADMIN_ADDR %q must be [host]:port, e.g. :9090: %w", c.AdminAddr, err)
	}
	if c.AdminAddr == c.Addr && port != 0 {
		return fmt.Errorf("ADMIN_ADDR %q must differ from HTTP_ADDR", c.AdminAddr)
	}
	// An HTTP_ADDR that does not split fails at listen, naming itself.
	mainHost, mainPort, mainErr := splitAddr(c.Addr)
	sameSocket := port == mainPort && (host == mainHost || anyHost(host) || anyHost(mainHost))
	if mainErr == nil && port != 0 && sameSocket {
		return fmt.Errorf("ADMIN_ADDR %q and HTTP_ADDR %q use the same port %d", c.AdminAddr, c.Addr, port)
	}
	return nil
}

// splitAddr splits a listen address into its host and numeric port.
func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number in 0-65535", p)
	}
	return host, int(port), nil
}

// anyHost reports whether a listen host means every local address.
func anyHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// TLS returns the server TLS configuration, or nil for plain HTTP. With a client CA, client certificates
// signed by it are required (mTLS); with ClientCertOptional, only verified when presented.
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
		if c.ClientCertOptional {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
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

var errDraining = errors.New("draining")

// SetDraining makes readiness fail from now on.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Ready runs the readiness check.
func (h *Health) Ready(ctx context.Context) error {
	if h.draining.Load() {
		return errDraining
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	return h.check(ctx)
}

// Serve listens on cfg.Addr and serves h until ctx ends; with cfg.AdminAddr it also serves AdminHandler(h)
// there, over plain HTTP. Then it drains: readiness fails (on both listeners), it waits cfg.DrainDelay (so
// load balancers stop sending), and shuts down, letting in-flight requests finish within cfg.ShutdownTimeout;
// the management listener closes last, so probes and scrapes are answered until the main one has finished.
// ready, when not nil, receives the main listener's bound address once both listen.
func Serve(ctx context.Context, cfg ServerConfig, h http.Handler, health *Health, log *slog.Logger,
	ready chan<- net.Addr) error {
	tlsCfg, err := cfg.TLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen HTTP_ADDR %s: %w", cfg.Addr, err)
	}
	var adminLn net.Listener
	if cfg.AdminAddr != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen ADMIN_ADDR %s: %w", cfg.AdminAddr, err)
		}
	}
	srv := newHTTPServer(Bounded(h, cfg), tlsCfg, cfg, log)
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
		ln = tls.NewListener(ln, tlsCfg)
	}
	log.Info("listening", "addr", ln.Addr().String(), "scheme", scheme, "mtls", cfg.TLSClientCAFile != "")
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	var admin *http.Server
	if adminLn != nil {
		admin = newHTTPServer(Bounded(AdminHandler(h), cfg), nil, cfg, log)
		log.Info("admin listening", "addr", adminLn.Addr().String(), "scheme", "http", "paths", AdminPaths)
		go func() { errc <- fmt.Errorf("admin: %w", admin.Serve(adminLn)) }()
	}
	if ready != nil {
		ready <- ln.Addr()
	}
	select {
	case err := <-errc:
		_ = srv.Close()
		if admin != nil {
			_ = admin.Close()
		}
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	health.SetDraining()
	log.Info("draining: readiness fails now", "delay", cfg.DrainDelay)
	time.Sleep(cfg.DrainDelay)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		err = fmt.Errorf("shutdown: %w", err)
	}
	if admin != nil {
		if aerr := admin.Shutdown(sctx); aerr != nil {
			_ = admin.Close()
			err = errors.Join(err, fmt.Errorf("shutdown admin: %w", aerr))
		}
	}
	if err != nil {
		return err
	}
	log.Info("http server stopped")
	return nil
}

// The defaults of ServerConfig's timeouts, for a zero value (a configuration not filled from the environment).
// The request's stays below the Store's Istio route timeout (20 s), so that the service's own answer (a 504
// naming its purchase) reaches the client rather than the proxy's.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadBodyTimeout   = 10 * time.Second
	DefaultRequestTimeout    = 18 * time.Second
)

// Timeouts returns c with every zero timeout set to its default.
func (c ServerConfig) Timeouts() ServerConfig {
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadBodyTimeout == 0 {
		c.ReadBodyTimeout = DefaultReadBodyTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}

// newHTTPServer bounds each stage of a request: its headers (ReadHeaderTimeout), its body and handling
// (Bounded), and the writing of its answer — WriteTimeout counts from the end of the headers, so it covers
// the body, the handler and a slow reader of the answer.
func newHTTPServer(h http.Handler, tlsCfg *tls.Config, cfg ServerConfig, log *slog.Logger) *http.Server {
	cfg = cfg.Timeouts()
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		WriteTimeout:      cfg.ReadBodyTimeout + cfg.RequestTimeout + 5*time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// ErrorBody builds the JSON error body.
func ErrorBody(code, msg string, fields map[string]string) payment.ErrorBody {
	return payment.ErrorBody{Error: payment.APIError{Code: code, Message: msg, Fields: fields}}
}
