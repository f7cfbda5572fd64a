package mesh

import (
	"flag"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	istiolog "istio.io/istio/pkg/log"
)

// TestMain silences Istio's control-plane logs unless -v: they are the fake discovery server's, not findings.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		for _, s := range istiolog.Scopes() {
			s.SetOutputLevel(istiolog.NoneLevel)
		}
	}
	os.Exit(m.Run())
}

// Overlays whose mesh configuration is judged: the three that run inside Istio (kind-mesh: the GitHub
// workflow's mesh job, which never ran here; these checks are what stands for it). (kind, e2e and e2e-cd run
// without Envoy and use the apps' own mTLS; istioctl analyze still reads them, TestIstioAnalyze.)
var meshOverlays = []string{"kustomize/overlays/minikube", "kustomize/overlays/production", "kustomize/overlays/kind-mesh"}

// withFault is where the fault-injection component must be on: the Minikube lab has it, production never,
// kind-mesh not in its manifests (the e2e's fault-injection row adds the fault at run time and removes it).
var withFault = map[string]bool{"kustomize/overlays/minikube": true, "kustomize/overlays/production": false,
	"kustomize/overlays/kind-mesh": false}

// During an analysis step (Flagger's SetRoutes with this canary weight) as well as once initialized.
var states = []FlaggerState{{CanaryWeight: 0}, {CanaryWeight: 50}}

var (
	treeOnce sync.Once
	tree     *Tree
	errTree  error
)

func repoTree(t *testing.T) *Tree {
	t.Helper()
	treeOnce.Do(func() { tree, errTree = LoadTree() })
	if errTree != nil {
		t.Fatal(errTree)
	}
	return tree
}

// eachWorld runs check on every mesh overlay in every Flagger state.
func eachWorld(t *testing.T, check func(t *testing.T, overlay string, w *World) []string) {
	for _, overlay := range meshOverlays {
		for _, st := range states {
			name := overlay[strings.LastIndex(overlay, "/")+1:] + "/canary-weight-" + strconv.Itoa(st.CanaryWeight)
			t.Run(name, func(t *testing.T) {
				w := NewWorld(t, repoTree(t), Options{Overlay: overlay, Flagger: st})
				for _, v := range check(t, overlay, w) {
					t.Error(v)
				}
			})
		}
	}
}

func TestMTLSStrict(t *testing.T) {
	eachWorld(t, func(t *testing.T, _ string, w *World) []string { return CheckMTLS(t, w) })
}

func TestAuthorization(t *testing.T) {
	eachWorld(t, func(t *testing.T, _ string, w *World) []string { return CheckAuthorization(t, w) })
}

func TestSelectorlessPoliciesAllowNoWrites(t *testing.T) {
	eachWorld(t, func(t *testing.T, _ string, w *World) []string { return CheckSelectorlessWrites(t, w) })
}

func TestBankRetriesAndTimeouts(t *testing.T) {
	eachWorld(t, func(t *testing.T, _ string, w *World) []string { return CheckRetries(t, w) })
}

func TestBankOutlierDetection(t *testing.T) {
	eachWorld(t, func(t *testing.T, _ string, w *World) []string { return CheckOutlierDetection(t, w) })
}

func TestFaultInjection(t *testing.T) {
	f, err := ConfiguredFault(repoTree(t))
	if err != nil {
		t.Fatal(err)
	}
	eachWorld(t, func(t *testing.T, overlay string, w *World) []string {
		if withFault[overlay] {
			return CheckFault(t, w, &f)
		}
		return CheckFault(t, w, nil)
	})
}

// The mesh job's client (.github/workflows/e2e.yml, job e2e-mesh) comes through Istio's ingress gateway (chart
// gateway, release istio-ingressgateway in istio-ingress: test/cluster/istio). On kind-mesh the Store's
// sidecars let that identity place, look up and list purchases and read the outbox, nothing else of the Store,
// nothing of the Bank; on the Minikube and production overlays the gateway is nobody.
func TestKindMeshGatewayAuthorization(t *testing.T) {
	gateway := Pod{Name: "istio-ingressgateway", Namespace: "istio-ingress", ServiceAccount: "istio-ingressgateway"}
	const purchase = "/v1/purchases/0b7e6c1e-6f7b-4c53-9d4c-0d1f5c2b9a10"
	probes := []struct {
		callee, method, path string
		allowed              bool
	}{
		{"store", "POST", "/v1/purchases", true},
		{"store", "GET", purchase, true},
		{"store", "GET", "/v1/outbox", true},
		{"store", "POST", "/v1/outbox", false},
		{"store", "DELETE", purchase, false},
		{"store", "GET", purchase + "/x", false},
		{"store", "GET", "/metrics", false},
		{"store", "GET", "/openapi.yaml", false},
		{"bank", "POST", "/v1/transactions", false},
		{"bank", "GET", "/v1/transactions/x", false},
	}
	for _, overlay := range []string{"kustomize/overlays/kind-mesh", "kustomize/overlays/minikube"} {
		t.Run(overlay[strings.LastIndex(overlay, "/")+1:], func(t *testing.T) {
			w := NewWorld(t, repoTree(t), Options{Overlay: overlay, Flagger: FlaggerState{CanaryWeight: 50}})
			for _, name := range Workloads {
				callee := w.Pod(t, Namespace, name)
				sim := w.Sidecar(t, callee)
				for _, p := range probes {
					if !strings.HasPrefix(name, p.callee) {
						continue
					}
					want := p.allowed && overlay == "kustomize/overlays/kind-mesh"
					req := Request{Principal: gateway.Principal(), Method: p.method, Path: p.path, Port: AppPort}
					d, err := Authorize(sim, callee, req)
					if err != nil {
						t.Errorf("%s: %s: %v", name, req, err)
					} else if d.Allowed != want {
						t.Errorf("%s: %s: allowed=%v (policy %q), want %v", name, req, d.Allowed, d.Policy, want)
					}
				}
			}
		})
	}
}
