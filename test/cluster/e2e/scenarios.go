package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/txmesh/txmesh/test/cluster/deploy"
)

// scenario is one row of the schedule.
type scenario struct {
	name, what     string
	negative       bool                                            // the negative control: must lose, and the audit must say so
	noClientErrors bool                                            // the scenario promises purchase clients see no 5xx and no failure
	before         func(ctx context.Context, e *env, r *Row) error // before the load starts (nil: nothing)
	run            func(ctx context.Context, e *env, r *Row) error
}

// scenarios is the schedule, in order: each leaves the system whole for the next (the runner waits for it).
func scenarios() []scenario {
	return []scenario{
		{name: "steady", what: "every pod Ready, probes passing, purchases flowing for 60 s", run: steady},
		{name: "metrics", what: "every query of the Grafana dashboard answered with data by the cluster's Prometheus after the load",
			run: dashboardMetrics},
		{name: "terraform", what: "OpenTofu applies terraform/kubernetes (the production StorageClass, kubectl provider) to the cluster, plans no change, destroys",
			run: terraformApply},
		{name: "network-policies", what: "NetworkPolicies enforced (kube-network-policies): the flows the system needs work under load, the others are refused",
			run: networkPolicies},
		{name: "bank-outage", what: "every Bank pod gone for 75 s: the Store keeps accepting, the breakers open; Bank back: drained",
			run: bankOutage},
		{name: "bank-db-failover", what: "bank-db primary: kill -9 of PostgreSQL from its node, then deletion of the primary pod",
			run: dbFailover("bank-db")},
		{name: "store-db-failover", what: "store-db primary (the outbox's database): kill -9 from its node, then pod deletion",
			run: dbFailover("store-db")},
		{name: "node-kill", what: "the node holding the bank-db primary loses power (every process killed), boots again after 90 s",
			run: nodeFailure(false)},
		{name: "node-cut", what: "the node holding both databases' primaries is cut off (its link down) for 90 s, then reconnected",
			run: nodeFailure(true)},
		{name: "drain", what: "kubectl drain of the node holding both databases' primaries under load; PDBs, CNPG switchovers",
			noClientErrors: true, run: drain},
		{name: "rolling-update", what: "a new image tag for the Bank and the Store, rolled out under load",
			noClientErrors: true, run: rollingUpdate},
		{name: "bad-release", what: "a release whose Bank configuration names a CA file that does not exist: stalls, undone",
			noClientErrors: true, run: badRelease},
		// Continuous delivery (e2e/cd.go) after the scenarios that change the deployment by hand, which Flux
		// would revert; the negative control, whose loss stays in the databases, last (it suspends Flux).
		{name: "cd-bootstrap", what: "txmesh's namespace emptied; Flux and Flagger installed, the checkout in the Git server: Flux deploys everything, the canaries initialised",
			before: cdEmpty, run: cdBootstrap},
		{name: "cd-drift", what: "a hand edit of a Flux-owned object (hpa/store minReplicas) is reverted by Flux",
			noClientErrors: true, run: cdDrift},
		{name: "cd-release", what: "tag 1.0.1 pushed to the registry: image automation commits it, Flux applies it, Flagger analyses and promotes",
			noClientErrors: true, run: cdRelease},
		{name: "cd-bad-release", what: "a commit sets the Bank's client CA to a wrong file: Flagger's checks fail, automatic rollback; the revert promoted",
			noClientErrors: true, run: cdBadRelease},
		{name: "negative-control", negative: true,
			what: "bank-db switched to asynchronous replication, WAL shipping blocked, the primary's node cut: must lose",
			run:  negativeControl},
	}
}

func steady(ctx context.Context, e *env, r *Row) error {
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
		app := p.Labels["app"]
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
	e.cnpgStatus(ctx, "steady")
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func bankOutage(ctx context.Context, e *env, r *Row) error {
	if err := e.scale(ctx, "bank", 0); err != nil {
		return err
	}
	t0 := time.Now()
	for {
		pods, err := e.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=bank"})
		if err == nil && len(pods.Items) == 0 {
			break
		}
		if time.Since(t0) > 2*time.Minute {
			return fmt.Errorf("bank pods still there 2 min after scaling to 0")
		}
		time.Sleep(500 * time.Millisecond)
	}
	gone := time.Now()
	var maxBacklog int64
	breakerOpen := map[string]bool{}
	unread := map[string]error{} // pods whose last read of the breaker state failed
	for time.Since(gone) < 75*time.Second {
		if o, err := e.outbox(ctx); err == nil {
			maxBacklog = max(maxBacklog, o.Backlog)
		}
		stores, _ := e.podsOf(ctx, "app=store")
		for _, p := range stores {
			v, err := metric(ctx, p.Status.PodIP, "store_breaker_state")
			if err != nil {
				unread[p.Name] = err
				continue
			}
			delete(unread, p.Name)
			if v == 2 {
				breakerOpen[p.Name] = true
			}
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
	stores, err := e.podsOf(ctx, "app=store")
	if err != nil {
		return err
	}
	r.Times["bank_gone"] = time.Since(gone).Seconds()
	if err := e.scale(ctx, "bank", 2); err != nil {
		return err
	}
	back := time.Now()
	if err := e.s.Apply.Wait(ctx, deploy.Deployments, namespace, "bank", 3*time.Minute, deploy.DeploymentAvailable); err != nil {
		return err
	}
	drain, err := e.waitDrained(ctx, 5*time.Minute)
	if err != nil {
		return err
	}
	r.Times["bank_back_to_drained"] = time.Since(back).Seconds()
	r.Times["drain_after_ready"] = drain.Seconds()
	r.Checks = append(r.Checks, fmt.Sprintf("backlog grew to %d while the Bank was gone; breaker open on %d of %d Store pods; "+
		"drained %.1f s after the Bank was back", maxBacklog, len(breakerOpen), len(stores), time.Since(back).Seconds()))
	if maxBacklog < 100 {
		return fmt.Errorf("backlog only reached %d: the Store did not keep accepting", maxBacklog)
	}
	if len(breakerOpen) < len(stores) {
		for pod, err := range unread {
			return fmt.Errorf("breaker open on %d of %d Store pods; the state of %s unreadable: %v",
				len(breakerOpen), len(stores), pod, err.Error())
		}
		return fmt.Errorf("breaker open on %d of %d Store pods", len(breakerOpen), len(stores))
	}
	return nil
}

// waitPrimaryBack waits until the cluster has a working primary again after a fault of p: another instance
// promoted, or — PostgreSQL killed but its pod alive — the same instance restarted in place (the instance
// manager exits with PostgreSQL, the kubelet restarts it, crash recovery replays the WAL it had fsynced)
// before the operator decided on a failover.
func (e *env) waitPrimaryBack(ctx context.Context, cluster string, p cnpgPrimary, d time.Duration) (string, string, time.Time, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		cur, err := e.primary(ctx, cluster)
		if err == nil && cur.Pod != p.Pod {
			return cur.Pod, "failover, promoted", time.Now(), nil
		}
		if err == nil && cur.ContainerID != "" && cur.ContainerID != p.ContainerID {
			if pod, err := e.cs.CoreV1().Pods(namespace).Get(ctx, p.Pod, metav1.GetOptions{}); err == nil && podReady(pod) {
				return cur.Pod, "restarted in place as primary", time.Now(), nil
			}
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return "", "", time.Time{}, err
		}
	}
	return "", "", time.Time{}, fmt.Errorf("%s: no working primary within %s of the fault of %s", cluster, d, p.Pod)
}

// dbFailover kills the primary's PostgreSQL from its node, waits for the cluster to be whole, then deletes the
// primary pod.
func dbFailover(cluster string) func(ctx context.Context, e *env, r *Row) error {
	return func(ctx context.Context, e *env, r *Row) error {
		w := e.watchCommits(ctx)
		defer w.close()
		if err := sleepCtx(ctx, 10*time.Second); err != nil {
			return err
		}
		for _, how := range []string{"kill", "delete"} {
			p, err := e.primary(ctx, cluster)
			if err != nil {
				return err
			}
			t := time.Now()
			if how == "kill" {
				err = e.killPostmaster(p)
			} else {
				err = e.cs.CoreV1().Pods(namespace).Delete(ctx, p.Pod, metav1.DeleteOptions{})
			}
			if err != nil {
				return err
			}
			e.logf("%s: %s of %s on %s", cluster, how, p.Pod, p.Node)
			newP, outcome, at, err := e.waitPrimaryBack(ctx, cluster, p, 5*time.Minute)
			if err != nil {
				return err
			}
			r.Times[how+"_to_primary"] = at.Sub(t).Seconds()
			if err := e.s.WaitHealthy(ctx, 5*time.Minute); err != nil {
				return err
			}
			if err := sleepCtx(ctx, 5*time.Second); err != nil {
				return err
			}
			if d, ok := w.firstAfter(t); ok {
				r.Times[how+"_to_first_bank_commit"] = d.Seconds()
			}
			r.Times[how+"_longest_bank_gap"] = w.longestGap(t.Add(-2*time.Second), time.Now()).Seconds()
			r.Checks = append(r.Checks, fmt.Sprintf("%s %s (on %s) → %s: %s after %.1f s", how, p.Pod, p.Node, newP,
				outcome, at.Sub(t).Seconds()))
		}
		e.cnpgStatus(ctx, cluster)
		return nil
	}
}

// nodeFailure kills (or cuts off) the node holding the bank-db primary, measures the failover, brings the
// node back after 90 s and waits for it to rejoin.
func nodeFailure(cut bool) func(ctx context.Context, e *env, r *Row) error {
	return func(ctx context.Context, e *env, r *Row) error {
		w := e.watchCommits(ctx)
		defer w.close()
		if err := sleepCtx(ctx, 10*time.Second); err != nil {
			return err
		}
		p, err := e.primary(ctx, "bank-db")
		if err != nil {
			return err
		}
		if cut {
			// The worst case for a partition: both primaries behind it, each still reachable by the apps on
			// its own node, neither able to reach a synchronous standby.
			if err := e.colocatePrimary(ctx, "store-db", p.Node); err != nil {
				return err
			}
			r.Checks = append(r.Checks, "store-db's primary switched over to "+p.Node+", beside bank-db's")
		}
		t := time.Now()
		if cut {
			err = e.c.CutNode(p.Node)
		} else {
			err = e.c.KillNode(p.Node)
		}
		if err != nil {
			return err
		}
		e.logf("node %s (bank-db primary %s) %s", p.Node, p.Pod, map[bool]string{true: "cut off", false: "killed"}[cut])
		newP, at, err := e.waitPrimaryChange(ctx, "bank-db", p.Pod, 4*time.Minute)
		if err != nil {
			return err
		}
		r.Times["fault_to_new_primary"] = at.Sub(t).Seconds()
		if err := e.c.WaitNodeReady(ctx, p.Node, false, 2*time.Minute); err != nil {
			return err
		}
		r.Times["fault_to_node_not_ready"] = time.Since(t).Seconds()
		if rest := 90*time.Second - time.Since(t); rest > 0 {
			if err := sleepCtx(ctx, rest); err != nil {
				return err
			}
		}
		moved, err := e.appsOffNode(ctx, p.Node)
		if err != nil {
			return err
		}
		if d, ok := w.firstAfter(t); ok {
			r.Times["fault_to_first_bank_commit"] = d.Seconds()
		}
		back := time.Now()
		if cut {
			err = e.c.HealNode(p.Node)
		} else {
			err = e.c.RebootNode(ctx, p.Node)
		}
		if err != nil {
			return err
		}
		if err := e.c.WaitNodeReady(ctx, p.Node, true, 3*time.Minute); err != nil {
			return err
		}
		if err := e.s.WaitHealthy(ctx, 6*time.Minute); err != nil {
			return err
		}
		r.Times["back_to_rejoined"] = time.Since(back).Seconds()
		r.Checks = append(r.Checks, fmt.Sprintf("%s promoted %.1f s after the fault; %s; the node rejoined and bank-db "+
			"has 3 ready instances %.0f s after it came back", newP, at.Sub(t).Seconds(), moved, time.Since(back).Seconds()))
		e.cnpgStatus(ctx, r.Name)
		return nil
	}
}

// colocatePrimary switches cluster's primary over to its instance on node (kubectl cnpg promote), if it is
// not there already, and waits for the cluster to be healthy.
func (e *env) colocatePrimary(ctx context.Context, cluster, node string) error {
	p, err := e.primary(ctx, cluster)
	if err != nil || p.Node == node {
		return err
	}
	pods, err := e.podsOf(ctx, "cnpg.io/cluster="+cluster+",cnpg.io/podRole=instance")
	if err != nil {
		return err
	}
	for _, pod := range pods {
		if pod.Spec.NodeName != node {
			continue
		}
		if _, err := e.kubectl(ctx, "kubectl-cnpg", "promote", cluster, pod.Name, "-n", namespace); err != nil {
			return err
		}
		if _, _, err := e.waitPrimaryChange(ctx, cluster, p.Pod, 2*time.Minute); err != nil {
			return err
		}
		return e.s.WaitHealthy(ctx, 3*time.Minute)
	}
	return fmt.Errorf("%s has no instance on %s", cluster, node)
}

// appsOffNode checks that the app pods left the failed node (evicted after the 30 s toleration of the
// node's unreachable taint) and run elsewhere.
func (e *env) appsOffNode(ctx context.Context, node string) (string, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var on []string
		ready := map[string]int{}
		for _, app := range []string{"bank", "store"} {
			pods, err := e.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err != nil {
				return "", err
			}
			for _, p := range pods.Items {
				if p.Spec.NodeName == node && p.DeletionTimestamp == nil {
					on = append(on, p.Name)
				}
				if p.Spec.NodeName != node && podReady(&p) {
					ready[app]++
				}
			}
		}
		if len(on) == 0 && ready["bank"] >= 2 && ready["store"] >= 2 {
			return fmt.Sprintf("bank and store rescheduled off %s (%d and %d ready elsewhere)", node, ready["bank"],
				ready["store"]), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("app pods still on %s or not ready elsewhere: on node %v, ready %v", node, on, ready)
		}
		time.Sleep(2 * time.Second)
	}
}

func drain(ctx context.Context, e *env, r *Row) error {
	p, err := e.primary(ctx, "bank-db")
	if err != nil {
		return err
	}
	bank, store := e.watchCommits(ctx), e.watchCounter(ctx, "app=store", "store_purchases_created_total")
	defer bank.close()
	defer store.close()
	// Both primaries on the drained node: two switchovers under load, the Store's included, and still no
	// client may see an error (the promotion of the store-db instance there is a switchover too).
	t0 := time.Now()
	if err := e.colocatePrimary(ctx, "store-db", p.Node); err != nil {
		return err
	}
	if time.Since(t0) > time.Second {
		r.Times["promote_longest_store_create_gap"] = store.longestGap(t0, time.Now()).Seconds()
	}
	sp, err := e.primary(ctx, "store-db")
	if err != nil {
		return err
	}
	t := time.Now()
	if _, err := e.kubectl(ctx, "kubectl", "drain", p.Node, "--ignore-daemonsets", "--delete-emptydir-data",
		"--timeout=6m", "--pod-selector=cnpg.io/podRole!=instance"); err != nil {
		return err
	}
	r.Times["drain_apps"] = time.Since(t).Seconds()
	// The database instances go last, as a node maintenance does: the operator switches the primary over.
	if _, err := e.kubectl(ctx, "kubectl", "drain", p.Node, "--ignore-daemonsets", "--delete-emptydir-data",
		"--timeout=6m"); err != nil {
		_, _ = e.kubectl(ctx, "kubectl", "uncordon", p.Node)
		return err
	}
	r.Times["drain_total"] = time.Since(t).Seconds()
	newP, err := e.primary(ctx, "bank-db")
	if err != nil {
		return err
	}
	if newP.Node == p.Node {
		return fmt.Errorf("bank-db primary still on the drained node %s", p.Node)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("%s drained in %.0f s (PDBs respected); bank-db primary %s → %s on %s",
		p.Node, time.Since(t).Seconds(), p.Pod, newP.Pod, newP.Node))
	newS, err := e.primary(ctx, "store-db")
	if err != nil {
		return err
	}
	if newS.Node == p.Node {
		return fmt.Errorf("store-db primary still on the drained node %s", p.Node)
	}
	r.Checks = append(r.Checks, fmt.Sprintf("store-db primary %s → %s on %s", sp.Pod, newS.Pod, newS.Node))
	r.Times["longest_bank_gap"] = bank.longestGap(t, time.Now()).Seconds()
	r.Times["longest_store_create_gap"] = store.longestGap(t, time.Now()).Seconds()
	if err := sleepCtx(ctx, 20*time.Second); err != nil {
		return err
	}
	if _, err := e.kubectl(ctx, "kubectl", "uncordon", p.Node); err != nil {
		return err
	}
	return e.s.WaitHealthy(ctx, 6*time.Minute)
}

// rollingUpdate ships a new image tag (a build of the same checkout with another version) to both services.
func rollingUpdate(ctx context.Context, e *env, r *Row) error {
	tag := "e2e-rollout"
	img, err := e.s.Rebuild(ctx, tag)
	if err != nil {
		return err
	}
	t := time.Now()
	if err := e.s.Deploy(ctx, tag, nil); err != nil {
		return err
	}
	for _, app := range []string{"bank", "store"} {
		if err := e.waitRollout(ctx, app, img.Ref, 5*time.Minute); err != nil {
			return err
		}
	}
	r.Times["rollout"] = time.Since(t).Seconds()
	e.image = img.Ref
	r.Checks = append(r.Checks, fmt.Sprintf("bank and store rolled out to %s in %.0f s", img.Ref, time.Since(t).Seconds()))
	return nil
}

// waitRollout waits until every available pod of the Deployment runs image.
func (e *env) waitRollout(ctx context.Context, app, image string, d time.Duration) error {
	return e.waitTemplate(ctx, app, func(c corev1.Container) bool { return c.Image == image }, d)
}

// waitTemplate waits until the Deployment's container template satisfies ok and all its replicas run it.
func (e *env) waitTemplate(ctx context.Context, app string, ok func(corev1.Container) bool, d time.Duration) error {
	return e.s.Apply.Wait(ctx, deploy.Deployments, namespace, app, d, deploy.MinReplicas(2, func(o *unstructured.Unstructured) (bool, string) {
		var dep appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &dep); err != nil {
			return false, err.Error()
		}
		if !ok(dep.Spec.Template.Spec.Containers[0]) {
			return false, "template not updated yet"
		}
		return deploy.DeploymentAvailable(o)
	}))
}

// badCA is the bad release's typo: a CA file its Secret does not hold.
const badCA = "/etc/txmesh/tls/client-ca.crt"

func hasEnv(c corev1.Container, name, value string) bool {
	for _, e := range c.Env {
		if e.Name == name && e.Value == value {
			return true
		}
	}
	return false
}

// badRelease applies a release whose Bank names a client CA file that is not in its Secret — a typo a
// reviewer misses — and expects the rollout to stall at progressDeadlineSeconds with the old pods serving,
// then undoes it as the CD path does.
func badRelease(ctx context.Context, e *env, r *Row) error {
	bad := `- op: add
  path: /spec/template/spec/containers/0/env/-
  value:
    name: TLS_CLIENT_CA_FILE
    value: ` + badCA
	t := time.Now()
	if err := e.s.Deploy(ctx, tagOf(e.image), map[string]string{"Deployment/bank": bad}); err != nil {
		return err
	}
	var reason string
	for {
		dep, err := e.cs.AppsV1().Deployments(namespace).Get(ctx, "bank", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range dep.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse {
				reason = c.Reason
			}
		}
		if reason != "" {
			if dep.Status.AvailableReplicas < 2 {
				return fmt.Errorf("only %d Bank pods available while the bad release stalled", dep.Status.AvailableReplicas)
			}
			break
		}
		if time.Since(t) > 5*time.Minute {
			return fmt.Errorf("the bad release did not stall within 5 min")
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	r.Times["release_to_stalled"] = time.Since(t).Seconds()
	crash, err := e.crashReason(ctx)
	if err != nil {
		return err
	}
	u := time.Now()
	if _, err := e.kubectl(ctx, "kubectl", "rollout", "undo", "deployment/bank", "-n", namespace); err != nil {
		return err
	}
	if err := e.waitTemplate(ctx, "bank", func(c corev1.Container) bool { return !hasEnv(c, "TLS_CLIENT_CA_FILE", badCA) },
		5*time.Minute); err != nil {
		return err
	}
	r.Times["undo_to_rolled_back"] = time.Since(u).Seconds()
	// Git gets the fix too: the good release applied again changes nothing that runs.
	if err := e.s.Deploy(ctx, tagOf(e.image), nil); err != nil {
		return err
	}
	r.Checks = append(r.Checks, fmt.Sprintf("rollout stalled (%s) after %.0f s with 2 old pods serving; the new pod: %s; "+
		"kubectl rollout undo restored it in %.0f s", reason, r.Times["release_to_stalled"], crash, r.Times["undo_to_rolled_back"]))
	return nil
}

// crashReason is the last termination message of a crashing Bank pod.
func (e *env) crashReason(ctx context.Context) (string, error) {
	pods, err := e.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=bank"})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		for _, st := range p.Status.ContainerStatuses {
			if st.RestartCount > 0 || (st.State.Waiting != nil && st.State.Waiting.Reason == "CrashLoopBackOff") {
				logs, _ := e.cs.CoreV1().Pods(namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: "bank",
					Previous: true}).DoRaw(ctx)
				line := strings.TrimSpace(string(logs))
				if i := strings.LastIndex(line, "\n"); i >= 0 {
					line = line[i+1:]
				}
				return fmt.Sprintf("%s restarted %d times, last log line %s", p.Name, st.RestartCount, line), nil
			}
		}
	}
	return "", fmt.Errorf("no crashing Bank pod found while the release stalled")
}

func tagOf(ref string) string { return ref[strings.LastIndex(ref, ":")+1:] }

// negativeControl takes away what the HA design relies on — synchronous replication — and then fails the
// primary's node with WAL not yet shipped: the audit must report the acknowledged transactions that are lost.
func negativeControl(ctx context.Context, e *env, r *Row) error {
	if err := e.suspendFlux(ctx, r); err != nil {
		return err
	}
	async := `- op: remove
  path: /spec/postgresql/synchronous`
	if e.gitops != nil {
		// Flux's field manager co-owns spec.postgresql.synchronous: an apply that leaves it out does not
		// remove it, a JSON patch does.
		if _, err := e.kubectl(ctx, "kubectl", "-n", namespace, "patch", "clusters.postgresql.cnpg.io", "bank-db",
			"--type=json", "-p", `[{"op":"remove","path":"/spec/postgresql/synchronous"}]`); err != nil {
			return err
		}
	} else if err := e.s.Deploy(ctx, tagOf(e.image), map[string]string{"Cluster/bank-db": async}); err != nil {
		return err
	}
	defer func() {
		// The synchronous setting comes back for whatever runs next on a kept cluster.
		_ = e.s.Deploy(context.WithoutCancel(ctx), tagOf(e.image), nil)
	}()
	p, err := e.primary(ctx, "bank-db")
	if err != nil {
		return err
	}
	if err := e.waitAsync(ctx, p, 2*time.Minute); err != nil {
		return err
	}
	standbys, err := e.standbyIPs(ctx, "bank-db", p.Pod)
	if err != nil {
		return err
	}
	if err := e.c.BlockFromPod(p.Node, p.IP, 5432, standbys); err != nil {
		return err
	}
	// On an error below, the node is reconnected and unblocked all the same: the rows after it need it.
	blocked := true
	defer func() {
		if blocked {
			_ = e.c.UnblockFromPod(p.Node)
		}
	}()
	e.logf("negative control: %s async, WAL to %v blocked on %s; 20 s of commits no standby has", p.Pod, standbys, p.Node)
	if err := sleepCtx(ctx, 20*time.Second); err != nil {
		return err
	}
	// Still asynchronous: anything that put synchronous replication back (a GitOps controller) would make
	// the operator refuse the failover rather than lose, and this row would prove nothing.
	if err := e.waitAsync(ctx, p, 5*time.Second); err != nil {
		return fmt.Errorf("before the cut: %w", err)
	}
	t := time.Now()
	if err := e.c.CutNode(p.Node); err != nil {
		return err
	}
	cut := true
	defer func() {
		if cut {
			_ = e.c.HealNode(p.Node)
		}
	}()
	newP, at, err := e.waitPrimaryChange(ctx, "bank-db", p.Pod, 4*time.Minute)
	if err != nil {
		return err
	}
	r.Times["cut_to_new_primary"] = at.Sub(t).Seconds()
	if err := sleepCtx(ctx, 30*time.Second); err != nil {
		return err
	}
	blocked = false
	if err := e.c.UnblockFromPod(p.Node); err != nil {
		return err
	}
	cut = false
	if err := e.c.HealNode(p.Node); err != nil {
		return err
	}
	if err := e.s.WaitHealthy(ctx, 8*time.Minute); err != nil {
		return err
	}
	r.Checks = append(r.Checks, fmt.Sprintf("asynchronous bank-db, WAL shipping blocked for 20 s, %s cut off: %s promoted "+
		"after %.1f s; the old primary rejoined (rewound)", p.Node, newP, at.Sub(t).Seconds()))
	return nil
}

// waitAsync waits until the primary runs without synchronous standbys.
func (e *env) waitAsync(ctx context.Context, p cnpgPrimary, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		out, err := e.kubectl(ctx, "kubectl", "exec", "-n", namespace, p.Pod, "-c", "postgres", "--",
			"psql", "-tAc", "show synchronous_standby_names")
		if err == nil && strings.TrimSpace(out) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("%s: synchronous_standby_names not readable after %s: %w", p.Pod, d, err)
			}
			return fmt.Errorf("%s still synchronous after %s: %q", p.Pod, d, strings.TrimSpace(out))
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return err
		}
	}
}

func (e *env) standbyIPs(ctx context.Context, cluster, primary string) ([]string, error) {
	pods, err := e.podsOf(ctx, "cnpg.io/cluster="+cluster)
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, p := range pods {
		if p.Name != primary && p.Labels["cnpg.io/podRole"] == "instance" && p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s has no standby", cluster)
	}
	return ips, nil
}

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
