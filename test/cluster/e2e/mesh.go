package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/txmesh/txmesh/test/cluster/istio"
)

// meshSchedule is the run inside Istio's mesh (cmd/e2e -attach … -mesh istio, kustomize/overlays/kind-mesh):
// the rows whose subject is the mesh — the system at rest with sidecars, the Bank gone behind Envoy, Flagger's
// Istio provider shifting weights and promoting, and rolling back, and mesh/fault-injection's faults seen at
// the Store. The node faults, database failovers, drain and releases by hand are judged by make e2e and the
// workflow's unmeshed job; nothing in them depends on the sidecars, and each would cost the mesh job minutes.
// Rollback last: it leaves the Canary Failed (bank-primary serving the previous release), which is whole but
// would make the next release's analysis start from a failed one.
var meshSchedule = []scenario{
	steady,
	bankOutage,
	faultInjection,
	canaryPromote,
	canaryRollback,
}

// scheduleFor is the schedule of a run: the mesh's or make e2e's.
func scheduleFor(mesh bool) []scenario {
	if mesh {
		return meshSchedule
	}
	return schedule
}

// planFor is plan over the run's schedule; a name of the other schedule only is refused saying where it runs.
func planFor(mesh bool, names []string) ([]scenario, []string, error) {
	run, added, err := plan(scheduleFor(mesh), names)
	if err == nil {
		return run, added, nil
	}
	other := scheduleFor(!mesh)
	for _, n := range names {
		if !inSchedule(scheduleFor(mesh), n) && inSchedule(other, n) {
			if mesh {
				return nil, nil, fmt.Errorf("scenario %q does not run in the mesh (-mesh istio runs %s)", n,
					strings.Join(scenarioNames(meshSchedule), ","))
			}
			return nil, nil, fmt.Errorf("scenario %q runs only in the mesh: cmd/e2e -attach KUBECONFIG -registry "+
				"HOST:PORT -mesh istio (.github/workflows/e2e.yml, job e2e-mesh)", n)
		}
	}
	return nil, nil, err
}

func inSchedule(sched []scenario, name string) bool {
	for _, s := range sched {
		if s.name == name {
			return true
		}
	}
	return false
}

func scenarioNames(sched []scenario) []string {
	out := make([]string, 0, len(sched))
	for _, s := range sched {
		out = append(out, s.name)
	}
	return out
}

// appSelector selects an app's pods: `app`, which Flagger rewrites to <app>-primary on the primaries, or in
// the mesh (Flagger owns the apps there from the start) app.kubernetes.io/name, which selects primaries and
// canaries alike.
func (e *env) appSelector(app string) string {
	if e.s.Meshed() {
		return "app.kubernetes.io/name=" + app
	}
	return "app=" + app
}

// serving is the Deployment that serves an app: <app>-primary once Flagger owns it (the mesh), else <app>.
func (e *env) serving(app string) string {
	if e.s.Meshed() {
		return app + "-primary"
	}
	return app
}

// meshClient talks plain HTTP to the Store through Istio's ingress gateway: every request carries the host
// the overlay's Gateway and Flagger's VirtualService route (istio.StoreHost), whatever address it is sent to.
func meshClient() *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second, // as newClient's: above the Store's DB_RIDE_THROUGH
		Transport: hostHeader{host: istio.StoreHost, rt: &http.Transport{MaxIdleConnsPerHost: 16,
			IdleConnTimeout: 30 * time.Second}},
	}
}

type hostHeader struct {
	host string
	rt   http.RoundTripper
}

func (h hostHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Host = h.host
	return h.rt.RoundTrip(r)
}

// meshStoreURL is the Store's address for the e2e's client in the mesh: the ingress gateway's Service.
func (e *env) meshStoreURL(ctx context.Context) (string, error) { return istio.GatewayURL(ctx, e.cs) }

// sidecarless lists the app pods that run without Istio's proxy (a container or, as a native sidecar, an init
// container named istio-proxy): outside the mesh, whatever the namespace says.
func sidecarless(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		found := false
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			found = found || c.Name == "istio-proxy"
		}
		if !found {
			out = append(out, p.Name)
		}
	}
	return out
}
