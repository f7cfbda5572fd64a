package manifests

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// NetworkPolicies evaluated offline with Kubernetes' semantics (networking.k8s.io/v1): a pod is isolated for a
// direction when any policy of its namespace selects it and lists that policy type; an isolated pod's flow in
// that direction passes when some rule of a selecting policy matches the peer (podSelector in the policy's
// namespace, namespaceSelector, both, or ipBlock for addresses outside the pods) and the port. A flow passes
// when its source may send it (egress) and its destination may receive it (ingress).

// endpoint is one end of a flow: a pod (its namespace, labels and named ports) or an address no pod has (the
// API server, object storage).
type endpoint struct {
	name      string
	pod       bool
	namespace string
	labels    labels.Set
	ports     map[string]int32 // named container ports of a pod
	addr      netip.Addr       // not a pod
}

func podEndpoint(name, namespace string, l labels.Set, ports map[string]int32) endpoint {
	return endpoint{name: name, pod: true, namespace: namespace, labels: l, ports: ports}
}

func addrEndpoint(name string, a netip.Addr) endpoint { return endpoint{name: name, addr: a} }

// namespaceLabels are the labels the API server gives every namespace (kubernetes.io/metadata.name); the
// policies select namespaces by nothing else.
func (e endpoint) namespaceLabels() labels.Set {
	return labels.Set{"kubernetes.io/metadata.name": e.namespace}
}

// flow is a TCP connection attempt from one endpoint to another's port.
type flow struct {
	from, to endpoint
	port     int32
}

func (f flow) String() string {
	return fmt.Sprintf("%s → %s:%d", f.from.name, f.to.name, f.port)
}

// networkPolicies decodes the set's NetworkPolicies (one that does not decode is reported to r).
func networkPolicies(s *Set, r *Report) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, o := range s.kind("NetworkPolicy") {
		np, err := toTyped[networkingv1.NetworkPolicy](o)
		if err != nil {
			if r != nil {
				r.Add(o.ID(), "", "%v", err)
			}
			continue
		}
		if np.Namespace == "" {
			np.Namespace = o.U.GetNamespace()
		}
		out = append(out, np)
	}
	return out
}

// verdict says whether the flow passes the policies and, when it does not, which side refuses it and why.
func (f flow) verdict(nps []*networkingv1.NetworkPolicy) (bool, string) {
	if f.from.pod {
		if ok, why := side(nps, f.from, networkingv1.PolicyTypeEgress, func(np *networkingv1.NetworkPolicy) bool {
			for _, rule := range np.Spec.Egress {
				if peersMatch(rule.To, np.Namespace, f.to) && portsMatch(rule.Ports, f.port, f.to) {
					return true
				}
			}
			return false
		}); !ok {
			return false, "its egress " + why
		}
	}
	if f.to.pod {
		if ok, why := side(nps, f.to, networkingv1.PolicyTypeIngress, func(np *networkingv1.NetworkPolicy) bool {
			for _, rule := range np.Spec.Ingress {
				if peersMatch(rule.From, np.Namespace, f.from) && portsMatch(rule.Ports, f.port, f.to) {
					return true
				}
			}
			return false
		}); !ok {
			return false, "the destination's ingress " + why
		}
	}
	return true, ""
}

// side decides one direction for pod p: not isolated, or allowed by a rule of a selecting policy.
func side(nps []*networkingv1.NetworkPolicy, p endpoint, dir networkingv1.PolicyType, allows func(*networkingv1.NetworkPolicy) bool) (bool, string) {
	var isolating []string
	for _, np := range nps {
		if np.Namespace != p.namespace || !hasPolicyType(np, dir) || !selectorMatches(&np.Spec.PodSelector, p.labels) {
			continue
		}
		if allows(np) {
			return true, ""
		}
		isolating = append(isolating, np.Name)
	}
	if len(isolating) == 0 {
		return true, ""
	}
	sort.Strings(isolating)
	return false, "is isolated by " + strings.Join(isolating, ", ") + " and no rule of theirs admits it"
}

// hasPolicyType: the policy's effective types (without policyTypes: Ingress, and Egress when it has egress
// rules).
func hasPolicyType(np *networkingv1.NetworkPolicy, t networkingv1.PolicyType) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return t == networkingv1.PolicyTypeIngress || len(np.Spec.Egress) > 0
	}
	for _, pt := range np.Spec.PolicyTypes {
		if pt == t {
			return true
		}
	}
	return false
}

func selectorMatches(sel *metav1.LabelSelector, l labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(l)
}

// peersMatch: an empty peer list matches everything; otherwise one peer must match e.
func peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNamespace string, e endpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if peerMatches(p, policyNamespace, e) {
			return true
		}
	}
	return false
}

// peerMatches: an ipBlock matches addresses outside the pods (what it is for: implementations differ on pod
// addresses); selectors match pods — a podSelector alone in the policy's namespace, a namespaceSelector in the
// namespaces it selects.
func peerMatches(p networkingv1.NetworkPolicyPeer, policyNamespace string, e endpoint) bool {
	if p.IPBlock != nil {
		if e.pod {
			return false
		}
		block, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil || !block.Contains(e.addr) {
			return false
		}
		for _, ex := range p.IPBlock.Except {
			if x, err := netip.ParsePrefix(ex); err == nil && x.Contains(e.addr) {
				return false
			}
		}
		return true
	}
	if !e.pod {
		return false
	}
	if p.NamespaceSelector == nil {
		if e.namespace != policyNamespace {
			return false
		}
	} else if !selectorMatches(p.NamespaceSelector, e.namespaceLabels()) {
		return false
	}
	return p.PodSelector == nil || selectorMatches(p.PodSelector, e.labels)
}

// portsMatch: no ports means every port; a named port is the destination pod's container port of that name.
func portsMatch(ports []networkingv1.NetworkPolicyPort, port int32, dst endpoint) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if p.Port == nil {
			return true
		}
		want := p.Port.IntVal
		if p.Port.Type == intstr.String {
			n, ok := dst.ports[p.Port.StrVal]
			if !ok {
				continue
			}
			want = n
		}
		if port == want || (p.EndPort != nil && p.Port.Type == intstr.Int && port >= want && port <= *p.EndPort) {
			return true
		}
	}
	return false
}

// podLabelSets: the labels of every pod an overlay creates, by owner — Deployments' and Jobs' templates, and
// each CloudNativePG Cluster's instance pods (labelled cnpg.io/cluster=<name> and cnpg.io/podRole=instance
// by the operator).
func podLabelSets(s *Set) map[string]labels.Set {
	out := map[string]labels.Set{}
	for id, t := range podTemplates(s) {
		out[id] = labels.Set(t.Labels)
	}
	for _, o := range s.kind("Cluster") {
		if strings.HasPrefix(o.U.GetAPIVersion(), "postgresql.cnpg.io/") {
			out[o.ID()] = instanceLabels(o.U.GetName())
		}
	}
	return out
}

// instanceLabels are the labels CloudNativePG puts on a Cluster's instance pods that the policies use.
func instanceLabels(cluster string) labels.Set {
	return labels.Set{"cnpg.io/cluster": cluster, "cnpg.io/podRole": "instance"}
}

// instancePorts are an instance pod's named ports (CloudNativePG's security.md, "Exposed Ports").
var instancePorts = map[string]int32{"postgresql": 5432, "status": 8000, "metrics": 9187}

// selects returns the owners (podLabelSets keys) of the pods a selector selects, sorted.
func selects(sel *metav1.LabelSelector, pods map[string]labels.Set) ([]string, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, err
	}
	var owners []string
	for id, l := range pods {
		if s.Matches(l) {
			owners = append(owners, id)
		}
	}
	sort.Strings(owners)
	return owners, nil
}
