package mesh

import (
	"strings"
	"testing"
)

type edit struct{ path, old, new string }

// brokenCase breaks a copy of the manifests and names the check that must catch it, with a fragment of
// the violation it must report.
type brokenCase struct {
	name    string
	overlay string
	state   FlaggerState
	edits   []edit
	check   func(t *testing.T, w *World) []string
	want    string
}

const (
	policies   = "mesh/authorization-policies.yaml"
	canaryBank = "kustomize/components/canary/canary-bank.yaml"
	minikube   = "kustomize/overlays/minikube"
	production = "kustomize/overlays/production"
)

// The Bank's policy as it was before issue 20 (POST /v1/transactions only) and the selector-less load
// tester policy it had.
const (
	storePaths    = `paths: ["/v1/transactions", "/v1/transactions/batch"]`
	loadtesterOld = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: loadtester-to-canaries
  namespace: txmesh
spec:
  action: ALLOW
  rules:
    - from:
        - source:
            namespaces: ["loadtester"]
      to:
        - operation:
            methods: ["GET", "POST"]
            paths: ["/v1/transactions", "/v1/transactions/*", "/v1/accounts/*", "/v1/purchases", "/v1/purchases/*", "/v1/outbox", "/healthz", "/readyz"]
---
# Prometheus scrapes`
)

func brokenCases(t *testing.T) []brokenCase {
	f, err := ConfiguredFault(repoTree(t))
	if err != nil {
		t.Fatal(err)
	}
	faultCheck := func(want *Fault) func(t *testing.T, w *World) []string {
		return func(t *testing.T, w *World) []string { return CheckFault(t, w, want) }
	}
	return []brokenCase{
		{name: "Store principal missing", overlay: production,
			edits: []edit{{policies, `principals: ["cluster.local/ns/txmesh/sa/store"]`, `principals: ["cluster.local/ns/txmesh/sa/shop"]`}},
			check: CheckAuthorization,
			want:  "bank: POST /v1/transactions/batch :8080 from spiffe://cluster.local/ns/txmesh/sa/store: allowed=false"},
		{name: "batch path misspelled", overlay: production,
			edits: []edit{{policies, storePaths, `paths: ["/v1/transactions", "/v1/transaction/batch"]`}},
			check: CheckAuthorization,
			want:  "bank-primary: POST /v1/transactions/batch :8080 from spiffe://cluster.local/ns/txmesh/sa/store: allowed=false"},
		{name: "issue 20 part 1: the Store may POST /v1/transactions only", overlay: minikube,
			edits: []edit{{policies, storePaths, `paths: ["/v1/transactions"]`}},
			check: CheckAuthorization,
			want:  "POST /v1/transactions/batch :8080 from spiffe://cluster.local/ns/txmesh/sa/store: allowed=false"},
		{name: "the Store may read accounts", overlay: production,
			edits: []edit{{policies, `paths: ["/v1/transactions/{*}"]
---
# Flagger's`, `paths: ["/v1/transactions/{*}", "/v1/accounts/*"]
---
# Flagger's`}},
			check: CheckAuthorization,
			want:  "GET /v1/accounts/ACC-000001 :8080 from spiffe://cluster.local/ns/txmesh/sa/store: allowed=true"},
		{name: "GET lookups by prefix allow a second segment", overlay: production,
			edits: []edit{{policies, `paths: ["/v1/transactions/{*}"]
---
# Flagger's`, `paths: ["/v1/transactions/*"]
---
# Flagger's`}},
			check: CheckAuthorization,
			want:  "GET /v1/transactions/batch/x :8080 from spiffe://cluster.local/ns/txmesh/sa/store: allowed=true"},
		{name: "issue 20 part 2: selector-less load tester policy (authorization)", overlay: minikube,
			edits: []edit{{policies, "# Prometheus scrapes", loadtesterOld}},
			check: CheckAuthorization,
			want:  "POST /v1/purchases :8080 from spiffe://cluster.local/ns/loadtester/sa/intruder: allowed=true"},
		{name: "issue 20 part 2: selector-less load tester policy (writes)", overlay: minikube,
			edits: []edit{{policies, "# Prometheus scrapes", loadtesterOld}},
			check: CheckSelectorlessWrites,
			want:  "allowed by ns[txmesh]-policy[loadtester-to-canaries]"},
		{name: "load tester may post batches", overlay: production,
			edits: []edit{{policies, `            methods: ["POST"]
            paths: ["/v1/transactions"]`, `            methods: ["POST"]
            paths: ["/v1/transactions", "/v1/transactions/batch"]`}},
			check: CheckAuthorization,
			want:  "POST /v1/transactions/batch :8080 from spiffe://cluster.local/ns/loadtester/sa/default: allowed=true"},
		{name: "STRICT turned PERMISSIVE", overlay: production,
			edits: []edit{{"mesh/peer-authentication.yaml", "mode: STRICT", "mode: PERMISSIVE"}},
			check: CheckMTLS,
			want:  "bank-primary: a plaintext call to :8080 is accepted"},
		{name: "Bank DestinationRules without TLS", overlay: minikube, state: FlaggerState{CanaryWeight: 50},
			edits: []edit{{canaryBank, "mode: ISTIO_MUTUAL", "mode: DISABLE"}},
			check: CheckMTLS,
			want:  "outbound cluster outbound|8080||bank-canary.txmesh.svc.cluster.local: plaintext"},
		{name: "retries on every 5xx", overlay: production,
			edits: []edit{{canaryBank, "retryOn: reset,", "retryOn: 5xx,reset,"}},
			check: CheckRetries,
			want:  `retries on "5xx"`},
		{name: "retries on 409", overlay: minikube,
			edits: []edit{{canaryBank, "retryOn: reset,", "retryOn: retriable-4xx,reset,"}},
			check: CheckRetries,
			want:  `retries on "retriable-4xx"`},
		{name: "per-try timeout above BANK_TIMEOUT", overlay: production,
			edits: []edit{{canaryBank, "perTryTimeout: 1s", "perTryTimeout: 6s"}},
			check: CheckRetries,
			want:  "per-try timeout 6s, want > 0 and below the relay's BANK_TIMEOUT 5s"},
		{name: "route timeout above BANK_TIMEOUT", overlay: production,
			edits: []edit{{canaryBank, "timeout: 4s", "timeout: 8s"}},
			check: CheckRetries,
			want:  "route timeout 8s"},
		{name: "outlier detection dropped", overlay: production,
			edits: []edit{{canaryBank, "      outlierDetection:\n        consecutive5xxErrors: 5\n", "      outlierDetection:\n"}},
			check: CheckOutlierDetection,
			want:  "ejects on no consecutive errors"},
		{name: "fault component dropped from Minikube", overlay: minikube,
			edits: []edit{{minikube + "/kustomization.yaml", "  - ../../components/fault-injection\n", ""}},
			check: faultCheck(&f),
			want:  "has no fault"},
		{name: "fault component added to production", overlay: production, state: FlaggerState{CanaryWeight: 50},
			edits: []edit{{production + "/kustomization.yaml", "  - ../../components/canary\n",
				"  - ../../components/canary\n  - ../../components/fault-injection\n"}},
			check: faultCheck(nil),
			want:  "injects faults"},
	}
}

// TestBrokenManifestsFail proves every check able to fail: each case breaks a copy of the manifests and the
// check must report the violation.
func TestBrokenManifestsFail(t *testing.T) {
	for _, bc := range brokenCases(t) {
		t.Run(bc.name, func(t *testing.T) {
			tr, err := repoTree(t).Clone()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range bc.edits {
				if err := tr.Edit(e.path, e.old, e.new); err != nil {
					t.Fatal(err)
				}
			}
			w := NewWorld(t, tr, Options{Overlay: bc.overlay, Flagger: bc.state})
			got := bc.check(t, w)
			for _, v := range got {
				if strings.Contains(v, bc.want) {
					return
				}
			}
			t.Errorf("the check did not report %q; it reported %d violations: %q", bc.want, len(got), got)
		})
	}
}
