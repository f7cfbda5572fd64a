package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// steady: the system at rest under load. Checks: after 60 s every pod in the cluster is Ready, none of
// txmesh's restarted; each database's 3 instances on 3 nodes, bank and store spread over ≥ 2 nodes; in the
// mesh, every Bank and Store pod runs Istio's proxy.
var steady = scenario{
	name:  "steady",
	fault: "every pod Ready, probes passing, purchases flowing for 60 s",
	quiet: true,
	run:   steadyRun,
}

func steadyRun(ctx context.Context, e *env, r *Row) error {
	if err := sleepCtx(ctx, 60*time.Second); err != nil {
		return err
	}
	pods, err := e.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var notReady []string
	nodesOf := map[string]map[string]bool{}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		if !podReady(&p) {
			notReady = append(notReady, p.Namespace+"/"+p.Name)
		}
		for _, st := range p.Status.ContainerStatuses {
			if st.RestartCount > 0 && p.Namespace == namespace {
				notReady = append(notReady, fmt.Sprintf("%s/%s restarted %d times", p.Namespace, p.Name, st.RestartCount))
			}
		}
		app := p.Labels["app"] // Flagger's primaries: app=<app>-primary, app.kubernetes.io/name=<app>
		if n := p.Labels["app.kubernetes.io/name"]; n != "" && p.Namespace == namespace {
			app = n
		}
		if c := p.Labels["cnpg.io/cluster"]; c != "" {
			app = c
		}
		if nodesOf[app] == nil {
			nodesOf[app] = map[string]bool{}
		}
		nodesOf[app][p.Spec.NodeName] = true
	}
	if len(notReady) > 0 {
		return fmt.Errorf("not ready: %s", strings.Join(notReady, ", "))
	}
	r.Checks = append(r.Checks, fmt.Sprintf("%d pods Ready, none restarted", len(pods.Items)))
	for _, db := range []string{"bank-db", "store-db"} {
		if len(nodesOf[db]) != 3 {
			return fmt.Errorf("%s instances on %d nodes, want 3 (anti-affinity)", db, len(nodesOf[db]))
		}
	}
	for _, app := range []string{"bank", "store"} {
		if len(nodesOf[app]) < 2 {
			return fmt.Errorf("%s pods on %d node(s), want ≥ 2 (topology spread)", app, len(nodesOf[app]))
		}
	}
	r.Checks = append(r.Checks, "each database's 3 instances on 3 nodes; bank and store spread over ≥ 2 nodes")
	if e.s.Meshed() {
		var apps []corev1.Pod
		for _, app := range []string{"bank", "store"} {
			ps, err := e.podsOf(ctx, e.appSelector(app))
			if err != nil {
				return err
			}
			apps = append(apps, ps...)
		}
		if out := sidecarless(apps); len(apps) == 0 || len(out) > 0 {
			return fmt.Errorf("outside the mesh: %d app pods, without istio-proxy: %v", len(apps), out)
		}
		r.Checks = append(r.Checks, fmt.Sprintf("all %d Bank and Store pods run Istio's proxy", len(apps)))
	}
	e.cnpgStatus(ctx, "steady")
	return nil
}
