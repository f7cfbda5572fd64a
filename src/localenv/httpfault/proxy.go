package httpfault

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// Proxy is a reverse proxy with faults, in the place of a sidecar: it takes plain HTTP from the client (as an
// app inside a mesh talks to its local sidecar) and forwards to the target over (m)TLS with the client's
// certificate (as the sidecar presents the workload's identity).
type Proxy struct {
	*Injector
	URL string // http://127.0.0.1:<port>
	srv *http.Server
	ln  net.Listener
}

// StartProxy listens on a free loopback port and forwards to target (an http or https base URL) with tlsCfg
// (nil for plain HTTP).
func StartProxy(target string, tlsCfg *tls.Config) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("httpfault: target %q is not a base URL", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("httpfault: listen: %w", err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConnsPerHost = 64
	rp.Transport = tr
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
		w.WriteHeader(http.StatusBadGateway) // as a sidecar answers when the upstream fails: no server marks
	}
	p := &Proxy{Injector: New(), URL: "http://" + ln.Addr().String(), ln: ln}
	p.srv = &http.Server{Handler: p.Wrap(rp, nil), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy and releases held answers.
func (p *Proxy) Close() error {
	p.Injector.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return p.srv.Close()
	}
	return nil
}
