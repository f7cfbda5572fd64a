package manifests

import (
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// brokenCase starts from a valid cluster render, breaks one thing, and expects a finding containing want.
// Every validation layer and every house rule has at least one case: a check that cannot fail proves nothing.
type brokenCase struct {
	name    string
	cluster string // "minikube" or "production" (the Flux cluster tree), or "e2e" (the overlay: no Flux tree yet)
	kind    string // object to break (first match by kind and name)
	obj     string
	mutate  func(m map[string]any)
	add     string // or: a YAML document to add to the set
	want    string
}

func set(path string, v any) func(map[string]any) {
	return func(m map[string]any) {
		if err := unstructured.SetNestedField(m, v, strings.Split(path, ".")...); err != nil {
			panic(err)
		}
	}
}

func del(path string) func(map[string]any) {
	return func(m map[string]any) { unstructured.RemoveNestedField(m, strings.Split(path, ".")...) }
}

// container0 edits the first container of a pod template spec.
func container0(f func(c map[string]any)) func(map[string]any) {
	return func(m map[string]any) {
		cs, _, _ := unstructured.NestedSlice(m, "spec", "template", "spec", "containers")
		f(cs[0].(map[string]any))
		_ = unstructured.SetNestedSlice(m, cs, "spec", "template", "spec", "containers")
	}
}

// annotate sets a pod template annotation (keys hold dots, which set would split on).
func annotate(key, value string) func(map[string]any) {
	return func(m map[string]any) {
		_ = unstructured.SetNestedField(m, value, "spec", "template", "metadata", "annotations", key)
	}
}

// label sets a metadata label.
func label(key, value string) func(map[string]any) {
	return func(m map[string]any) { _ = unstructured.SetNestedField(m, value, "metadata", "labels", key) }
}

func route0(f func(r map[string]any)) func(map[string]any) {
	return func(m map[string]any) {
		rs, _, _ := unstructured.NestedSlice(m, "spec", "http")
		f(rs[0].(map[string]any))
		_ = unstructured.SetNestedSlice(m, rs, "spec", "http")
	}
}

func firstDep(f func(d map[string]any)) func(map[string]any) {
	return func(m map[string]any) {
		ds, _, _ := unstructured.NestedSlice(m, "spec", "dependsOn")
		f(ds[0].(map[string]any))
		_ = unstructured.SetNestedSlice(m, ds, "spec", "dependsOn")
	}
}

var brokenCases = []brokenCase{
	// Layer 1: strict decoding into upstream Go types.
	{name: "decode: misspelled container field", cluster: "production", kind: "Deployment", obj: "bank",
		mutate: container0(func(c map[string]any) { c["imagePullPolice"] = "Always" }), want: `unknown field "spec.template.spec.containers[0].imagePullPolice"`},
	{name: "decode: wrong type", cluster: "production", kind: "Deployment", obj: "store",
		mutate: set("spec.revisionHistoryLimit", "five"), want: "decode: json: cannot unmarshal string"},
	{name: "decode: Istio spec unknown field (protojson)", cluster: "production", kind: "VirtualService", obj: "bank-root",
		mutate: route0(func(r map[string]any) { r["timeouts"] = "3s" }), want: `unknown field "timeouts"`},
	{name: "decode: Istio enum", cluster: "production", kind: "AuthorizationPolicy", obj: "bank-transactions-from-store",
		mutate: set("spec.action", "PERMIT"), want: "invalid value for enum"},
	{name: "decode: Flux field renamed", cluster: "production", kind: "Kustomization", obj: "apps",
		mutate: set("spec.healthcheck", true), want: `unknown field "spec.healthcheck"`},
	// Layer 2: CRD schema (pruning, OpenAPI) and CEL, from the upstream CRDs.
	{name: "schema: field the Go type has but the CRD prunes", cluster: "production", kind: "Canary", obj: "bank",
		mutate: set("spec.service.trafficPolicy.connectionPool.tcp", map[string]any{"maxConnections": int64(10)}), want: `unknown field "spec.service.trafficPolicy.connectionPool.tcp"`},
	{name: "schema: enum", cluster: "production", kind: "Cluster", obj: "bank-db",
		mutate: set("spec.postgresql.synchronous.method", "quorum"), want: `spec.postgresql.synchronous.method: Unsupported value: "quorum"`},
	{name: "schema: required field", cluster: "production", kind: "HelmRelease", obj: "flagger",
		mutate: del("spec.chart.spec.chart"), want: "spec.chart.spec.chart: Required value"},
	{name: "schema: schema-only kind", cluster: "production", kind: "ObjectStore", obj: "bank-db-backup",
		mutate: set("spec.configuration.destinationPaht", "s3://x"), want: `unknown field "spec.configuration.destinationPaht"`},
	{name: "CEL: CloudNativePG imageName with imageCatalogRef", cluster: "production", kind: "Cluster", obj: "store-db",
		mutate: set("spec.imageCatalogRef", map[string]any{"apiGroup": "postgresql.cnpg.io", "kind": "ImageCatalog", "name": "pg", "major": int64(17)}), want: "CEL: spec: Invalid value: imageName and imageCatalogRef are mutually exclusive"},
	{name: "CEL: HelmRelease chart and chartRef", cluster: "minikube", kind: "HelmRelease", obj: "kiali",
		mutate: set("spec.chartRef", map[string]any{"kind": "OCIRepository", "name": "kiali"}), want: "CEL: spec: Invalid value"},
	// Layer 3: house rules.
	{name: "replicas set under an HPA", cluster: "production", kind: "Deployment", obj: "bank",
		mutate: set("spec.replicas", int64(3)), want: "[replicas-owned-by-hpa]"},
	{name: "maxUnavailable 1", cluster: "production", kind: "Deployment", obj: "store",
		mutate: set("spec.strategy.rollingUpdate.maxUnavailable", int64(1)), want: "[rolling-update-zero-unavailable]"},
	{name: "readiness on /healthz", cluster: "minikube", kind: "Deployment", obj: "bank",
		mutate: container0(func(c map[string]any) {
			_ = unstructured.SetNestedField(c, "/healthz", "readinessProbe", "httpGet", "path")
		}), want: "[probes]"},
	{name: "writable root filesystem", cluster: "minikube", kind: "Job", obj: "bank-seed",
		mutate: container0(func(c map[string]any) { unstructured.RemoveNestedField(c, "securityContext", "readOnlyRootFilesystem") }), want: "[restricted-security-context]"},
	{name: "grace period shorter than shutdown", cluster: "production", kind: "Deployment", obj: "bank",
		mutate: set("spec.template.spec.terminationGracePeriodSeconds", int64(20)), want: "[shutdown-budget]"},
	{name: "Envoy drains before the app", cluster: "production", kind: "Deployment", obj: "store",
		mutate: func(m map[string]any) {
			_ = unstructured.SetNestedField(m, "holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 5s\n", "spec", "template", "metadata", "annotations", "proxy.istio.io/config")
		}, want: "Istio terminationDrainDuration 5s must exceed"},
	{name: "drain delay shorter than readiness detection", cluster: "production", kind: "ConfigMap", obj: "bank-config",
		mutate: set("data.SHUTDOWN_DRAIN_DELAY", "1s"), want: "must be shorter than SHUTDOWN_DRAIN_DELAY"},
	{name: "no zone spread", cluster: "production", kind: "Deployment", obj: "bank",
		mutate: del("spec.template.spec.topologySpreadConstraints"), want: "[topology-spread]"},
	{name: "latest tag", cluster: "minikube", kind: "Deployment", obj: "store",
		mutate: container0(func(c map[string]any) { c["image"] = "ghcr.io/txmesh/txmesh:latest" }), want: "[pinned-images]"},
	{name: "pull policy Always", cluster: "production", kind: "Deployment", obj: "store",
		mutate: container0(func(c map[string]any) { c["imagePullPolicy"] = "Always" }), want: "[image-pull-policy] Deployment txmesh/store container store: imagePullPolicy Always"},
	{name: "database pull policy Always", cluster: "production", kind: "Cluster", obj: "bank-db",
		mutate: set("spec.imagePullPolicy", "Always"), want: "[image-pull-policy] Cluster txmesh/bank-db: imagePullPolicy Always"},
	{name: "imported image on the default pull policy", cluster: "minikube", kind: "Job", obj: "bank-seed",
		mutate: container0(func(c map[string]any) { c["image"] = "txmesh.local/txmesh:0.1.0" }), want: "is imported into the nodes, not pullable"},
	{name: "HPA targets nothing", cluster: "production", kind: "HorizontalPodAutoscaler", obj: "store",
		mutate: set("spec.scaleTargetRef.name", "stor"), want: "[references-resolve]"},
	{name: "PDB misses Flagger's primary pods", cluster: "production", kind: "PodDisruptionBudget", obj: "bank",
		mutate: set("spec.selector", map[string]any{"matchLabels": map[string]any{"app": "bank"}}), want: "selects some but not all serving pods"},
	{name: "DATABASE_URL from the wrong secret", cluster: "production", kind: "Deployment", obj: "store",
		mutate: container0(func(c map[string]any) {
			env := c["env"].([]any)
			_ = unstructured.SetNestedField(env[0].(map[string]any), "bank-db-superuser", "valueFrom", "secretKeyRef", "name")
		}), want: "DATABASE_URL must come from secret <cluster>-app"},
	{name: "hand-written Flagger Service", cluster: "production",
		add: "apiVersion: v1\nkind: Service\nmetadata: {name: bank-primary, namespace: txmesh}\nspec:\n  selector: {app: bank-primary}\n  ports: [{port: 8080}]\n", want: "[flagger-owns-routing] Service txmesh/bank-primary is generated by Flagger"},
	{name: "second VirtualService for the Bank host", cluster: "minikube",
		add: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bank-faults, namespace: txmesh}\nspec:\n  hosts: [bank.txmesh.svc.cluster.local]\n  http:\n  - route:\n    - destination: {host: bank}\n", want: "host bank is claimed by several VirtualServices"},
	{name: "delegation with hosts", cluster: "production", kind: "Canary", obj: "bank",
		mutate: set("spec.service.hosts", []any{"bank.example.com"}), want: "delegation needs empty service.hosts"},
	{name: "root VirtualService forgotten", cluster: "production", kind: "VirtualService", obj: "bank-root",
		mutate: route0(func(r map[string]any) { _ = unstructured.SetNestedField(r, "other", "delegate", "name") }), want: "no root VirtualService delegates to it"},
	{name: "single database instance", cluster: "minikube", kind: "Cluster", obj: "bank-db",
		mutate: set("spec.instances", int64(1)), want: "[cnpg-ha] Cluster txmesh/bank-db: needs 3 instances"},
	{name: "durability preferred", cluster: "production", kind: "Cluster", obj: "store-db",
		mutate: set("spec.postgresql.synchronous.dataDurability", "preferred"), want: "[cnpg-ha]"},
	{name: "sidecar on database pods", cluster: "minikube", kind: "Cluster", obj: "store-db",
		mutate: del("spec.inheritedMetadata"), want: "must not get an Istio sidecar"},
	{name: "preferred anti-affinity with a node per instance", cluster: "production", kind: "Cluster", obj: "bank-db",
		mutate: set("spec.affinity.podAntiAffinityType", "preferred"), want: "podAntiAffinityType must be required: the environment guarantees 3 nodes for 3 instances"},
	{name: "production without WAL archiving", cluster: "production", kind: "Cluster", obj: "bank-db",
		mutate: del("spec.plugins"), want: "continuous WAL archiving"},
	{name: "fault injection in production", cluster: "production", kind: "VirtualService", obj: "bank-root",
		mutate: route0(func(r map[string]any) {
			r["fault"] = map[string]any{"abort": map[string]any{"httpStatus": int64(503), "percentage": map[string]any{"value": float64(1)}}}
		}), want: "[no-fault-injection-in-production]"},
	{name: "Store gives up before Envoy's retries", cluster: "production", kind: "ConfigMap", obj: "store-config",
		mutate: set("data.BANK_TIMEOUT", "3s"), want: "[store-outlasts-bank-route]"},
	// The e2e overlay: no mesh, the apps' own mTLS, images imported into the nodes, 3 nodes.
	{name: "e2e: two database instances", cluster: "e2e", kind: "Cluster", obj: "bank-db",
		mutate: set("spec.instances", int64(2)), want: "[cnpg-ha] Cluster txmesh/bank-db: needs 3 instances"},
	{name: "e2e: preferred anti-affinity on 3 nodes", cluster: "e2e", kind: "Cluster", obj: "store-db",
		mutate: set("spec.affinity.podAntiAffinityType", "preferred"), want: "podAntiAffinityType must be required: the environment guarantees 3 nodes for 3 instances"},
	{name: "e2e: pull policy Always", cluster: "e2e", kind: "Deployment", obj: "bank",
		mutate: container0(func(c map[string]any) { c["imagePullPolicy"] = "Always" }), want: "[image-pull-policy] Deployment txmesh/bank container bank: imagePullPolicy Always"},
	{name: "e2e: seed Job on the default pull policy", cluster: "e2e", kind: "Job", obj: "bank-seed",
		mutate: container0(func(c map[string]any) { delete(c, "imagePullPolicy") }), want: `image "txmesh.local/txmesh:e2e" is imported into the nodes, not pullable`},
	{name: "e2e: database image on the default pull policy", cluster: "e2e", kind: "Cluster", obj: "bank-db",
		mutate: del("spec.imagePullPolicy"), want: `image "txmesh.local/postgresql:15-bookworm" is imported into the nodes`},
	{name: "e2e: Istio proxy config without a mesh", cluster: "e2e", kind: "Deployment", obj: "store",
		mutate: annotate("proxy.istio.io/config", "holdApplicationUntilProxyStarts: true\nterminationDrainDuration: 35s\n"), want: "proxy.istio.io/config without a mesh"},
	{name: "e2e: grace period shorter than the app's own shutdown", cluster: "e2e", kind: "Deployment", obj: "bank",
		mutate: set("spec.template.spec.terminationGracePeriodSeconds", int64(25)), want: "[shutdown-budget] bank: terminationGracePeriodSeconds 25s must exceed"},
	{name: "e2e: readiness on the mTLS port", cluster: "e2e", kind: "Deployment", obj: "bank",
		mutate: container0(func(c map[string]any) {
			_ = unstructured.SetNestedField(c, "http", "readinessProbe", "httpGet", "port")
		}), want: "[probes] bank/bank readinessProbe targets port http, which requires a client certificate"},
	{name: "e2e: liveness on a port nothing listens on", cluster: "e2e", kind: "Deployment", obj: "store",
		mutate: container0(func(c map[string]any) {
			_ = unstructured.SetNestedField(c, int64(9091), "livenessProbe", "httpGet", "port")
		}), want: "[probes] store/store livenessProbe targets port 9091, which neither HTTP_ADDR nor ADMIN_ADDR listens on"},
	{name: "e2e: HTTPS probe on the management listener", cluster: "e2e", kind: "Deployment", obj: "store",
		mutate: container0(func(c map[string]any) {
			_ = unstructured.SetNestedField(c, "HTTPS", "startupProbe", "httpGet", "scheme")
		}), want: "[probes] store/store startupProbe targets port admin, over HTTPS, but the ADMIN_ADDR listener is plain HTTP"},
	{name: "e2e: Bank without client certificates", cluster: "e2e", kind: "ConfigMap", obj: "bank-config",
		mutate: del("data.TLS_CLIENT_CA_FILE"), want: "[app-mtls] bank/bank: without the mesh the app must serve TLS and require client certificates"},
	{name: "e2e: Store calls the Bank over http", cluster: "e2e", kind: "ConfigMap", obj: "store-config",
		mutate: set("data.BANK_URL", "http://bank.txmesh.svc.cluster.local:8080"), want: "[app-mtls] store/store: bank serves TLS: BANK_URL must be https"},
	{name: "e2e: Store without its client certificate", cluster: "e2e", kind: "ConfigMap", obj: "store-config",
		mutate: func(m map[string]any) { del("data.BANK_CLIENT_CERT_FILE")(m); del("data.BANK_CLIENT_KEY_FILE")(m) }, want: "bank requires a client certificate: set BANK_CLIENT_CERT_FILE"},
	{name: "e2e: key file outside the Secret mount", cluster: "e2e", kind: "ConfigMap", obj: "bank-config",
		mutate: set("data.TLS_KEY_FILE", "/etc/txmesh/tls.key"), want: "TLS_KEY_FILE /etc/txmesh/tls.key is not a key of a Secret volume mounted read-only"},
	{name: "e2e: certificates mounted writable", cluster: "e2e", kind: "Deployment", obj: "store",
		mutate: container0(func(c map[string]any) {
			mounts := c["volumeMounts"].([]any)
			for _, mt := range mounts {
				delete(mt.(map[string]any), "readOnly")
			}
		}), want: "BANK_CLIENT_KEY_FILE /etc/txmesh/tls/tls.key is not a key of a Secret volume mounted read-only"},
	{name: "e2e: metrics scraped on the mTLS port", cluster: "e2e", kind: "Deployment", obj: "bank",
		mutate: annotate("prometheus.io/port", "8080"), want: "[app-mtls] bank/bank: prometheus.io/port 8080 requires a client certificate"},
	{name: "e2e: management port not declared", cluster: "e2e", kind: "Deployment", obj: "bank",
		mutate: container0(func(c map[string]any) {
			c["ports"] = []any{map[string]any{"name": "http", "containerPort": int64(8080), "protocol": "TCP"}}
		}), want: "ADMIN_ADDR listens on 9090, which needs a container port named admin"},
	{name: "mesh: the app terminating TLS under Envoy", cluster: "minikube", kind: "ConfigMap", obj: "bank-config",
		mutate: set("data.TLS_CERT_FILE", "/etc/txmesh/tls/tls.crt"), want: "[app-mtls] bank/bank: in the mesh the app serves plain HTTP"},
	{name: "e2e: namespace with Istio injection", cluster: "e2e", kind: "Namespace", obj: "txmesh",
		mutate: label("istio-injection", "enabled"), want: "[meshless-namespace] Namespace txmesh asks Istio to inject sidecars"},
	{name: "e2e: audit on baseline", cluster: "e2e", kind: "Namespace", obj: "txmesh",
		mutate: label("pod-security.kubernetes.io/audit", "baseline"), want: `pod-security.kubernetes.io/audit must be restricted, not "baseline"`},
	{name: "e2e: Pod Security version not stated", cluster: "e2e", kind: "Namespace", obj: "txmesh",
		mutate: func(m map[string]any) {
			unstructured.RemoveNestedField(m, "metadata", "labels", "pod-security.kubernetes.io/enforce-version")
		}, want: "pod-security.kubernetes.io/enforce-version must name the policy version"},
	{name: "e2e: namespace left to mesh/", cluster: "e2e", kind: "Namespace", obj: "txmesh",
		mutate: set("metadata.name", "txmesh-e2e"), want: "[meshless-namespace] namespace txmesh is used but not created by the set"},
	{name: "e2e: PodMonitor without its CRD", cluster: "e2e",
		add: "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: bank-db, namespace: txmesh}\nspec:\n  selector:\n    matchLabels: {cnpg.io/cluster: bank-db}\n  podMetricsEndpoints: [{port: metrics}]\n", want: "[installed-crds] PodMonitor txmesh/bank-db: no CRD for PodMonitor.monitoring.coreos.com"},
	{name: "e2e: databases over the memory budget", cluster: "e2e", kind: "Cluster", obj: "store-db",
		mutate: set("spec.resources.limits.memory", "1Gi"), want: "[memory-budget] memory limits at minimum replicas total"},
	{name: "dependsOn a missing Kustomization", cluster: "production", kind: "Kustomization", obj: "apps",
		mutate: firstDep(func(d map[string]any) { d["name"] = "infra-config" }), want: "dependsOn infra-config, which does not exist"},
	{name: "no prune", cluster: "minikube", kind: "Kustomization", obj: "infra-configs",
		mutate: set("spec.prune", false), want: "must prune"},
	{name: "Kustomization path outside the repo", cluster: "minikube", kind: "Kustomization", obj: "apps",
		mutate: set("spec.path", "./kustomize/overlays/staging"), want: "path kustomize/overlays/staging does not exist"},
	{name: "chart version range", cluster: "production", kind: "HelmRelease", obj: "kiali",
		mutate: set("spec.chart.spec.version", ">=2.0.0"), want: "[helm-pinned]"},
	{name: "chart from a missing repository", cluster: "production", kind: "HelmRelease", obj: "cert-manager",
		mutate: set("spec.chart.spec.sourceRef.name", "jetstak"), want: "does not exist"},
	{name: "HelmRelease dependsOn a missing release", cluster: "production", kind: "HelmRelease", obj: "istiod",
		mutate: firstDep(func(d map[string]any) { d["name"] = "istio-bse" }), want: "dependsOn HelmRelease istio-system/istio-bse"},
	{name: "namespace nobody creates", cluster: "minikube", kind: "HelmRelease", obj: "flagger-loadtester",
		mutate: set("metadata.namespace", "flagger-test"), want: "[namespaces-exist]"},
	{name: "setter marker names another policy", cluster: "production", kind: "ImagePolicy", obj: "txmesh",
		mutate: set("metadata.name", "txmesh-app"), want: "marker names ImagePolicy flux-system/txmesh"},
	{name: "AuthorizationPolicy misses the primary pods", cluster: "production", kind: "AuthorizationPolicy", obj: "bank-transactions-from-store",
		mutate: set("spec.selector.matchLabels", map[string]any{"app": "bank"}), want: "[authz-and-metrics-resolve]"},
	{name: "Store Sidecar misses the primary pods", cluster: "minikube", kind: "Sidecar", obj: "store",
		mutate: set("spec.workloadSelector.labels", map[string]any{"app": "store"}), want: "Sidecar txmesh/store selector"},
	{name: "Store inbound pool with an unknown field", cluster: "production", kind: "Sidecar", obj: "store",
		mutate: set("spec.inboundConnectionPool.tcp.maxConnectionz", int64(256)), want: "maxConnectionz"},
	{name: "Canary metric template missing", cluster: "minikube", kind: "MetricTemplate", obj: "store-breaker-state",
		mutate: set("metadata.name", "store-breaker"), want: "MetricTemplate txmesh/store-breaker-state does not exist"},
	{name: "chart does not match the validated API", cluster: "production", kind: "HelmRelease", obj: "flagger",
		mutate: set("spec.chart.spec.version", "1.43.0"), want: "[chart-matches-validated-api]"},
}

var (
	pristineMu sync.Mutex
	pristine   = map[string][]Object{}
)

func clusterObjects(t *testing.T, env string) []Object {
	pristineMu.Lock()
	defer pristineMu.Unlock()
	if _, ok := pristine[env]; !ok {
		if dirExists("flux/clusters/" + env) {
			cr, err := RenderCluster("flux/clusters/" + env)
			if err != nil {
				t.Fatal(err)
			}
			pristine[env] = cr.All
		} else {
			objs, err := Render("kustomize/overlays/" + env)
			if err != nil {
				t.Fatal(err)
			}
			pristine[env] = objs
		}
	}
	var out []Object
	for _, o := range pristine[env] {
		out = append(out, Object{Source: o.Source, U: o.U.DeepCopy()})
	}
	return out
}

func TestBrokenFixturesFail(t *testing.T) {
	for _, bc := range brokenCases {
		t.Run(bc.name, func(t *testing.T) {
			objs := clusterObjects(t, bc.cluster)
			if bc.add != "" {
				extra, err := ParseYAML("fixture", []byte(bc.add))
				if err != nil {
					t.Fatal(err)
				}
				objs = append(objs, extra...)
			} else {
				hit := false
				for _, o := range objs {
					if o.U.GetKind() == bc.kind && o.U.GetName() == bc.obj {
						bc.mutate(o.U.Object)
						hit = true
						break
					}
				}
				if !hit {
					t.Fatalf("fixture target %s %s not found in the %s render", bc.kind, bc.obj, bc.cluster)
				}
			}
			findings := Check(objs)
			s := &Set{Name: bc.name, Objects: objs, Environment: Environments[bc.cluster]}
			rules := AppRules
			if dirExists("flux/clusters/" + bc.cluster) {
				rules = append(append([]Rule{}, AppRules...), ClusterRules...)
			}
			findings = append(findings, RunRules(s, rules)...)
			for _, f := range findings {
				if strings.Contains(f, bc.want) {
					return
				}
			}
			t.Errorf("expected a finding containing %q; got %d findings:\n%s", bc.want, len(findings), strings.Join(findings, "\n"))
		})
	}
}

// TestMeshlessNeedsNoIstioSettings: what only the mesh needs is not demanded without it (database pods carry
// no sidecar.istio.io/inject when nothing injects).
func TestMeshlessNeedsNoIstioSettings(t *testing.T) {
	objs := clusterObjects(t, "e2e")
	for _, o := range objs {
		if o.U.GetKind() == "Cluster" {
			unstructured.RemoveNestedField(o.U.Object, "spec", "inheritedMetadata")
		}
	}
	s := &Set{Name: "e2e without Istio labels", Objects: objs, Environment: Environments["e2e"]}
	for _, f := range append(Check(objs), RunRules(s, AppRules)...) {
		t.Error(f)
	}
}

// TestEveryRuleHasABrokenFixture keeps the table honest as rules are added.
func TestEveryRuleHasABrokenFixture(t *testing.T) {
	for _, r := range append(append([]Rule{}, AppRules...), ClusterRules...) {
		covered := false
		for _, bc := range brokenCases {
			if strings.Contains(bc.want, "["+r.ID+"]") {
				covered = true
			}
		}
		if !covered && !coveredByMessage[r.ID] {
			t.Errorf("rule %s has no broken fixture", r.ID)
		}
	}
}

// coveredByMessage: rules whose fixtures match on the message text rather than the [id] tag.
var coveredByMessage = map[string]bool{
	"references-resolve": true, "flagger-owns-routing": true, "cnpg-ha": true, "flux-graph": true,
	"helm-pinned": true, "image-automation": true, "authz-and-metrics-resolve": true, "shutdown-budget": true,
}
