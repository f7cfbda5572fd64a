package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// proxies holds the toxiproxy proxies, used as a library: no toxiproxy server process, no HTTP API.
type proxies struct {
	srv *toxiproxy.ApiServer
}

func newProxies() *proxies {
	// Some toxics log through zerolog's global logger; the lab reports faults itself.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	return &proxies{srv: toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())}
}

// netProxy is one TCP fault proxy with a stable listening address.
type netProxy struct {
	name, addr string
	p          *toxiproxy.Proxy
}

func (ps *proxies) add(name, upstream string) (*netProxy, error) {
	p := toxiproxy.NewProxy(ps.srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("proxy %s: %w", name, err)
	}
	return &netProxy{name: name, addr: p.Listen, p: p}, nil
}

// toxic is one toxiproxy toxic: type latency, reset_peer, timeout, bandwidth…; stream upstream (client to
// server) or downstream; toxicity the share of connections it applies to.
type toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

func (n *netProxy) addToxic(t toxic) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err := n.p.Toxics.AddToxicJson(bytes.NewReader(b)); err != nil {
		return fmt.Errorf("proxy %s: add %s: %w", n.name, t.Name, err)
	}
	return nil
}

func (n *netProxy) removeToxic(name string) error {
	return n.p.Toxics.RemoveToxic(context.Background(), name)
}

// cut closes every connection through the proxy and refuses new ones until restore.
func (n *netProxy) cut() { n.p.Stop() }

// restore accepts connections again (a no-op when it does).
func (n *netProxy) restore() error {
	if err := n.p.Start(); err != nil && !errors.Is(err, toxiproxy.ErrProxyAlreadyStarted) {
		return fmt.Errorf("proxy %s: %w", n.name, err)
	}
	return nil
}

// repoint sends new connections to upstream, closes the existing ones (as moving a Service's endpoint does
// for its clients once the old backend is gone) and accepts connections again.
func (n *netProxy) repoint(upstream string) error {
	n.p.Stop()
	return n.p.Update(&toxiproxy.Proxy{Name: n.name, Listen: n.addr, Upstream: upstream, Enabled: true})
}

func (n *netProxy) close() {
	n.p.Toxics.ResetToxics(context.Background())
	n.p.Stop()
}
