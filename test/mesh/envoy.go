package mesh

import (
	"fmt"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httprbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netrbac "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"istio.io/istio/pilot/pkg/simulation"
)

// Envoy's well-known names used here.
const (
	hcmFilter      = "envoy.filters.network.http_connection_manager"
	httpRBACFilter = "envoy.filters.http.rbac"
	netRBACFilter  = "envoy.filters.network.rbac"
	tcpProxyFilter = "envoy.filters.network.tcp_proxy"
	faultFilter    = "envoy.filters.http.fault"
	tlsSocket      = "envoy.transport_sockets.tls"
	virtualInbound = "virtualInbound"
)

// listener returns the listener named name.
func listener(sim *simulation.Simulation, name string) (*listenerv3.Listener, error) {
	for _, l := range sim.Listeners {
		if l.GetName() == name {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no listener %q", name)
}

// cluster returns the cluster named name.
func cluster(sim *simulation.Simulation, name string) (*clusterv3.Cluster, error) {
	for _, c := range sim.Clusters {
		if c.GetName() == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no cluster %q", name)
}

// inboundChains returns the filter chains of the virtualInbound listener named name (Istio may build more
// than one per port, e.g. per ALPN); they must all be judged.
func inboundChains(sim *simulation.Simulation, name string) ([]*listenerv3.FilterChain, error) {
	l, err := listener(sim, virtualInbound)
	if err != nil {
		return nil, err
	}
	var out []*listenerv3.FilterChain
	for _, fc := range l.GetFilterChains() {
		if fc.GetName() == name {
			out = append(out, fc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("virtualInbound has no filter chain %q", name)
	}
	return out, nil
}

// hcm returns the chain's HTTP connection manager, or nil for a TCP chain.
func hcm(fc *listenerv3.FilterChain) (*hcmv3.HttpConnectionManager, error) {
	for _, f := range fc.GetFilters() {
		if f.GetName() != hcmFilter {
			continue
		}
		h := &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
			return nil, fmt.Errorf("chain %s: %w", fc.GetName(), err)
		}
		return h, nil
	}
	return nil, nil
}

// chainRBAC returns the RBAC rules the chain enforces, in the order Envoy applies them: network filters
// first, then the HTTP filters of its connection manager. Shadow rules are not enforced and are left out;
// an RBAC filter configured in a form this package cannot judge (ECDS, the matcher API, per-route
// overrides) is an error.
func chainRBAC(fc *listenerv3.FilterChain) ([]*rbacv3.RBAC, error) {
	var out []*rbacv3.RBAC
	for _, f := range fc.GetFilters() {
		if f.GetName() != netRBACFilter {
			continue
		}
		cfg := &netrbac.RBAC{}
		if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			return nil, err
		}
		if cfg.GetMatcher() != nil {
			return nil, fmt.Errorf("chain %s: network RBAC with a matcher", fc.GetName())
		}
		if cfg.GetRules() != nil {
			out = append(out, cfg.GetRules())
		}
	}
	h, err := hcm(fc)
	if err != nil || h == nil {
		return out, err
	}
	for _, f := range h.GetHttpFilters() {
		if f.GetName() != httpRBACFilter {
			continue
		}
		if f.GetTypedConfig() == nil {
			return nil, fmt.Errorf("chain %s: RBAC filter without an inline configuration", fc.GetName())
		}
		cfg := &httprbac.RBAC{}
		if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			return nil, err
		}
		if cfg.GetMatcher() != nil {
			return nil, fmt.Errorf("chain %s: HTTP RBAC with a matcher", fc.GetName())
		}
		if cfg.GetRules() != nil {
			out = append(out, cfg.GetRules())
		}
	}
	for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if _, ok := r.GetTypedPerFilterConfig()[httpRBACFilter]; ok {
				return nil, fmt.Errorf("chain %s: route %s overrides RBAC", fc.GetName(), r.GetName())
			}
		}
		if _, ok := vh.GetTypedPerFilterConfig()[httpRBACFilter]; ok {
			return nil, fmt.Errorf("chain %s: virtual host %s overrides RBAC", fc.GetName(), vh.GetName())
		}
	}
	return out, nil
}

// Authorize decides req on the sidecar of the called pod: the inbound filter chain an mTLS HTTP call to
// req.Port selects (found by Istio's own traffic simulation), then every RBAC filter of it in order.
func Authorize(sim *simulation.Simulation, callee Pod, req Request) (Decision, error) {
	res := sim.Run(simulation.Call{
		Address:  callee.IP,
		Port:     int(req.Port),
		Path:     req.Path,
		Protocol: simulation.HTTP,
		TLS:      simulation.MTLS,
		CallMode: simulation.CallModeInbound,
	})
	if res.Error != nil {
		return Decision{}, fmt.Errorf("mTLS call to %s:%d: %w", callee.Name, req.Port, res.Error)
	}
	chains, err := inboundChains(sim, res.FilterChainMatched)
	if err != nil {
		return Decision{}, err
	}
	var first *Decision
	for _, fc := range chains {
		rules, err := chainRBAC(fc)
		if err != nil {
			return Decision{}, err
		}
		d := Decision{Allowed: true}
		for _, r := range rules {
			if d, err = Evaluate(r, req); err != nil {
				return Decision{}, fmt.Errorf("chain %s: %w", fc.GetName(), err)
			}
			if !d.Allowed {
				break
			}
		}
		if first == nil {
			first = &d
		} else if first.Allowed != d.Allowed {
			return Decision{}, fmt.Errorf("chains %s disagree on %s", fc.GetName(), req)
		}
	}
	return *first, nil
}

// isBlackhole reports whether the chain ends in a TCP proxy to Istio's BlackHoleCluster (it serves no request).
func isBlackhole(fc *listenerv3.FilterChain) bool {
	filters := fc.GetFilters()
	if len(filters) == 0 || filters[len(filters)-1].GetName() != tcpProxyFilter {
		return false
	}
	tp := &tcpproxyv3.TcpProxy{}
	if err := filters[len(filters)-1].GetTypedConfig().UnmarshalTo(tp); err != nil {
		return false
	}
	return tp.GetCluster() == "BlackHoleCluster"
}

// requiresIstioMTLS reports why a downstream (inbound) TLS context is not Istio's mutual TLS, or "".
func requiresIstioMTLS(fc *listenerv3.FilterChain) string {
	ts := fc.GetTransportSocket()
	if ts == nil || ts.GetName() != tlsSocket {
		return "plaintext accepted (no TLS transport socket)"
	}
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return err.Error()
	}
	if !ctx.GetRequireClientCertificate().GetValue() {
		return "client certificate not required"
	}
	if why := istioCerts(ctx.GetCommonTlsContext()); why != "" {
		return why
	}
	return ""
}

// istioCerts reports why a TLS context does not present the workload's Istio certificate (SDS "default")
// and validate the peer against the mesh root (SDS "ROOTCA"), or "".
func istioCerts(c *tlsv3.CommonTlsContext) string {
	certs := c.GetTlsCertificateSdsSecretConfigs()
	if len(certs) != 1 || certs[0].GetName() != "default" {
		return "not the workload certificate (SDS default)"
	}
	vc := c.GetCombinedValidationContext().GetValidationContextSdsSecretConfig()
	if vc.GetName() != "ROOTCA" {
		return "peer not validated against the mesh root (SDS ROOTCA)"
	}
	return ""
}

// upstreamIstioMTLS reports why a cluster does not originate Istio mutual TLS, or "".
func upstreamIstioMTLS(c *clusterv3.Cluster) string {
	ts := c.GetTransportSocket()
	if ts == nil {
		if len(c.GetTransportSocketMatches()) > 0 {
			return "TLS only by auto-mTLS endpoint match (plaintext to endpoints without a sidecar)"
		}
		return "plaintext"
	}
	if ts.GetName() != tlsSocket {
		return "transport socket " + ts.GetName()
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return err.Error()
	}
	if why := istioCerts(ctx.GetCommonTlsContext()); why != "" {
		return why
	}
	if !strings.HasPrefix(ctx.GetSni(), "outbound_.") {
		return "SNI " + ctx.GetSni() + " is not Istio's outbound SNI"
	}
	return ""
}

// outboundRoute returns the route the client's sidecar selects for an HTTP call to host:port with path,
// found by Istio's traffic simulation.
func outboundRoute(sim *simulation.Simulation, host string, port int, path string) (*routev3.Route, error) {
	res := sim.Run(simulation.Call{
		Port:       port,
		Path:       path,
		Protocol:   simulation.HTTP,
		HostHeader: host,
		CallMode:   simulation.CallModeOutbound,
	})
	if res.Error != nil {
		return nil, fmt.Errorf("call to %s:%d%s: %w", host, port, path, res.Error)
	}
	for _, rc := range sim.Routes {
		if rc.GetName() != res.RouteConfigMatched {
			continue
		}
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() != res.VirtualHostMatched {
				continue
			}
			for _, r := range vh.GetRoutes() {
				if r.GetName() == res.RouteMatched && pathMatches(r.GetMatch(), path) {
					return r, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("call to %s:%d%s: route %q of %s/%s not found", host, port, path, res.RouteMatched,
		res.RouteConfigMatched, res.VirtualHostMatched)
}

func pathMatches(m *routev3.RouteMatch, path string) bool {
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		return strings.HasPrefix(path, p.Prefix)
	case *routev3.RouteMatch_Path:
		return path == p.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		return path == p.PathSeparatedPrefix || strings.HasPrefix(path, p.PathSeparatedPrefix+"/")
	}
	return false
}

// routeClusters returns the clusters a route sends to, with their weights.
func routeClusters(r *routev3.Route) map[string]uint32 {
	out := map[string]uint32{}
	a := r.GetRoute()
	if c := a.GetCluster(); c != "" {
		out[c] = 100
	}
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		out[wc.GetName()] = wc.GetWeight().GetValue()
	}
	return out
}
