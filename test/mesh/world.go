package mesh

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config/mesh"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Namespace of the apps.
const Namespace = "txmesh"

// Pod is one modelled pod: an app replica (from a rendered or Flagger-generated Deployment) or a caller
// outside the apps (the load tester, Prometheus, intruders).
type Pod struct {
	Name, Namespace, ServiceAccount, IP string
	Labels                              map[string]string
	ports                               []corev1.ContainerPort
}

// Principal is the SPIFFE identity Istio gives the pod's certificate.
func (p Pod) Principal() string {
	return fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", p.Namespace, p.ServiceAccount)
}

// Callers are the pods that exist besides the apps, as the charts in flux/infrastructure create them, plus
// intruders: a pod in txmesh, one in the load tester's namespace and one elsewhere, each with an identity no
// policy names.
var Callers = []Pod{
	// flagger-loadtester 0.38.0 with the HelmRelease's values: rbac.create false and no serviceAccountName,
	// so the pod runs as the namespace's default service account; labels from the chart's deployment.yaml.
	{Name: "flagger-loadtester", Namespace: "loadtester", ServiceAccount: "default",
		Labels: map[string]string{"app": "loadtester", "app.kubernetes.io/name": "loadtester"}},
	{Name: "prometheus", Namespace: "monitoring", ServiceAccount: "kube-prometheus-stack-prometheus",
		Labels: map[string]string{"app.kubernetes.io/name": "prometheus"}},
	{Name: "intruder", Namespace: Namespace, ServiceAccount: "intruder", Labels: map[string]string{"app": "intruder"}},
	{Name: "intruder", Namespace: "loadtester", ServiceAccount: "intruder", Labels: map[string]string{"app": "intruder"}},
	{Name: "intruder", Namespace: "default", ServiceAccount: "default", Labels: map[string]string{"app": "intruder"}},
}

// World is a fake cluster: the rendered manifests, the objects Flagger generates for them, a pod per
// Deployment plus the Callers, and Istio's fake discovery server computing every sidecar's configuration.
type World struct {
	Rendered  []*unstructured.Unstructured // the overlay and mesh/
	Generated []*unstructured.Unstructured // Flagger's objects
	Pods      []Pod
	Server    *xds.FakeDiscoveryServer
}

// Options choose what a World is built from.
type Options struct {
	Overlay string // repository-relative kustomization of the apps
	Flagger FlaggerState
}

// NewWorld renders opts.Overlay and mesh/ from tree, runs Flagger on the result and starts the fake discovery
// server on all of it, with the mesh configuration of the istiod HelmRelease.
func NewWorld(t *testing.T, tree *Tree, opts Options) *World {
	t.Helper()
	w, k8s, istio, mc, err := buildWorld(tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	configs, _, err := crd.ParseInputs(istio)
	if err != nil {
		t.Fatal(err)
	}
	for i := range configs {
		// What istiod's Kubernetes config store sets on every object: short hosts (Flagger's "bank-primary")
		// resolve to <host>.<namespace>.svc.cluster.local only with it.
		configs[i].Domain = "cluster.local"
	}
	w.Server = xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		KubernetesObjects: k8s,
		Configs:           configs,
		MeshConfig:        mc,
	})
	return w
}

func buildWorld(tree *Tree, opts Options) (*World, []runtime.Object, string, *meshconfig.MeshConfig, error) {
	apps, err := tree.Render(opts.Overlay)
	if err != nil {
		return nil, nil, "", nil, err
	}
	policy, err := tree.Render("mesh")
	if err != nil {
		return nil, nil, "", nil, err
	}
	w := &World{Rendered: append(apps, policy...)}
	if w.Generated, err = Generate(w.Rendered, opts.Flagger); err != nil {
		return nil, nil, "", nil, err
	}
	mc, err := meshConfig(tree)
	if err != nil {
		return nil, nil, "", nil, err
	}
	all := append(append([]*unstructured.Unstructured{}, w.Rendered...), w.Generated...)

	var k8s []runtime.Object
	var istio []string
	namespaces := map[string]bool{}
	var services []*corev1.Service
	for _, o := range all {
		group := strings.Split(o.GetAPIVersion(), "/")[0]
		switch {
		case strings.HasSuffix(group, ".istio.io"):
			data, err := yaml.Marshal(o.Object)
			if err != nil {
				return nil, nil, "", nil, err
			}
			istio = append(istio, string(data))
		case o.GetKind() == "Namespace":
			ns := &corev1.Namespace{}
			if err := fromUnstructured(o, ns); err != nil {
				return nil, nil, "", nil, err
			}
			namespaces[ns.Name] = true
			k8s = append(k8s, ns)
		case o.GetKind() == "Service":
			svc := &corev1.Service{}
			if err := fromUnstructured(o, svc); err != nil {
				return nil, nil, "", nil, err
			}
			services = append(services, svc)
		case o.GetKind() == "Deployment" && o.GetNamespace() == Namespace:
			d := &appsv1.Deployment{}
			if err := fromUnstructured(o, d); err != nil {
				return nil, nil, "", nil, err
			}
			sa := d.Spec.Template.Spec.ServiceAccountName
			if sa == "" {
				sa = "default"
			}
			var ports []corev1.ContainerPort
			for _, c := range d.Spec.Template.Spec.Containers {
				ports = append(ports, c.Ports...)
			}
			w.Pods = append(w.Pods, Pod{Name: d.Name, Namespace: d.Namespace, ServiceAccount: sa,
				Labels: d.Spec.Template.Labels, ports: ports})
		}
	}
	w.Pods = append(w.Pods, Callers...)
	for i := range w.Pods {
		p := &w.Pods[i]
		p.IP = fmt.Sprintf("10.1.0.%d", i+10)
		if !namespaces[p.Namespace] {
			namespaces[p.Namespace] = true
			k8s = append(k8s, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace,
				Labels: map[string]string{"istio-injection": "enabled"}}})
		}
		k8s = append(k8s, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels},
			Spec: corev1.PodSpec{ServiceAccountName: p.ServiceAccount,
				Containers: []corev1.Container{{Name: "app", Ports: p.ports}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP, PodIPs: []corev1.PodIP{{IP: p.IP}},
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		})
	}
	sort.Slice(services, func(i, j int) bool { return services[i].Name < services[j].Name })
	for i, svc := range services {
		if svc.Spec.ClusterIP == "" {
			svc.Spec.ClusterIP = fmt.Sprintf("10.96.0.%d", i+10)
		}
		k8s = append(k8s, svc, w.endpointSlice(svc))
	}
	return w, k8s, strings.Join(istio, "\n---\n"), mc, nil
}

// endpointSlice is what the EndpointSlice controller would write for svc over the World's pods.
func (w *World) endpointSlice(svc *corev1.Service) *discoveryv1.EndpointSlice {
	ready := true
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	for _, p := range w.Pods {
		if p.Namespace != svc.Namespace || len(svc.Spec.Selector) == 0 || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.IP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: p.Name, Namespace: p.Namespace},
		})
	}
	for _, sp := range svc.Spec.Ports {
		port := targetPort(sp.TargetPort, sp.Port, w.portsOf(svc))
		name, proto := sp.Name, sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto,
			AppProtocol: sp.AppProtocol})
	}
	return es
}

func (w *World) portsOf(svc *corev1.Service) []corev1.ContainerPort {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	for _, p := range w.Pods {
		if p.Namespace == svc.Namespace && len(svc.Spec.Selector) > 0 && sel.Matches(labels.Set(p.Labels)) {
			return p.ports
		}
	}
	return nil
}

func targetPort(tp intstr.IntOrString, port int32, ports []corev1.ContainerPort) int32 {
	switch {
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal
	case tp.Type == intstr.String:
		for _, p := range ports {
			if p.Name == tp.StrVal {
				return p.ContainerPort
			}
		}
	}
	return port
}

// meshConfig is Istio's default mesh configuration with the istiod HelmRelease's values.meshConfig applied,
// as the istiod chart does.
func meshConfig(tree *Tree) (*meshconfig.MeshConfig, error) {
	const path = "flux/infrastructure/controllers/base/istio.yaml"
	data, err := tree.Read(path)
	if err != nil {
		return nil, err
	}
	for _, doc := range strings.Split(string(data), "\n---") {
		var hr struct {
			Metadata struct{ Name string }
			Spec     struct {
				Values struct {
					MeshConfig map[string]any `json:"meshConfig"`
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &hr); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if hr.Metadata.Name != "istiod" {
			continue
		}
		mcYAML, err := yaml.Marshal(hr.Spec.Values.MeshConfig)
		if err != nil {
			return nil, err
		}
		mc, err := mesh.ApplyMeshConfig(string(mcYAML), mesh.DefaultMeshConfig())
		if err != nil {
			return nil, fmt.Errorf("%s: meshConfig: %w", path, err)
		}
		return mc, nil
	}
	return nil, fmt.Errorf("%s: no HelmRelease istiod", path)
}

// Pod returns the modelled pod name in namespace ns.
func (w *World) Pod(t *testing.T, ns, name string) Pod {
	t.Helper()
	for _, p := range w.Pods {
		if p.Namespace == ns && p.Name == name {
			return p
		}
	}
	t.Fatalf("no pod %s/%s in the world (have %v)", ns, name, w.Pods)
	return Pod{}
}

// Sidecar computes the Envoy configuration (listeners, clusters, routes) istiod pushes to p's sidecar.
func (w *World) Sidecar(t *testing.T, p Pod) *simulation.Simulation {
	t.Helper()
	proxy := w.Server.SetupProxy(&model.Proxy{
		ID:              p.Name + "." + p.Namespace,
		IPAddresses:     []string{p.IP},
		ConfigNamespace: p.Namespace,
		Labels:          p.Labels,
		Metadata: &model.NodeMetadata{
			Namespace:      p.Namespace,
			Labels:         p.Labels,
			ServiceAccount: p.ServiceAccount,
			IstioVersion:   "1.31.0",
		},
	})
	return simulation.NewSimulation(t, w.Server, proxy)
}

// Objects returns every object of the World (rendered and generated) of kind.
func (w *World) Objects(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range append(append([]*unstructured.Unstructured{}, w.Rendered...), w.Generated...) {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}
