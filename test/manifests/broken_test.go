package manifests

import (
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Every validation layer and every house rule can fail: a check that cannot fail proves nothing. Each rule
// carries its own broken fixture (rules_*.go); the layers' fixtures and more fixtures for some rules are here.

// layerCases break what the per-object layers check: strict decoding into the upstream Go types, the upstream
// CRDs' schemas and CEL rules. Each expects a finding containing want.
var layerCases = []struct {
	name string
	fix  Fixture
	want string
}{
	// Layer 1: strict decoding into upstream Go types.
	{name: "decode: misspelled container field", fix: mutate(production, "Deployment", "bank", container0(func(c map[string]any) { c["imagePullPolice"] = "Always" })), want: `unknown field "spec.template.spec.containers[0].imagePullPolice"`},
	{name: "decode: wrong type", fix: mutate(production, "Deployment", "store", set("spec.revisionHistoryLimit", "five")), want: "decode: json: cannot unmarshal string"},
	{name: "decode: Istio spec unknown field (protojson)", fix: mutate(production, "VirtualService", "bank-root", route0(func(r map[string]any) { r["timeouts"] = "3s" })), want: `unknown field "timeouts"`},
	{name: "decode: Istio enum", fix: mutate(production, "AuthorizationPolicy", "bank-transactions-from-store", set("spec.action", "PERMIT")), want: "invalid value for enum"},
	{name: "decode: Flux field renamed", fix: mutate(production, "Kustomization", "apps", set("spec.healthcheck", true)), want: `unknown field "spec.healthcheck"`},
	// Layer 2: CRD schema (pruning, OpenAPI) and CEL, from the upstream CRDs.
	{name: "schema: field the Go type has but the CRD prunes", fix: mutate(production, "Canary", "bank", set("spec.service.trafficPolicy.connectionPool.tcp", map[string]any{"maxConnections": int64(10)})), want: `unknown field "spec.service.trafficPolicy.connectionPool.tcp"`},
	{name: "schema: enum", fix: mutate(production, "Cluster", "bank-db", set("spec.postgresql.synchronous.method", "quorum")), want: `spec.postgresql.synchronous.method: Unsupported value: "quorum"`},
	{name: "schema: required field", fix: mutate(production, "HelmRelease", "flagger", del("spec.chart.spec.chart")), want: "spec.chart.spec.chart: Required value"},
	{name: "schema: schema-only kind", fix: mutate(production, "ObjectStore", "bank-db-backup", set("spec.configuration.destinationPaht", "s3://x")), want: `unknown field "spec.configuration.destinationPaht"`},
	{name: "CEL: CloudNativePG imageName with imageCatalogRef", fix: mutate(production, "Cluster", "store-db", set("spec.imageCatalogRef", map[string]any{"apiGroup": "postgresql.cnpg.io", "kind": "ImageCatalog", "name": "pg", "major": int64(17)})), want: "CEL: spec: Invalid value: imageName and imageCatalogRef are mutually exclusive"},
	{name: "CEL: HelmRelease chart and chartRef", fix: mutate(minikube, "HelmRelease", "kiali", set("spec.chartRef", map[string]any{"kind": "OCIRepository", "name": "kiali"})), want: "CEL: spec: Invalid value"},
	// A field Istio's API does not have, in a spec the Go type accepts as raw JSON.
	{name: "Store inbound pool with an unknown field", fix: mutate(production, "Sidecar", "store", set("spec.inboundConnectionPool.tcp.maxConnectionz", int64(256))), want: "maxConnectionz"},
}

// moreRuleCases are further ways to break a rule (other environments, other objects): each must produce a
// finding of its rule containing want (other rules may fire too).
var moreRuleCases = []struct {
	name string
	rule string
	fix  Fixture
	want string
}{
	{"grace period shorter than the shutdown, in the mesh", "grace-period-covers-shutdown",
		mutate(production, "Deployment", "bank", set("spec.template.spec.terminationGracePeriodSeconds", int64(20))), "20s must exceed"},
	{"database pull policy Always", "no-pull-always",
		mutate(production, "Cluster", "bank-db", set("spec.imagePullPolicy", "Always")), "Cluster txmesh/bank-db spec.imagePullPolicy: Always"},
	{"e2e: pull policy Always", "no-pull-always",
		mutate(e2e, "Deployment", "bank", inContainer("Always", "imagePullPolicy")), "Deployment txmesh/bank spec.template.spec.containers[bank].imagePullPolicy: Always"},
	{"imported image on the default pull policy", "imported-image-not-pulled",
		mutate(minikube, "Job", "bank-seed", inContainer("txmesh.local/txmesh:0.1.0", "image")), `image "txmesh.local/txmesh:0.1.0" is imported into the nodes`},
	{"e2e: database image on the default pull policy", "imported-image-not-pulled",
		mutate(e2e, "Cluster", "bank-db", del("spec.imagePullPolicy")), `image "txmesh.local/postgresql:18-forky" is imported into the nodes`},
	{"single database instance", "cnpg-three-instances",
		mutate(minikube, "Cluster", "bank-db", set("spec.instances", int64(1))), "Cluster txmesh/bank-db spec.instances: 1: needs 3 instances"},
	{"e2e: two database instances", "cnpg-three-instances",
		mutate(e2e, "Cluster", "bank-db", set("spec.instances", int64(2))), "Cluster txmesh/bank-db spec.instances: 2: needs 3 instances"},
	// The Clusters before issue 22 part 5: smartShutdownTimeout, the update method and failoverQuorum stated,
	// the rest of what decides a failover left to the operator's defaults.
	{"the Clusters relying on the operator's failover defaults", "cnpg-explicit-failover-settings",
		mutate(production, "Cluster", "bank-db", del("spec.failoverDelay"), del("spec.switchoverDelay"), del("spec.stopDelay"),
			del("spec.primaryLease"), del("spec.probes")),
		"Cluster txmesh/bank-db spec.switchoverDelay: must be stated (the operator's default: 3600)"},
	{"minikube: the operator's smart shutdown", "cnpg-explicit-failover-settings",
		mutate(minikube, "Cluster", "store-db", del("spec.smartShutdownTimeout")),
		"Cluster txmesh/store-db spec.smartShutdownTimeout: must be stated (the operator's default: 180)"},
	{"e2e: failover without the quorum check", "cnpg-explicit-failover-settings",
		mutate(e2e, "Cluster", "bank-db", set("spec.postgresql.synchronous.failoverQuorum", false)),
		"Cluster txmesh/bank-db spec.postgresql.synchronous.failoverQuorum: false: must be true"},
	{"e2e: failoverQuorum left out", "cnpg-explicit-failover-settings",
		mutate(e2e, "Cluster", "store-db", del("spec.postgresql.synchronous.failoverQuorum")),
		"Cluster txmesh/store-db spec.postgresql.synchronous.failoverQuorum: must be stated"},
	{"e2e: preferred anti-affinity on 3 nodes", "cnpg-required-anti-affinity",
		mutate(e2e, "Cluster", "store-db", set("spec.affinity.podAntiAffinityType", "preferred")), "the environment guarantees 3 nodes for 3 instances"},
	{"e2e: readiness on the mTLS port", "probe-reaches-listener",
		mutate(e2e, "Deployment", "bank", inContainer("http", "readinessProbe", "httpGet", "port")),
		"containers[bank].readinessProbe.httpGet: targets port http, which requires a client certificate"},
	{"e2e: HTTPS probe on the management listener", "probe-reaches-listener",
		mutate(e2e, "Deployment", "store", inContainer("HTTPS", "startupProbe", "httpGet", "scheme")),
		"containers[store].startupProbe.httpGet: targets port admin, over HTTPS, but the ADMIN_ADDR listener is plain HTTP"},
	{"e2e: certificates mounted writable", "tls-files-from-secret",
		mutate(e2e, "Deployment", "store", container0(func(c map[string]any) {
			for _, mt := range c["volumeMounts"].([]any) {
				delete(mt.(map[string]any), "readOnly")
			}
		})), "env[BANK_CLIENT_KEY_FILE]: /etc/txmesh/tls/tls.key is not a key of a Secret volume mounted read-only"},
	{"e2e: management port not declared", "admin-port-declared",
		mutate(e2e, "Deployment", "bank", inContainer([]any{map[string]any{"name": "http", "containerPort": int64(8080), "protocol": "TCP"}}, "ports")),
		"ADMIN_ADDR listens on 9090, which needs a container port named admin"},
	{"e2e: the caller's identity from a sidecar that is not there", "caller-identity-source",
		mutate(e2eOverlay, "ConfigMap", "bank-config", set("data.CALLER_IDENTITY", "xfcc")), `"xfcc": without the mesh`},
	{"e2e overlay: no allowed callers", "bank-allows-callers",
		mutate(e2eOverlay, "ConfigMap", "bank-config", set("data.ALLOWED_CALLERS", " ; ")), "ALLOWED_CALLERS]: empty"},
	{"mesh: the Bank terminating TLS under Envoy", "plain-http-in-mesh",
		mutate(minikube, "ConfigMap", "bank-config", set("data.TLS_CERT_FILE", "/etc/txmesh/tls/tls.crt")), "in the mesh the app serves plain HTTP"},
	{"e2e: namespace left to mesh/, in the Flux tree", "meshless-namespace-created",
		mutate(e2e, "Namespace", "txmesh", set("metadata.name", "txmesh-e2e")), "Namespace txmesh: used by the set's objects but not created by the set"},
	{"dependsOn renamed to a missing Kustomization", "flux-depends-on-exists",
		mutate(production, "Kustomization", "apps", firstDep(func(d map[string]any) { d["name"] = "infra-config" })), "infra-config does not exist"},
	// The tree before the per-environment API ports: 443 and 6443 to anywhere, which Minikube's 8443 is not.
	{"minikube: the databases out on 443 and 6443 only", "netpol-database-reaches-apiserver",
		mutate(minikube, "NetworkPolicy", "databases-apiserver", set("spec.egress", []any{map[string]any{"ports": []any{
			map[string]any{"protocol": "TCP", "port": int64(443)}, map[string]any{"protocol": "TCP", "port": int64(6443)}}}})),
		"an instance of bank-db → the API server 192.168.49.2:8443 refused"},
	{"kind: make e2e's API server address left unpatched", "netpol-database-reaches-apiserver",
		mutate("kustomize/overlays/kind", "NetworkPolicy", "databases-e2e-apiserver", onlyTo("10.250.0.1/32", 6443)),
		"the API server 172.30.0.2:6443 refused"},
	{"production: the API server on 6443", "netpol-database-reaches-apiserver",
		mutate(production, "NetworkPolicy", "databases-https", egressPorts(6443)), "the API server 203.0.113.10:443 refused"},
	{"e2e: Store → bank-db instead of store-db", "netpol-no-foreign-database",
		mutate(e2eOverlay, "NetworkPolicy", "store-egress", egressPeer0(map[string]any{"matchLabels": map[string]any{"cnpg.io/cluster": "bank-db"}})),
		"Deployment txmesh/store: store → an instance of bank-db:5432 passes"},
	{"every pod of the namespace to the databases", "netpol-no-foreign-database",
		mutate(minikube, "NetworkPolicy", "allow-dns-and-istiod", func(m map[string]any) {
			rules, _, _ := unstructured.NestedSlice(m, "spec", "egress")
			rules = append(rules, map[string]any{"to": []any{map[string]any{"podSelector": map[string]any{"matchLabels": map[string]any{"cnpg.io/cluster": "store-db"}}}},
				"ports": []any{map[string]any{"protocol": "TCP", "port": int64(5432)}}})
			_ = unstructured.SetNestedSlice(m, rules, "spec", "egress")
		}), "an unlabelled pod of txmesh → an instance of store-db:5432 passes"},
	{"bank-db's instances out to store-db's", "netpol-no-foreign-database",
		mutate(production, "NetworkPolicy", "bank-db-instances", egressPeer0(map[string]any{"matchExpressions": []any{
			map[string]any{"key": "cnpg.io/cluster", "operator": "In", "values": []any{"bank-db", "store-db"}}}})),
		"an instance of bank-db → an instance of store-db:5432 passes"},
	{"the operator's peer without its pod selector is fine, another namespace is not", "netpol-operator-reaches-instances",
		mutate(e2e, "NetworkPolicy", "databases", operatorNamespace("flux-system")),
		"the CloudNativePG operator (cnpg-system) → an instance of store-db:8000 refused"},
	{"production: image automation scans a fork's repository", "image-tag-in-policy-range",
		mutate(production, "ImageRepository", "txmesh", set("spec.image", "ghcr.io/someone/txmesh")),
		"scans ghcr.io/someone/txmesh, but kustomize/overlays/production/kustomization.yaml images[ghcr.io/txmesh/txmesh] deploys ghcr.io/txmesh/txmesh"},
	{"minikube: release candidates only", "image-tag-in-policy-range",
		mutate(minikube, "ImagePolicy", "txmesh", set("spec.filterTags", map[string]any{"pattern": `^\d+\.\d+\.\d+-rc\.\d+$`})),
		"filters out kustomize/overlays/minikube/kustomization.yaml images[ghcr.io/txmesh/txmesh]'s tag 0.1.0"},
	{"the audit without its NetworkPolicy", "netpol-clients-reach-their-database",
		mutate(productionAudit, "NetworkPolicy", "txaudit-egress", del("spec.egress")),
		"Job txmesh/txaudit: job txaudit → an instance of bank-db:5432 refused although it holds credentials for bank-db"},
	{"the audit out to store-db only", "netpol-clients-reach-their-database",
		mutate(minikubeAudit, "NetworkPolicy", "txaudit-egress", egressPeer0(map[string]any{"matchLabels": map[string]any{"cnpg.io/cluster": "store-db"}})),
		"job txaudit → an instance of bank-db:5432 refused"},
	{"the audit allowed to escalate", "restricted-security-context",
		mutate(productionAudit, "Job", "txaudit", inContainer(true, "securityContext", "allowPrivilegeEscalation")),
		"Job txmesh/txaudit spec.template.spec.containers[txaudit].securityContext.allowPrivilegeEscalation: must be false"},
	{"the audit on a moving tag", "pinned-images",
		mutate(e2eOverlay+"+"+auditComponent, "Job", "txaudit", inContainer("ghcr.io/txmesh/txmesh:latest", "image")),
		"Job txmesh/txaudit"},
	{"the audit reading another secret", "database-url-from-cnpg-secret",
		mutate(productionAudit, "Job", "txaudit", inContainer([]any{map[string]any{"name": "DATABASE_URL", "valueFrom": map[string]any{
			"secretKeyRef": map[string]any{"name": "store-db-superuser", "key": "uri"}}}}, "env")),
		"Job txmesh/txaudit spec.template.spec.containers[txaudit].env[DATABASE_URL]"},
	// The webhooks of the tree before canary accounts: the load tester's on ACC-000001…ACC-000050.
	{"production: the load test on customer accounts", "canary-spends-canary-accounts",
		mutate(production, "Canary", "bank", webhookMeta(1, "cmd", strings.NewReplacer(`'CANARY-%06d' $(( (i % 10) + 1 ))`, `'ACC-%06d' $(( (i % 50) + 1 ))`))),
		"webhook load-test names ACC-%06d, not a canary account"},
	{"e2e: the harness's webhook on a customer account", "canary-spends-canary-accounts",
		mutate(e2e, "Canary", "bank", webhookMeta(2, "accounts", strings.NewReplacer("CANARY-000010", "ACC-000010"))),
		"webhook load-test names ACC-000010, not a canary account"},
	{"a customer account built from a shell variable", "canary-spends-canary-accounts",
		mutate(minikube, "Canary", "bank", webhookMeta(1, "cmd", strings.NewReplacer(`acc=$(printf 'CANARY-%06d' $(( (i % 10) + 1 )));`, `n=1; acc=ACC-00000$n;`))),
		"webhook load-test names ACC-00000$, not a canary account"},
	{"a webhook that posts money naming no account", "canary-spends-canary-accounts",
		mutate(minikube, "Canary", "bank", webhookMeta(1, "cmd", to(`curl -sS -X POST -H 'Content-Type: application/json' -d @/tmp/tx.json http://bank-canary.txmesh:8080/v1/transactions`))),
		"webhook load-test posts transactions or purchases but names no account"},
	{"production: the acceptance test on ACC-000001, which production never seeds", "canary-accounts-exist",
		mutate(production, "Canary", "bank", webhookMeta(0, "cmd", strings.NewReplacer("CANARY-000001", "ACC-000001"))),
		"webhook acceptance-test spends ACC-000001 (up to ACC-000001), but the set's bank seed Jobs create ACC-… accounts only up to 0 (--accounts)"},
	{"e2e: the seed Job without canary accounts", "canary-accounts-exist",
		mutate(e2e, "Job", "bank-seed", container0(func(c map[string]any) { c["args"] = replaceArg(c["args"], "--canary-accounts", "0") })),
		"webhook acceptance-test spends CANARY-000001 (up to CANARY-000001), but the set's bank seed Jobs create CANARY-… accounts only up to 0"},
	{"canary accounts over a range the rule cannot read", "canary-accounts-exist",
		mutate(minikube, "Canary", "bank", webhookMeta(1, "cmd", strings.NewReplacer(`$(( (i % 10) + 1 ))`, `$(shuf -i 1-10 -n 1)`))),
		"over a range this rule cannot read"},
	{"Store Sidecar misses the primary pods", "mesh-selectors-match-serving-pods",
		mutate(minikube, "Sidecar", "store", set("spec.workloadSelector.labels", map[string]any{"app": "store"})),
		"Sidecar txmesh/store spec.workloadSelector.labels"},
}

var (
	pristineMu sync.Mutex
	pristine   = map[string][]Object{}
)

// rendered returns a deep copy of a render: a Flux cluster directory with every Kustomization's path, an
// overlay, or an overlay with an add-on ("overlay+component"). Renders are cached: the fixtures break copies.
func rendered(t *testing.T, dir string) []Object {
	t.Helper()
	pristineMu.Lock()
	defer pristineMu.Unlock()
	if _, ok := pristine[dir]; !ok {
		if overlay, addOn, ok := strings.Cut(dir, "+"); ok {
			objs, err := RenderWithAddOn(overlay, addOn)
			if err != nil {
				t.Fatal(err)
			}
			pristine[dir] = objs
		} else if isCluster(dir) {
			cr, err := RenderCluster(dir)
			if err != nil {
				t.Fatal(err)
			}
			pristine[dir] = cr.All
		} else {
			objs, err := Render(dir)
			if err != nil {
				t.Fatal(err)
			}
			pristine[dir] = objs
		}
	}
	var out []Object
	for _, o := range pristine[dir] {
		out = append(out, Object{Source: o.Source, U: o.U.DeepCopy()})
	}
	return out
}

func isCluster(dir string) bool { return strings.HasPrefix(dir, "flux/clusters/") }

// broken applies a fixture and returns the per-object layers' findings and the findings of the rules that run
// on that render (app rules on an overlay; app and cluster rules on a cluster's union, as TestClusters).
func broken(t *testing.T, f Fixture) (layers []string, rules []Finding) {
	t.Helper()
	objs, err := f.Apply(rendered(t, f.Render))
	if err != nil {
		t.Fatal(err)
	}
	env, err := EnvironmentOf(f.Render)
	if err != nil {
		t.Fatal(err)
	}
	list := AppRules
	if isCluster(f.Render) {
		list = concat(AppRules, ClusterRules)
	}
	return Check(objs), RunRules(&Set{Name: f.Render, Objects: objs, Environment: env}, list)
}

// TestRuleFixtures: each rule's own fixture is a valid manifest (no decoding or schema finding) that this rule,
// and no other, reports.
func TestRuleFixtures(t *testing.T) {
	for _, rule := range concat(AppRules, ClusterRules) {
		t.Run(rule.Name, func(t *testing.T) {
			layers, findings := broken(t, rule.Broken)
			for _, l := range layers {
				t.Errorf("the fixture is not a valid manifest: %s", l)
			}
			caught := false
			for _, f := range findings {
				if f.Rule != rule.Name {
					t.Errorf("the fixture of %s also breaks another rule: %s", rule.Name, f)
				} else {
					caught = true
					t.Log(f)
				}
			}
			if !caught {
				t.Errorf("rule %s does not catch its own fixture", rule.Name)
			}
		})
	}
}

func TestMoreRuleFixtures(t *testing.T) {
	for _, c := range moreRuleCases {
		t.Run(c.name, func(t *testing.T) {
			_, findings := broken(t, c.fix)
			var all []string
			for _, f := range findings {
				if f.Rule == c.rule && strings.Contains(f.String(), c.want) {
					return
				}
				all = append(all, f.String())
			}
			t.Errorf("expected a finding of %s containing %q; got %d findings:\n%s", c.rule, c.want, len(all), strings.Join(all, "\n"))
		})
	}
}

func TestLayerFixtures(t *testing.T) {
	for _, c := range layerCases {
		t.Run(c.name, func(t *testing.T) {
			layers, _ := broken(t, c.fix)
			for _, l := range layers {
				if strings.Contains(l, c.want) {
					return
				}
			}
			t.Errorf("expected a finding containing %q; got %d:\n%s", c.want, len(layers), strings.Join(layers, "\n"))
		})
	}
}

// TestRulesAreNamed: every rule has a unique name, a one-line why and a fixture, and the extra fixtures name
// rules that exist.
func TestRulesAreNamed(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range concat(AppRules, ClusterRules) {
		switch {
		case r.Name == "" || strings.ContainsAny(r.Name, " []"):
			t.Errorf("rule %q: a name is one word in kebab case", r.Name)
		case seen[r.Name]:
			t.Errorf("rule %s is defined twice", r.Name)
		case r.Why == "" || strings.Contains(r.Why, "\n"):
			t.Errorf("rule %s: the why is one line", r.Name)
		case r.Broken.Render == "" || (r.Broken.Mutate == nil && r.Broken.Add == ""):
			t.Errorf("rule %s has no broken fixture", r.Name)
		}
		seen[r.Name] = true
	}
	for _, c := range moreRuleCases {
		if !seen[c.rule] {
			t.Errorf("fixture %q names no rule: %s", c.name, c.rule)
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("%d rules: %s", len(names), strings.Join(names, ", "))
}

// TestMeshlessNeedsNoIstioSettings: what only the mesh needs is not demanded without it (database pods carry
// no sidecar.istio.io/inject when nothing injects).
func TestMeshlessNeedsNoIstioSettings(t *testing.T) {
	objs := rendered(t, e2e)
	for _, o := range objs {
		if o.U.GetKind() == "Cluster" {
			unstructured.RemoveNestedField(o.U.Object, "spec", "inheritedMetadata")
		}
	}
	s := &Set{Name: "e2e without Istio labels", Objects: objs, Environment: Environments["e2e"]}
	for _, f := range Check(objs) {
		t.Error(f)
	}
	for _, f := range RunRules(s, AppRules) {
		t.Error(f)
	}
}
