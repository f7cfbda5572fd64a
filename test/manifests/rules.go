package manifests

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
)

// Set is a group of rendered objects that are applied together, with what the rules need to know about where.
type Set struct {
	Name    string
	Objects []Object
	Environment
}

// Environment is what the rules need to know about where a set is deployed.
type Environment struct {
	Production bool // backups, WAL archiving, no fault injection
	// Mesh: the workloads run with Istio sidecars (mTLS, Envoy draining on shutdown, database pods kept out of
	// the mesh). Without it (e2e) the apps terminate mTLS themselves and no Istio-only setting applies.
	Mesh bool
	// MinNodes is how many nodes the environment guarantees: with one per database instance, two instances
	// sharing a node is a choice, not a necessity, so anti-affinity must be required.
	MinNodes int
	// CRDGroups: the API groups whose CRDs the cluster has before this set is applied (nil: not checked).
	CRDGroups []string
	// MemoryBudget: what the memory limits of everything the set runs, at minimum replicas, must fit in.
	MemoryBudget string
	// NoConfigs: the Flux tree has no infra-configs layer (apps depend on infra-controllers), because the
	// cluster lacks the CRDs that layer's objects need (make e2e: no Istio).
	NoConfigs bool
	// APIServer is the API server's address and port as a NetworkPolicy sees it: after kube-proxy translated
	// the `kubernetes` Service (10.96.0.1:443) to the endpoint the control plane really listens on.
	APIServer netip.AddrPort
	// BackupStorage stands for the object store the databases archive WAL and base backups to (zero: no
	// backups in this environment).
	BackupStorage netip.AddrPort
}

// Environments by overlay (and Flux cluster) name; every overlay must have an entry.
var Environments = map[string]Environment{
	// Minikube's API server listens on the control-plane node's port 8443 (docker driver: 192.168.49.2).
	"minikube": {Mesh: true, MinNodes: 1, APIServer: netip.MustParseAddrPort("192.168.49.2:8443")},
	// AKS (terraform/azure) serves the API server at the cluster's FQDN on 443, an address outside the cluster
	// that differs per cluster, as do the object store's (Azure Blob); documentation addresses stand for them.
	"production": {Production: true, Mesh: true, MinNodes: 3, APIServer: netip.MustParseAddrPort("203.0.113.10:443"),
		BackupStorage: netip.MustParseAddrPort("198.51.100.20:443")},
	"e2e": e2eEnvironment,
	// make e2e's CD block: the e2e overlay with Flagger's Canaries (kubernetes provider), applied by Flux.
	"e2e-cd": e2eEnvironment,
	// kind on a GitHub runner (.github/workflows/e2e.yml): e2e's overlay, its images pulled from a registry; the
	// API server is the control-plane node, the first address docker hands out in the kind network.
	"kind": {MinNodes: 3, CRDGroups: []string{"postgresql.cnpg.io"}, APIServer: netip.MustParseAddrPort("172.30.0.2:6443")},
	// kind on a GitHub runner inside the mesh (.github/workflows/e2e.yml, job e2e-mesh): Istio, Flagger and
	// kube-prometheus-stack from their charts, mesh/ applied first; the same API server as kind's.
	"kind-mesh": {Mesh: true, MinNodes: 3, CRDGroups: []string{"postgresql.cnpg.io", "networking.istio.io",
		"security.istio.io", "flagger.app", "monitoring.coreos.com"}, APIServer: netip.MustParseAddrPort("172.30.0.2:6443")},
}

// make e2e's API server runs on the host end of the nodes' bridge (test/cluster/kube: advertise address and
// secure port).
// The object store is the harness's versitygw (test/cluster/objectstore), on the host beside the API server
// (Service objectstore/objectstore translated to it), the Barman Cloud plugin's CRD installed with it.
var e2eEnvironment = Environment{MinNodes: 3, CRDGroups: []string{"postgresql.cnpg.io", "barmancloud.cnpg.io",
	"source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io", "image.toolkit.fluxcd.io", "flagger.app"},
	MemoryBudget: "4Gi", NoConfigs: true, APIServer: netip.MustParseAddrPort("10.250.0.1:6443"),
	BackupStorage: netip.MustParseAddrPort("10.250.0.1:7070")}

// EnvironmentOf returns the Environment of an overlay or Flux cluster directory (by its last element; an
// overlay with an add-on, "overlay+component", is the overlay's).
func EnvironmentOf(dir string) (Environment, error) {
	overlay, _, _ := strings.Cut(dir, "+")
	e, ok := Environments[path.Base(overlay)]
	if !ok {
		return Environment{}, fmt.Errorf("%s: no entry in Environments (rules.go): say whether it runs in the mesh and on how many nodes", dir)
	}
	return e, nil
}

// Rule is one house rule: a name quoted in every finding, why the rule exists (one line), the broken fixture
// it must catch, and the check.
type Rule struct {
	Name   string
	Why    string
	Broken Fixture
	Check  func(s *Set, r *Report)
}

// Finding is one violation: the rule, the object ("Kind namespace/name") and the field at fault, and what is
// wrong with it.
type Finding struct {
	Rule   string
	Object string
	Field  string
	Msg    string
}

func (f Finding) String() string {
	if f.Field == "" {
		return fmt.Sprintf("[%s] %s: %s", f.Rule, f.Object, f.Msg)
	}
	return fmt.Sprintf("[%s] %s %s: %s", f.Rule, f.Object, f.Field, f.Msg)
}

// Report collects the findings of one rule.
type Report struct {
	rule     string
	findings []Finding
}

// Add records a finding about the object with ID id ("Kind namespace/name") at field.
func (r *Report) Add(id, field, format string, a ...any) {
	r.findings = append(r.findings, Finding{Rule: r.rule, Object: id, Field: field, Msg: fmt.Sprintf(format, a...)})
}

// RunRules applies rules to a set and returns all findings.
func RunRules(s *Set, rules []Rule) []Finding {
	var out []Finding
	for _, rule := range rules {
		r := &Report{rule: rule.Name}
		rule.Check(s, r)
		out = append(out, r.findings...)
	}
	return out
}

// AppRules run over each kustomize overlay's output (and again over each cluster's union).
var AppRules = concat(workloadRules, tlsRules, callerRules, referenceRules, routingRules, cnpgRules, netpolRules,
	canaryRules, alertRules)

// ClusterRules run over the union of everything Flux applies to one cluster.
var ClusterRules = concat(fluxRules, meshRules)

func concat(lists ...[]Rule) []Rule {
	var out []Rule
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// id is an object's ID from its parts ("Kind namespace/name", as Object.ID).
func id(kind, ns, name string) string {
	if ns == "" {
		return kind + " " + name
	}
	return kind + " " + ns + "/" + name
}

// containerField is the path of a field of a pod template's container, named by the container's name.
func containerField(init bool, name string, field ...string) string {
	list := "containers"
	if init {
		list = "initContainers"
	}
	return strings.Join(append([]string{"spec.template.spec." + list + "[" + name + "]"}, field...), ".")
}

// envField is the path of an environment variable of a container (from env or a ConfigMap's envFrom).
func envField(container, key string) string {
	return containerField(false, container, "env["+key+"]")
}
