package manifests

import (
	"path"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

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
// make e2e's host (10.250.0.1, the bridge of the throwaway cluster) or let the databases reach its API server
// there, to the kind network; a policy renamed or added there without the kind patch would keep an address
// that means nothing on kind, and the workflow's client (or the instance managers) would be refused. Every
// ipBlock of the kind render, in and out, must be the kind network.
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
		for _, dir := range [][2]string{{"ingress", "from"}, {"egress", "to"}} {
			rules, _, _ := unstructured.NestedSlice(o.U.Object, "spec", dir[0])
			for _, r := range rules {
				peers, _, _ := unstructured.NestedSlice(r.(map[string]any), dir[1])
				for _, f := range peers {
					cidr, ok, _ := unstructured.NestedString(f.(map[string]any), "ipBlock", "cidr")
					if !ok {
						continue
					}
					n++
					if cidr != "172.30.0.0/24" {
						t.Errorf("NetworkPolicy %s %s %s, want the kind network 172.30.0.0/24", o.U.GetName(), map[string]string{"ingress": "admits", "egress": "lets out to"}[dir[0]], cidr)
					}
				}
			}
		}
	}
	if n < 4 {
		t.Errorf("%d ipBlocks in the kind render, want the e2e client's, its metric reads', the pod proxy's and the API server's", n)
	}
}
