package mesh

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"istio.io/istio/pilot/pkg/simulation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// The checks below each judge one property of the computed configuration and return what violates it (nil
// when nothing does). The tests run them on the repository's manifests (want nil) and on broken copies of
// them (want the violation), so every check is shown to be able to fail.

// Workloads are the app pods every check looks at: Flagger's primary and the canary target of each app.
var Workloads = []string{"bank", "bank-primary", "store", "store-primary"}

// AppPort is the port both apps serve on (the Canaries' service.port and the containers' port http).
const AppPort = 8080

// BankHost is the Bank's host as the Store calls it (BANK_URL in kustomize/base/store/configmap.yaml).
const BankHost = "bank.txmesh.svc.cluster.local"

// CheckMTLS: every inbound filter chain of every app pod requires Istio mTLS, a plaintext call to the app
// port finds no chain that takes it while an mTLS one does, and the clusters the Store's route to the Bank
// sends to originate Istio mutual TLS.
func CheckMTLS(t *testing.T, w *World) []string {
	var out []string
	for _, name := range Workloads {
		p := w.Pod(t, Namespace, name)
		sim := w.Sidecar(t, p)
		l, err := listener(sim, virtualInbound)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		for _, fc := range l.GetFilterChains() {
			if isBlackhole(fc) {
				continue // calls addressed to 15006 itself: dropped, whatever they carry
			}
			if why := requiresIstioMTLS(fc); why != "" {
				out = append(out, fmt.Sprintf("%s: inbound chain %s: %s", name, fc.GetName(), why))
			}
		}
		call := simulation.Call{Address: p.IP, Port: AppPort, Path: "/", Protocol: simulation.HTTP,
			CallMode: simulation.CallModeInbound}
		if res := sim.Run(call); res.Error == nil {
			out = append(out, fmt.Sprintf("%s: a plaintext call to :%d is accepted (chain %s)", name, AppPort,
				res.FilterChainMatched))
		}
		call.TLS = simulation.MTLS
		res := sim.Run(call)
		if want := fmt.Sprintf("inbound|%d||", AppPort); res.Error != nil || res.ClusterMatched != want {
			out = append(out, fmt.Sprintf("%s: an mTLS call to :%d reaches %q (%v), want %s", name, AppPort,
				res.ClusterMatched, res.Error, want))
		}
	}
	for _, p := range []string{"store", "store-primary"} {
		sim := w.Sidecar(t, w.Pod(t, Namespace, p))
		clusters, err := bankClusters(sim)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", p, err))
		}
		for _, name := range clusters {
			c, err := cluster(sim, name)
			if err != nil {
				out = append(out, fmt.Sprintf("%s: %v", p, err))
				continue
			}
			if why := upstreamIstioMTLS(c); why != "" {
				out = append(out, fmt.Sprintf("%s: outbound cluster %s: %s", p, name, why))
			}
		}
	}
	return out
}

// bankClusters are the clusters the route the Store's sidecar selects for the Bank sends to.
func bankClusters(sim *simulation.Simulation) ([]string, error) {
	r, err := outboundRoute(sim, BankHost, AppPort, "/v1/transactions")
	if err != nil {
		return nil, err
	}
	var out []string
	for c := range routeClusters(r) {
		out = append(out, c)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("route %s to the Bank sends to no cluster", r.GetName())
	}
	return out, nil
}

// Access is one expected authorization decision: Caller calls Method Path on the pods of Callee.
type Access struct {
	Caller  Pod
	Callee  string
	Method  string
	Path    string
	Allowed bool
}

// AccessMatrix is the authorization the mesh must enforce on the apps: exactly what the Store (relay) and the
// load tester's webhooks call is allowed, Prometheus reads /metrics, and every other principal, method and
// path is denied. The allowed calls come from src/internal/bankclient (the relay's two POSTs), the relay's
// lookup of a transaction by id, and the webhooks of kustomize/components/canary.
func AccessMatrix(w *World, t *testing.T) []Access {
	// The apps' identities are their Deployments' service accounts, as rendered.
	store := w.Pod(t, Namespace, "store-primary")
	bank := w.Pod(t, Namespace, "bank-primary")
	loadtester := w.Pod(t, "loadtester", "flagger-loadtester")
	prometheus := w.Pod(t, "monitoring", "prometheus")
	callers := []Pod{store, bank, loadtester, prometheus}
	for _, c := range Callers {
		if c.Name == "intruder" {
			callers = append(callers, c)
		}
	}
	const id = "/v1/transactions/0b7e6c1e-6f7b-4c53-9d4c-0d1f5c2b9a10"
	const purchase = "/v1/purchases/0b7e6c1e-6f7b-4c53-9d4c-0d1f5c2b9a10"
	allowed := map[string]map[string]bool{
		store.Principal(): {
			"bank POST /v1/transactions": true, "bank POST /v1/transactions/batch": true, "bank GET " + id: true,
		},
		loadtester.Principal(): {
			"bank POST /v1/transactions": true, "bank GET " + id: true,
			"store GET /readyz": true, "store GET /v1/outbox": true,
		},
		prometheus.Principal(): {"bank GET /metrics": true, "store GET /metrics": true},
	}
	probes := map[string][]string{
		"bank": {"POST /v1/transactions", "POST /v1/transactions/batch", "GET " + id, "GET /v1/transactions/batch/x",
			"GET /v1/transactions", "PUT " + id, "DELETE " + id, "PATCH " + id, "POST " + id,
			"POST /v1/transactions/other", "GET /v1/accounts/ACC-000001", "POST /v1/accounts/ACC-000001",
			"GET /openapi.yaml", "GET /metrics", "POST /metrics", "GET /healthz", "GET /readyz", "POST /", "GET /"},
		"store": {"POST /v1/purchases", "GET " + purchase, "GET /v1/outbox", "POST /v1/outbox", "GET /readyz",
			"GET /healthz", "GET /metrics", "DELETE " + purchase, "POST /v1/transactions", "GET /openapi.yaml",
			"POST /", "GET /"},
	}
	var out []Access
	for _, callee := range []string{"bank", "store"} {
		for _, probe := range probes[callee] {
			method, path, _ := strings.Cut(probe, " ")
			for _, c := range callers {
				out = append(out, Access{Caller: c, Callee: callee, Method: method, Path: path,
					Allowed: allowed[c.Principal()][callee+" "+probe]})
			}
		}
	}
	return out
}

// CheckAuthorization decides every Access of the matrix on the sidecar of each pod of the callee (primary and
// canary) with the RBAC filters Istio computed, and reports each decision that differs.
func CheckAuthorization(t *testing.T, w *World) []string {
	var out []string
	sims := map[string]*simulation.Simulation{}
	for _, name := range Workloads {
		sims[name] = w.Sidecar(t, w.Pod(t, Namespace, name))
	}
	for _, a := range AccessMatrix(w, t) {
		for _, name := range []string{a.Callee, a.Callee + "-primary"} {
			req := Request{Principal: a.Caller.Principal(), Method: a.Method, Path: a.Path, Port: AppPort}
			d, err := Authorize(sims[name], w.Pod(t, Namespace, name), req)
			switch {
			case err != nil:
				out = append(out, fmt.Sprintf("%s: %s: %v", name, req, err))
			case d.Allowed != a.Allowed:
				out = append(out, fmt.Sprintf("%s: %s: allowed=%v (policy %q), want allowed=%v", name, req,
					d.Allowed, d.Policy, a.Allowed))
			}
		}
	}
	return out
}

// CheckSelectorlessWrites: on a pod in txmesh that no policy selects by label (the intruder), only the
// namespace-wide policies apply; none of them may let any principal write (any method but GET and HEAD).
func CheckSelectorlessWrites(t *testing.T, w *World) []string {
	var out []string
	callee := w.Pod(t, Namespace, "intruder")
	sim := w.Sidecar(t, callee)
	principals := []string{w.Pod(t, Namespace, "store-primary").Principal(), w.Pod(t, Namespace, "bank-primary").Principal()}
	for _, c := range Callers {
		principals = append(principals, c.Principal())
	}
	for _, pr := range principals {
		for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
			for _, path := range []string{"/", "/v1/transactions", "/v1/transactions/batch", "/v1/purchases",
				"/v1/accounts/ACC-000001", "/metrics", "/readyz"} {
				req := Request{Principal: pr, Method: m, Path: path, Port: AppPort}
				d, err := Authorize(sim, callee, req)
				switch {
				case err != nil:
					out = append(out, fmt.Sprintf("unselected pod: %s: %v", req, err))
				case d.Allowed:
					out = append(out, fmt.Sprintf("unselected pod: %s allowed by %s", req, d.Policy))
				}
			}
		}
	}
	return out
}

// safeRetryOn are the Envoy retry conditions on which resending a POST to the Bank is safe: the Bank never
// answered (connect-failure, refused-stream, reset-before-request), the exchange broke or timed out without
// the Bank's answer (reset, gateway-error: 502/503/504 — the Bank itself answers only 503, and only when
// nothing was committed), each of which the Bank's dedup by transaction id makes harmless, or the gRPC
// conditions that an HTTP/JSON answer never triggers. `5xx` (a 500 is the Bank's definite answer to a bug)
// and `retriable-4xx` (409) are not safe-and-useful, and neither is any condition not listed.
var safeRetryOn = map[string]bool{
	"connect-failure": true, "refused-stream": true, "reset-before-request": true, "reset": true,
	"gateway-error": true, "retriable-status-codes": true,
	"cancelled": true, "deadline-exceeded": true, "unavailable": true, "resource-exhausted": true,
}

// safeRetryStatus are the status codes retriable-status-codes may list.
var safeRetryStatus = map[uint32]bool{502: true, 503: true, 504: true}

// CheckRetries: the Store's routes to the Bank (every path the relay calls) retry only on safe conditions, at
// least once, with a per-try timeout and an overall timeout below the relay's own deadline (BANK_TIMEOUT
// of the rendered store-config).
func CheckRetries(t *testing.T, w *World) []string {
	var out []string
	deadline, err := bankTimeout(w)
	if err != nil {
		return []string{err.Error()}
	}
	sim := w.Sidecar(t, w.Pod(t, Namespace, "store-primary"))
	for _, path := range []string{"/v1/transactions", "/v1/transactions/batch", "/v1/transactions/0b7e6c1e"} {
		r, err := outboundRoute(sim, BankHost, AppPort, path)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		bad := func(format string, a ...any) {
			out = append(out, fmt.Sprintf("route %s (%s): ", r.GetName(), path)+fmt.Sprintf(format, a...))
		}
		rp := r.GetRoute().GetRetryPolicy()
		if rp == nil || rp.GetNumRetries().GetValue() == 0 {
			bad("no retries")
			continue
		}
		for _, cond := range strings.Split(rp.GetRetryOn(), ",") {
			if !safeRetryOn[strings.TrimSpace(cond)] {
				bad("retries on %q, not safe for a POST the Bank dedups by id (retryOn %q)", cond, rp.GetRetryOn())
			}
		}
		for _, code := range rp.GetRetriableStatusCodes() {
			if !safeRetryStatus[code] {
				bad("retries on status %d", code)
			}
		}
		perTry := rp.GetPerTryTimeout().AsDuration()
		if perTry <= 0 || perTry >= deadline {
			bad("per-try timeout %v, want > 0 and below the relay's BANK_TIMEOUT %v", perTry, deadline)
		}
		if total := r.GetRoute().GetTimeout().AsDuration(); total <= 0 || total >= deadline {
			bad("route timeout %v, want > 0 (0 is none) and below the relay's BANK_TIMEOUT %v", total, deadline)
		}
	}
	return out
}

// bankTimeout is BANK_TIMEOUT of the rendered store-config ConfigMap.
func bankTimeout(w *World) (time.Duration, error) {
	cm := find(w.Rendered, "ConfigMap", "store-config")
	if cm == nil {
		return 0, fmt.Errorf("no ConfigMap store-config rendered")
	}
	v, _, _ := unstructured.NestedString(cm.Object, "data", "BANK_TIMEOUT")
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("store-config BANK_TIMEOUT %q: %w", v, err)
	}
	return d, nil
}

// CheckOutlierDetection: every cluster the Store's route to the Bank sends to (Flagger's primary and, during
// an analysis, canary) ejects hosts on consecutive errors with the values of the Bank Canary's
// service.trafficPolicy.outlierDetection, which must be set.
func CheckOutlierDetection(t *testing.T, w *World) []string {
	c := find(w.Rendered, "Canary", "bank")
	if c == nil {
		return []string{"no Canary bank rendered"}
	}
	od, found, _ := unstructured.NestedMap(c.Object, "spec", "service", "trafficPolicy", "outlierDetection")
	if !found {
		return []string{"Canary bank: no service.trafficPolicy.outlierDetection"}
	}
	var out []string
	num := func(k string) uint32 {
		switch v := od[k].(type) {
		case int64:
			return uint32(v)
		case float64:
			return uint32(v)
		}
		return 0
	}
	dur := func(k string) time.Duration {
		s, _ := od[k].(string)
		d, err := time.ParseDuration(s)
		if err != nil {
			out = append(out, fmt.Sprintf("Canary bank: outlierDetection.%s %q: %v", k, s, err))
		}
		return d
	}
	want5xx, wantGateway := num("consecutive5xxErrors"), num("consecutiveGatewayErrors")
	wantInterval, wantEjection, wantMax := dur("interval"), dur("baseEjectionTime"), num("maxEjectionPercent")
	if want5xx == 0 && wantGateway == 0 {
		out = append(out, "Canary bank: outlierDetection ejects on no consecutive errors")
	}
	sim := w.Sidecar(t, w.Pod(t, Namespace, "store-primary"))
	clusters, err := bankClusters(sim)
	if err != nil {
		return append(out, err.Error())
	}
	if w.canaryWeight() > 0 && len(clusters) != 2 {
		out = append(out, fmt.Sprintf("during an analysis the route to the Bank sends to %v, want primary and canary", clusters))
	}
	for _, name := range clusters {
		cl, err := cluster(sim, name)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		o := cl.GetOutlierDetection()
		if o == nil {
			out = append(out, fmt.Sprintf("cluster %s: no outlier detection", name))
			continue
		}
		got := fmt.Sprintf("5xx=%d(enforcing %d%%) gateway=%d(enforcing %d%%) interval=%v ejection=%v max=%d%%",
			o.GetConsecutive_5Xx().GetValue(), o.GetEnforcingConsecutive_5Xx().GetValue(),
			o.GetConsecutiveGatewayFailure().GetValue(), o.GetEnforcingConsecutiveGatewayFailure().GetValue(),
			o.GetInterval().AsDuration(), o.GetBaseEjectionTime().AsDuration(), o.GetMaxEjectionPercent().GetValue())
		enforce := func(n uint32) uint32 {
			if n > 0 {
				return 100
			}
			return 0
		}
		want := fmt.Sprintf("5xx=%d(enforcing %d%%) gateway=%d(enforcing %d%%) interval=%v ejection=%v max=%d%%",
			want5xx, enforce(want5xx), wantGateway, enforce(wantGateway), wantInterval, wantEjection, wantMax)
		if want5xx == 0 { // Istio leaves consecutive_5xx unset (Envoy's default 5, not enforced)
			want = strings.Replace(want, "5xx=0(enforcing 0%)", fmt.Sprintf("5xx=%d(enforcing 0%%)",
				o.GetConsecutive_5Xx().GetValue()), 1)
		}
		if got != want {
			out = append(out, fmt.Sprintf("cluster %s: outlier detection %s, want %s", name, got, want))
		}
	}
	return out
}

func (w *World) canaryWeight() int {
	for _, vs := range w.Generated {
		if vs.GetKind() != "VirtualService" || vs.GetName() != "bank" {
			continue
		}
		routes, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
		for _, r := range routes {
			dests, _, _ := unstructured.NestedSlice(r.(map[string]any), "route")
			for _, d := range dests {
				host, _, _ := unstructured.NestedString(d.(map[string]any), "destination", "host")
				weight, _, _ := unstructured.NestedInt64(d.(map[string]any), "weight")
				if strings.HasSuffix(host, "-canary") {
					return int(weight)
				}
			}
		}
	}
	return 0
}

// Fault is a delay/abort configuration as percentages.
type Fault struct {
	DelayPercent float64
	Delay        time.Duration
	AbortPercent float64
	AbortStatus  uint32
}

func (f Fault) String() string {
	return fmt.Sprintf("delay %v on %g%%, abort %d on %g%%", f.Delay, f.DelayPercent, f.AbortStatus, f.AbortPercent)
}

// ConfiguredFault reads the fault the fault-injection component adds (mesh/fault-injection/fault.yaml).
func ConfiguredFault(tree *Tree) (Fault, error) {
	data, err := tree.Read("mesh/fault-injection/fault.yaml")
	if err != nil {
		return Fault{}, err
	}
	var patch []struct {
		Op, Path string
		Value    struct {
			Delay struct {
				FixedDelay string `json:"fixedDelay"`
				Percentage struct{ Value float64 }
			}
			Abort struct {
				HTTPStatus uint32 `json:"httpStatus"`
				Percentage struct{ Value float64 }
			}
		}
	}
	if err := yaml.Unmarshal(data, &patch); err != nil {
		return Fault{}, fmt.Errorf("mesh/fault-injection/fault.yaml: %w", err)
	}
	if len(patch) != 1 {
		return Fault{}, fmt.Errorf("mesh/fault-injection/fault.yaml: %d patch operations, want one", len(patch))
	}
	v := patch[0].Value
	d, err := time.ParseDuration(v.Delay.FixedDelay)
	if err != nil {
		return Fault{}, fmt.Errorf("mesh/fault-injection/fault.yaml: fixedDelay: %w", err)
	}
	return Fault{DelayPercent: v.Delay.Percentage.Value, Delay: d, AbortPercent: v.Abort.Percentage.Value,
		AbortStatus: v.Abort.HTTPStatus}, nil
}

// CheckFault: the Store's route to the Bank carries want (nil: no fault at all).
func CheckFault(t *testing.T, w *World, want *Fault) []string {
	sim := w.Sidecar(t, w.Pod(t, Namespace, "store-primary"))
	r, err := outboundRoute(sim, BankHost, AppPort, "/v1/transactions/batch")
	if err != nil {
		return []string{err.Error()}
	}
	cfg, ok := r.GetTypedPerFilterConfig()[faultFilter]
	if !ok {
		if want != nil {
			return []string{fmt.Sprintf("route %s to the Bank has no fault, want %s", r.GetName(), want)}
		}
		return nil
	}
	hf := &faultv3.HTTPFault{}
	if err := cfg.UnmarshalTo(hf); err != nil {
		return []string{err.Error()}
	}
	got := Fault{
		DelayPercent: percent(hf.GetDelay().GetPercentage()), Delay: hf.GetDelay().GetFixedDelay().AsDuration(),
		AbortPercent: percent(hf.GetAbort().GetPercentage()), AbortStatus: hf.GetAbort().GetHttpStatus(),
	}
	if want == nil {
		return []string{fmt.Sprintf("route %s to the Bank injects faults (%s), want none", r.GetName(), got)}
	}
	if got != *want {
		return []string{fmt.Sprintf("route %s to the Bank injects %s, want %s", r.GetName(), got, want)}
	}
	return nil
}

func percent(p *typev3.FractionalPercent) float64 {
	if p == nil {
		return 0
	}
	den := map[typev3.FractionalPercent_DenominatorType]float64{
		typev3.FractionalPercent_HUNDRED: 100, typev3.FractionalPercent_TEN_THOUSAND: 10000,
		typev3.FractionalPercent_MILLION: 1000000,
	}[p.GetDenominator()]
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(p.GetNumerator())/den*100, 'f', 4, 64), 64)
	return v
}
