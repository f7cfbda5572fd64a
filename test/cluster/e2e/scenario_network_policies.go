package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/manifests"
	"github.com/txmesh/txmesh/test/cluster/netpol"
)

// network-policies: the NetworkPolicies of the e2e overlay are enforced (kube-network-policies on
// every node) and both sides hold. The flows the system needs are the load itself (this machine → the Store's
// Service, Store → store-db, Store → Bank, Bank → bank-db), the probes, DNS, CloudNativePG's replication and
// operator status calls (the clusters stay healthy), the seed Job and the audit after the scenario. The flows
// that must not exist are tried from short-lived busybox containers: an ephemeral container in a real Bank pod
// and in a real Store pod (same network identity as the app), a pod without labels in txmesh, a pod in a
// namespace of its own, a pod in the operator's namespace that is not the operator, and this machine itself.
// It needs the harness's enforcer (netpol).
var networkPolicies = scenario{
	name:  "network-policies",
	fault: "NetworkPolicies enforced (kube-network-policies): the flows the system needs work under load, the others are refused",
	needs: []string{"netpol"},
	run:   networkPoliciesRun,
}

const probeNamespace = "txmesh-netpol-probe"

// probeTarget is one connection a probe tries.
type probeTarget struct {
	name, addr string
	port       int
	allow      bool // the policies must let it through
}

// probeResult is what one probe saw.
type probeResult struct {
	from, to string
	allow    bool   // wanted
	ok       bool   // connected
	how      string // "connected", "timeout" (dropped) or "rejected" (RST/ICMP)
	secs     int
}

var probeLine = regexp.MustCompile(`^PROBE (\S+) rc=(\d+) secs=(\d+) ?(.*)$`)

// probeScript tries each target with busybox nc (connect, then close at once: stdin is empty) and prints one
// line per target. The 3 s connect timeout marks a dropped SYN; a reset prints "Connection refused".
func probeScript(ts []probeTarget) string {
	var b strings.Builder
	b.WriteString(`probe() { s=$(date +%s); out=$(timeout 8 nc -w 3 "$2" "$3" </dev/null 2>&1); rc=$?; ` +
		`echo "PROBE $1 rc=$rc secs=$(( $(date +%s) - s )) $(echo $out | tr '\n' ' ')"; }` + "\n")
	for _, t := range ts {
		fmt.Fprintf(&b, "probe %s %s %d\n", t.name, t.addr, t.port)
	}
	return b.String()
}

func parseProbes(from, logs string, ts []probeTarget) ([]probeResult, error) {
	want := map[string]probeTarget{}
	for _, t := range ts {
		want[t.name] = t
	}
	var out []probeResult
	for _, l := range strings.Split(logs, "\n") {
		m := probeLine.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		t, ok := want[m[1]]
		if !ok {
			continue
		}
		delete(want, m[1])
		rc, _ := strconv.Atoi(m[2])
		secs, _ := strconv.Atoi(m[3])
		r := probeResult{from: from, to: fmt.Sprintf("%s (%s:%d)", t.name, t.addr, t.port), allow: t.allow, ok: rc == 0, secs: secs}
		switch {
		case rc == 0:
			r.how = "connected"
		case strings.Contains(m[4], "refused"):
			r.how = "rejected"
		case strings.Contains(m[4], "timed out") || rc == 143:
			r.how = "timeout"
		default:
			r.how = "failed: " + m[4]
		}
		out = append(out, r)
	}
	if len(want) > 0 {
		return out, fmt.Errorf("probe from %s: no result for %d target(s) in its log:\n%s", from, len(want), logs)
	}
	return out, nil
}

func restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532),
		RunAsGroup: ptr.To[int64](65532), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// probePod runs the script in a new pod (labels as given) and returns its log.
func (e *env) probePod(ctx context.Context, ns, name string, lbl map[string]string, script string) (string, error) {
	pods := e.cs.CoreV1().Pods(ns)
	_ = pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	for i := 0; i < 30; i++ {
		if _, err := pods.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			break
		}
		time.Sleep(time.Second)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{Name: "probe", Image: e.s.Images["busybox"].Ref,
				ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sh", "-c", script},
				SecurityContext: restricted(),
				Resources:       corev1.ResourceRequirements{}}},
		},
	}
	if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("probe pod %s/%s: %w", ns, name, err)
	}
	defer func() {
		_ = pods.Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cur, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err == nil && (cur.Status.Phase == corev1.PodSucceeded || cur.Status.Phase == corev1.PodFailed) {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("probe pod %s/%s did not finish within 2 min", ns, name)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return "", err
		}
	}
	b, err := pods.GetLogs(name, &corev1.PodLogOptions{Container: "probe"}).DoRaw(ctx)
	return string(b), err
}

// probeEphemeral runs the script in an ephemeral container of an existing pod: the pod's own network
// namespace, so its own NetworkPolicies.
func (e *env) probeEphemeral(ctx context.Context, pod, name, script string) (string, error) {
	pods := e.cs.CoreV1().Pods(namespace)
	p, err := pods.Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: name, Image: e.s.Images["busybox"].Ref,
			ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sh", "-c", script},
			SecurityContext: restricted()}})
	if _, err := pods.UpdateEphemeralContainers(ctx, pod, p, metav1.UpdateOptions{}); err != nil {
		return "", fmt.Errorf("ephemeral probe in %s: %w", pod, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cur, err := pods.Get(ctx, pod, metav1.GetOptions{})
		if err == nil {
			for _, st := range cur.Status.EphemeralContainerStatuses {
				if st.Name == name && st.State.Terminated != nil {
					b, err := pods.GetLogs(pod, &corev1.PodLogOptions{Container: name}).DoRaw(ctx)
					return string(b), err
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("ephemeral probe %s in %s did not finish within 2 min", name, pod)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return "", err
		}
	}
}

func (e *env) clusterIP(ctx context.Context, ns, svc string) (string, error) {
	s, err := e.cs.CoreV1().Services(ns).Get(ctx, svc, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return s.Spec.ClusterIP, nil
}

func (e *env) runningPod(ctx context.Context, selector string) (string, error) {
	pods, err := e.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		if podReady(&p) && p.DeletionTimestamp == nil {
			return p.Name, nil
		}
	}
	return "", fmt.Errorf("no ready pod with %s", selector)
}

// policySelections lists, for every NetworkPolicy in txmesh, how many of the namespace's pods (Succeeded
// Job pods included: the seed's and the audits') it selects; a policy that selects nothing is an error.
func (e *env) policySelections(ctx context.Context) ([]string, error) {
	nps, err := e.cs.NetworkingV1().NetworkPolicies(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	pods, err := e.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	if len(nps.Items) == 0 {
		return nil, errors.New("no NetworkPolicy in namespace txmesh: the network-policies component is not deployed")
	}
	var out, empty []string
	for _, np := range nps.Items {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", np.Name, err)
		}
		n := 0
		for _, p := range pods.Items {
			if sel.Matches(labels.Set(p.Labels)) {
				n++
			}
		}
		if n == 0 {
			empty = append(empty, np.Name+" ("+sel.String()+")")
		}
		out = append(out, fmt.Sprintf("%s %d", np.Name, n))
	}
	sort.Strings(out)
	if len(empty) > 0 {
		return out, fmt.Errorf("NetworkPolicies selecting no pod: %s", strings.Join(empty, ", "))
	}
	return out, nil
}

// dialFromHost tries a TCP connection from this machine (outside the cluster's pods).
func dialFromHost(ctx context.Context, addr string, timeout time.Duration) (bool, string) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		c.Close()
		return true, "connected"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, "timeout"
	}
	if strings.Contains(err.Error(), "refused") {
		return false, "rejected"
	}
	return false, err.Error()
}

func networkPoliciesRun(ctx context.Context, e *env, r *Row) error {
	// The enforcer: one ready agent per node.
	ds, err := e.s.Apply.Dynamic().Resource(manifests.DaemonSets).Namespace(netpol.Namespace).Get(ctx,
		netpol.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the NetworkPolicy enforcer: %w", err)
	}
	if ok, why := manifests.DaemonSetReady(ds); !ok {
		return fmt.Errorf("the NetworkPolicy enforcer is not ready on every node: %s", why)
	}
	if mib, n := enforcerPSS(e); n > 0 {
		r.Checks = append(r.Checks, fmt.Sprintf("kube-network-policies: %d agents, %.1f MiB PSS in all", n, mib))
	}

	sel, err := e.policySelections(ctx)
	if err != nil {
		return err
	}
	r.Checks = append(r.Checks, "every NetworkPolicy in txmesh selects pods (policy pods): "+strings.Join(sel, ", "))

	bankDB, err := e.clusterIP(ctx, namespace, "bank-db-rw")
	if err != nil {
		return err
	}
	storeDB, err := e.clusterIP(ctx, namespace, "store-db-rw")
	if err != nil {
		return err
	}
	bankSvc, err := e.clusterIP(ctx, namespace, "bank")
	if err != nil {
		return err
	}
	dns, err := e.clusterIP(ctx, "kube-system", "kube-dns")
	if err != nil {
		return err
	}
	sp, err := e.primary(ctx, "store-db")
	if err != nil {
		return err
	}
	bankPod, err := e.runningPod(ctx, "app=bank")
	if err != nil {
		return err
	}
	storePod, err := e.runningPod(ctx, "app=store")
	if err != nil {
		return err
	}
	suffix := strconv.FormatInt(time.Now().Unix()%100000, 10)
	type probe struct {
		from string
		ts   []probeTarget
		run  func(script string) (string, error)
	}
	dnsOK := probeTarget{"kube-dns", dns, 53, true}
	probes := []probe{
		{from: "bank pod " + bankPod, ts: []probeTarget{{"bank-db-rw", bankDB, 5432, true}, {"store-db-rw", storeDB, 5432, false}},
			run: func(s string) (string, error) { return e.probeEphemeral(ctx, bankPod, "netpol-probe-"+suffix, s) }},
		{from: "store pod " + storePod, ts: []probeTarget{{"store-db-rw", storeDB, 5432, true}, {"bank", bankSvc, 8080, true},
			{"bank-db-rw", bankDB, 5432, false}},
			run: func(s string) (string, error) { return e.probeEphemeral(ctx, storePod, "netpol-probe-"+suffix, s) }},
		{from: "unlabelled pod in txmesh", ts: []probeTarget{dnsOK, {"bank-db-rw", bankDB, 5432, false},
			{"store-db-rw", storeDB, 5432, false}},
			run: func(s string) (string, error) { return e.probePod(ctx, namespace, "netpol-probe", nil, s) }},
		{from: "pod in namespace " + probeNamespace, ts: []probeTarget{dnsOK, {"store-db-rw", storeDB, 5432, false},
			{"store-db-primary", sp.IP, 5432, false}},
			run: func(s string) (string, error) { return e.probePod(ctx, probeNamespace, "netpol-probe", nil, s) }},
		{from: "non-operator pod in cnpg-system", ts: []probeTarget{dnsOK, {"store-db-rw", storeDB, 5432, false},
			{"store-db-primary", sp.IP, 5432, false}},
			run: func(s string) (string, error) { return e.probePod(ctx, "cnpg-system", "netpol-probe", nil, s) }},
	}
	if err := e.probeNamespace(ctx); err != nil {
		return err
	}
	defer func() {
		_ = e.cs.CoreV1().Namespaces().Delete(context.Background(), probeNamespace, metav1.DeleteOptions{})
	}()
	var all []probeResult
	for _, p := range probes {
		logs, err := p.run(probeScript(p.ts))
		if err != nil {
			return err
		}
		res, err := parseProbes(p.from, logs, p.ts)
		if err != nil {
			return err
		}
		all = append(all, res...)
	}
	// This machine: where the e2e's own client is (allowed to the Store only), outside every namespace.
	for _, t := range []probeTarget{{"store-db-rw", storeDB, 5432, false}, {"store-db-primary", sp.IP, 5432, false},
		{"bank", bankSvc, 8080, false}} {
		t0 := time.Now()
		ok, how := dialFromHost(ctx, net.JoinHostPort(t.addr, strconv.Itoa(t.port)), 3*time.Second)
		all = append(all, probeResult{from: "this machine", to: fmt.Sprintf("%s (%s:%d)", t.name, t.addr, t.port),
			allow: t.allow, ok: ok, how: how, secs: int(time.Since(t0).Seconds())})
	}
	var wrong []string
	allowed, refused := 0, 0
	hows := map[string]int{}
	for _, p := range all {
		verdict := map[bool]string{true: "allowed", false: "refused"}[p.ok]
		e.logf("netpol: %s → %s: %s (%s, %d s)", p.from, p.to, verdict, p.how, p.secs)
		if p.ok != p.allow {
			wrong = append(wrong, fmt.Sprintf("%s → %s %s (%s), want %s", p.from, p.to, verdict, p.how,
				map[bool]string{true: "allowed", false: "refused"}[p.allow]))
			continue
		}
		if p.ok {
			allowed++
		} else {
			refused++
			hows[p.how]++
		}
	}
	if len(wrong) > 0 {
		return fmt.Errorf("NetworkPolicies not as intended: %s", strings.Join(wrong, "; "))
	}
	var hs []string
	for h, n := range hows {
		hs = append(hs, fmt.Sprintf("%d by %s", n, h))
	}
	sort.Strings(hs)
	r.Checks = append(r.Checks, fmt.Sprintf("%d probed flows allowed as needed (Bank → bank-db, Store → store-db and Bank, DNS), "+
		"%d refused (%s): Bank → store-db, Store → bank-db, an unlabelled pod → both databases, another namespace, "+
		"a non-operator pod of cnpg-system and this machine → store-db's port", allowed, refused, strings.Join(hs, ", ")))

	lat, err := e.enforcementLatency(ctx)
	if err != nil {
		return err
	}
	r.Times["policy_to_refused"], r.Times["policy_removed_to_allowed"] = lat[0].Seconds(), lat[1].Seconds()
	r.Checks = append(r.Checks, fmt.Sprintf("enforcement latency: a new deny policy refused new connections after %.2f s, "+
		"its deletion let them in after %.2f s", lat[0].Seconds(), lat[1].Seconds()))

	// The needed flows under load for the rest of the scenario (the audit follows): both clusters healthy
	// means replication and the operator's status calls work.
	if err := sleepCtx(ctx, 20*time.Second); err != nil {
		return err
	}
	for _, db := range []string{"bank-db", "store-db"} {
		if err := e.s.Apply.Wait(ctx, cnpg.Clusters, namespace, db, time.Minute, cnpg.ClusterHealthy); err != nil {
			return err
		}
	}
	r.Checks = append(r.Checks, "bank-db and store-db healthy (3 ready instances each: replication and operator → :8000 allowed)")
	return nil
}

// probeNamespace creates the namespace of the outside probes (restricted Pod Security, no policies).
func (e *env) probeNamespace(ctx context.Context) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: probeNamespace, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted"}}}
	_, err := e.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// enforcementLatency: a listener pod in the probe namespace (no policies: this machine connects), then a
// deny-all ingress policy there: how long until a new connection from this machine is refused, and after
// the policy's deletion until one connects again.
func (e *env) enforcementLatency(ctx context.Context) ([2]time.Duration, error) {
	var out [2]time.Duration
	if err := e.probeNamespace(ctx); err != nil {
		return out, err
	}
	pods := e.cs.CoreV1().Pods(probeNamespace)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "netpol-listener", Namespace: probeNamespace},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: ptr.To(false), TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{Name: "listen", Image: e.s.Images["busybox"].Ref,
				ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"nc", "-ll", "-p", "8080", "-e", "true"},
				SecurityContext: restricted()}}},
	}
	if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return out, err
	}
	var addr string
	deadline := time.Now().Add(2 * time.Minute)
	for addr == "" {
		cur, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
		if err == nil && podReady(cur) && cur.Status.PodIP != "" {
			addr = net.JoinHostPort(cur.Status.PodIP, "8080")
			break
		}
		if time.Now().After(deadline) {
			return out, errors.New("the listener pod of the latency probe is not ready after 2 min")
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return out, err
		}
	}
	until := func(want bool, d time.Duration) (time.Duration, error) {
		t0 := time.Now()
		for time.Since(t0) < d {
			if ok, _ := dialFromHost(ctx, addr, 300*time.Millisecond); ok == want {
				return time.Since(t0), nil
			}
			if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
				return 0, err
			}
		}
		return 0, fmt.Errorf("latency probe: %s not %s within %s", addr, map[bool]string{true: "connecting", false: "refused"}[want], d)
	}
	if _, err := until(true, 30*time.Second); err != nil {
		return out, err
	}
	nps := e.cs.NetworkingV1().NetworkPolicies(probeNamespace)
	deny := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-ingress"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	if _, err := nps.Create(ctx, deny, metav1.CreateOptions{}); err != nil {
		return out, err
	}
	var err error
	if out[0], err = until(false, 30*time.Second); err != nil {
		return out, err
	}
	if err := nps.Delete(ctx, deny.Name, metav1.DeleteOptions{}); err != nil {
		return out, err
	}
	if out[1], err = until(true, 30*time.Second); err != nil {
		return out, err
	}
	return out, nil
}

// enforcerPSS sums the proportional resident memory of the enforcer's processes on the nodes.
func enforcerPSS(e *env) (float64, int) {
	procs, err := e.s.Cluster.Processes()
	if err != nil {
		return 0, 0
	}
	var sum int64
	n := 0
	for pid := range procs {
		pss, _, comm, ok := readMem(pid)
		if ok && comm == "netpol" {
			sum += pss
			n++
		}
	}
	return float64(sum) / (1 << 20), n
}
