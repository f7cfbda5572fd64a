package manifests

import (
	"path"
	"sort"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// podLabelSets: the labels of every pod an overlay creates, by owner — Deployments' and Jobs' templates, and
// each CloudNativePG Cluster's instance pods (labelled cnpg.io/cluster=<name> and cnpg.io/podRole=instance
// by the operator).
func podLabelSets(s *Set) map[string]labels.Set {
	out := map[string]labels.Set{}
	for id, t := range podTemplates(s) {
		out[id] = labels.Set(t.Labels)
	}
	for _, o := range s.Objects {
		if o.U.GetKind() == "Cluster" && strings.HasPrefix(o.U.GetAPIVersion(), "postgresql.cnpg.io/") {
			out[o.ID()] = labels.Set{"cnpg.io/cluster": o.U.GetName(), "cnpg.io/podRole": "instance"}
		}
	}
	return out
}

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

// TestNetworkPoliciesSelectPods: in every overlay, each NetworkPolicy's podSelector selects a pod the overlay
// creates, and so does each peer podSelector of its own namespace (a peer with a namespaceSelector is another
// namespace's pods, not the overlay's). A typo in a label, or a policy left behind by a renamed app, fails
// here. The e2e overlay renders the component (make e2e enforces it).
func TestNetworkPoliciesSelectPods(t *testing.T) {
	dirs, err := Overlays()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		t.Run(d, func(t *testing.T) {
			objs, err := Render(d)
			if err != nil {
				t.Fatal(err)
			}
			s := &Set{Name: d, Objects: objs}
			pods := podLabelSets(s)
			n := 0
			for _, o := range s.kind("NetworkPolicy") {
				n++
				np, err := toTyped[networkingv1.NetworkPolicy](o)
				if err != nil {
					t.Fatal(err)
				}
				owners, err := selects(&np.Spec.PodSelector, pods)
				if err != nil {
					t.Fatalf("%s: %v", o.ID(), err)
				}
				if len(owners) == 0 {
					t.Errorf("%s: podSelector %v selects no pod of %s", o.ID(), np.Spec.PodSelector, d)
				}
				var peers []networkingv1.NetworkPolicyPeer
				for _, r := range np.Spec.Ingress {
					peers = append(peers, r.From...)
				}
				for _, r := range np.Spec.Egress {
					peers = append(peers, r.To...)
				}
				for i, p := range peers {
					if p.PodSelector == nil || p.NamespaceSelector != nil {
						continue
					}
					got, err := selects(p.PodSelector, pods)
					if err != nil {
						t.Fatalf("%s peer %d: %v", o.ID(), i, err)
					}
					if len(got) == 0 {
						t.Errorf("%s: peer podSelector %v selects no pod of %s", o.ID(), *p.PodSelector, d)
					}
				}
				t.Logf("%s selects %s", o.ID(), strings.Join(owners, ", "))
			}
			if path.Base(d) == "e2e" && n == 0 {
				t.Error("the e2e overlay renders no NetworkPolicy: make e2e's network-policies scenario needs the component")
			}
		})
	}
}

// TestKindPoliciesAdmitTheKindNetwork: overlays/kind rewrites, by name, the e2e overlay's policies that admit
// make e2e's host (10.250.0.1, the bridge of the throwaway cluster) to the kind network; a policy renamed or
// added there without the kind patch would keep an address that means nothing on kind, and the workflow's
// client would be refused. Every ipBlock of the kind render must be the kind network.
func TestKindPoliciesAdmitTheKindNetwork(t *testing.T) {
	objs, err := Render("kustomize/overlays/kind")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range objs {
		if o.U.GetKind() != "NetworkPolicy" {
			continue
		}
		rules, _, _ := unstructured.NestedSlice(o.U.Object, "spec", "ingress")
		for _, r := range rules {
			from, _, _ := unstructured.NestedSlice(r.(map[string]any), "from")
			for _, f := range from {
				cidr, ok, _ := unstructured.NestedString(f.(map[string]any), "ipBlock", "cidr")
				if !ok {
					continue
				}
				n++
				if cidr != "172.30.0.0/24" {
					t.Errorf("NetworkPolicy %s admits %s, want the kind network 172.30.0.0/24", o.U.GetName(), cidr)
				}
			}
		}
	}
	if n < 3 {
		t.Errorf("%d ipBlocks in the kind render, want the e2e client's, its metric reads' and the pod proxy's", n)
	}
}
