// Package istio is Istio on an attached kind cluster (cmd/e2e -attach … -mesh istio): nothing is built here
// (no Envoy build is obtainable on the development machine); .github/workflows/e2e.yml installs Istio from its
// upstream charts at Version, and this package names what the harness talks to and checks before it deploys.
package istio

import (
	"context"
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Version is the chart (and Istio) version of flux/infrastructure/controllers/base/istio.yaml, which the
// workflow's ISTIO_CHART repeats (a test keeps the three equal).
const Version = "1.31.4"

// The ingress gateway the workflow installs (chart `gateway`, release GatewayService in GatewayNamespace) and
// the host kustomize/overlays/kind-mesh binds the Store's route to on it: the e2e's client, outside the mesh,
// reaches the Store only through it.
const (
	GatewayNamespace = "istio-ingress"
	GatewayService   = "istio-ingressgateway"
	StoreHost        = "store.kind.test"
)

// MetricsPort and MetricsPath are the sidecar agent's merged endpoint: the app's own metrics (the
// prometheus.io annotations) with Envoy's, served in plain HTTP outside the mTLS listeners, as Prometheus
// scrapes them in the mesh.
const (
	MetricsPort = 15020
	MetricsPath = "/stats/prometheus"
)

// MetricsURL is the merged metrics endpoint of the pod at ip.
func MetricsURL(ip string) string {
	return "http://" + ip + ":" + strconv.Itoa(MetricsPort) + MetricsPath
}

// InjectionLabel is the namespace label that has istiod's webhook inject sidecars (mesh/namespace.yaml).
const InjectionLabel = "istio-injection"

// CheckInjected returns nil when namespace ns exists with sidecar injection enabled, else what to do: pods
// created without a sidecar would run outside the mesh, refused by every STRICT peer.
func CheckInjected(ctx context.Context, cs kubernetes.Interface, ns string) error {
	n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("namespace %s: %w (apply mesh/ first: kubectl apply -k flux/infrastructure/configs)", ns, err)
	}
	if v := n.Labels[InjectionLabel]; v != "enabled" {
		return fmt.Errorf("namespace %s has %s=%q, want enabled (mesh/namespace.yaml; apply mesh/ first: kubectl "+
			"apply -k flux/infrastructure/configs)", ns, InjectionLabel, v)
	}
	return nil
}

// GatewayURL is the plain-HTTP address of the ingress gateway's Service (ClusterIP, port 80), which the
// runner reaches through its route to the Service range.
func GatewayURL(ctx context.Context, cs kubernetes.Interface) (string, error) {
	svc, err := cs.CoreV1().Services(GatewayNamespace).Get(ctx, GatewayService, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("the ingress gateway: %w (the workflow installs chart gateway as %s in %s)", err,
			GatewayService, GatewayNamespace)
	}
	for _, p := range svc.Spec.Ports {
		if p.Port == 80 {
			return "http://" + svc.Spec.ClusterIP + ":80", nil
		}
	}
	return "", fmt.Errorf("service %s/%s has no port 80", GatewayNamespace, GatewayService)
}
