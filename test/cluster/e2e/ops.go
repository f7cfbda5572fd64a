package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/istio"
	"github.com/txmesh/txmesh/test/cluster/manifests"
)

// Operations the scenarios are made of.

func (e *env) serviceURL(ctx context.Context, name string) (string, error) {
	svc, err := e.cs.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("https://%s:8080", svc.Spec.ClusterIP), nil
}

// waitStoreReachable waits until the Store answers through its Service from the host (the host's kube-proxy
// takes up to a minute to start translating).
func (e *env) waitStoreReachable(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.store+"/v1/outbox", nil)
		resp, err := e.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		time.Sleep(time.Second)
	}
	return fmt.Errorf("the Store's Service %s is not reachable from the host after %s: %w", e.store, d, last)
}

// cnpgPrimary is a CloudNativePG cluster's current primary: pod, node, and the postgres container's ID.
type cnpgPrimary struct {
	Pod, Node, ContainerID, IP string
}

func (e *env) primary(ctx context.Context, cluster string) (cnpgPrimary, error) {
	c, err := e.s.Apply.Dynamic().Resource(cnpg.Clusters).Namespace(namespace).Get(ctx, cluster, metav1.GetOptions{})
	if err != nil {
		return cnpgPrimary{}, err
	}
	name, _, _ := unstructured.NestedString(c.Object, "status", "currentPrimary")
	if name == "" {
		return cnpgPrimary{}, fmt.Errorf("%s has no current primary", cluster)
	}
	pod, err := e.cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return cnpgPrimary{}, err
	}
	p := cnpgPrimary{Pod: name, Node: pod.Spec.NodeName, IP: pod.Status.PodIP}
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name == "postgres" {
			p.ContainerID = strings.TrimPrefix(st.ContainerID, "containerd://")
		}
	}
	return p, nil
}

// waitPrimaryChange waits until the cluster's current primary is another pod and returns when it was seen.
func (e *env) waitPrimaryChange(ctx context.Context, cluster, old string, d time.Duration) (string, time.Time, error) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		c, err := e.s.Apply.Dynamic().Resource(cnpg.Clusters).Namespace(namespace).Get(ctx, cluster, metav1.GetOptions{})
		if err == nil {
			cur, _, _ := unstructured.NestedString(c.Object, "status", "currentPrimary")
			if cur != "" && cur != old {
				return cur, time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", time.Time{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", time.Time{}, fmt.Errorf("%s: no new primary within %s (still %s)", cluster, d, old)
}

// killPostmaster kill -9s PostgreSQL's postmaster in the container, from the node (its process, not the pod).
func (e *env) killPostmaster(p cnpgPrimary) error {
	if e.s.Attached() {
		return e.killPostmasterExec(p)
	}
	pids, err := e.s.Cluster.ContainerPIDs(p.Node, p.ContainerID)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if comm(pid) == "postgres" && comm(ppid(pid)) != "postgres" {
			return syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return fmt.Errorf("no postmaster among the processes of %s on %s: %v", p.Pod, p.Node, pids)
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

func ppid(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// podsOf lists the running pods of an app label.
func (e *env) podsOf(ctx context.Context, selector string) ([]corev1.Pod, error) {
	l, err := e.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// metricsURL is where the harness reads a pod's metrics: the app's management port :9090, or in the mesh the
// sidecar's merged endpoint (the app's metrics and Envoy's; the app port itself is behind STRICT mTLS).
func (e *env) metricsURL(ip string) string {
	if e.s.Meshed() {
		return istio.MetricsURL(ip)
	}
	return "http://" + ip + ":9090/metrics"
}

// metric reads one Prometheus counter or gauge (summed over its label sets) from a pod's metrics URL.
func metric(ctx context.Context, url, name string) (float64, error) {
	return metricWhere(ctx, url, name, "")
}

// metricWhere is metric over the label sets that contain label (e.g. `code="503"`; "" for all).
func metricWhere(ctx context.Context, url, name, label string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		if label != "" && !strings.Contains(line, label) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	if !found && label == "" {
		return 0, fmt.Errorf("no %s at %s", name, url)
	}
	return sum, sc.Err()
}

// commitWatch samples the Bank's first-time commits (bank_transactions_total on every Bank pod) every
// 250 ms, to time the first commit after a fault and the longest interval without one.
type commitWatch struct {
	mu      sync.Mutex
	samples []time.Time // times at which the sum grew since the previous sample
	// since[i]: the growth seen at samples[i] happened after it: the latest of the reads before it, of the
	// pods that grew. A read of another pod can hang (its node killed), so the two may be seconds apart.
	since []time.Time
	first time.Time
	stop  context.CancelFunc
	done  chan struct{}
}

// add records growth seen at `at` that happened after `since`.
func (w *commitWatch) add(at, since time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples, w.since = append(w.samples, at), append(w.since, since)
}

func (e *env) watchCommits(ctx context.Context) *commitWatch {
	return e.watchCounter(ctx, "app=bank", "bank_transactions_total")
}

// watchCounter samples the sum of a counter over the pods of selector every 250 ms (as watchCommits does).
func (e *env) watchCounter(ctx context.Context, selector, name string) *commitWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &commitWatch{stop: cancel, done: make(chan struct{}), first: time.Now()}
	go func() {
		defer close(w.done)
		last, readAt := map[string]float64{}, map[string]time.Time{}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			pods, err := e.podsOf(ctx, selector)
			if err != nil {
				continue
			}
			var grew bool
			var since time.Time
			for _, p := range pods {
				if p.Status.PodIP == "" {
					continue
				}
				before := time.Now()
				v, err := metric(ctx, e.metricsURL(p.Status.PodIP), name)
				if err != nil {
					continue
				}
				if v > last[p.Name] {
					grew = true
					if readAt[p.Name].After(since) {
						since = readAt[p.Name]
					}
				}
				last[p.Name], readAt[p.Name] = v, before
			}
			if grew {
				w.add(time.Now(), since)
			}
		}
	}()
	return w
}

func (w *commitWatch) close() { w.stop(); <-w.done }

// firstAfter is how long after t the first growth certainly made after t was seen: one whose pod had been read
// after t already. Growth read late (another pod's read hung) but made before t does not count.
func (w *commitWatch) firstAfter(t time.Time) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range w.samples {
		if !w.since[i].Before(t) {
			return s.Sub(t), true
		}
	}
	return 0, false
}

// longestGap is the longest interval without a commit between from and to.
func (w *commitWatch) longestGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, longest := from, time.Duration(0)
	for _, s := range w.samples {
		if s.Before(from) || s.After(to) {
			continue
		}
		longest = max(longest, s.Sub(prev))
		prev = s
	}
	return max(longest, to.Sub(prev))
}

// kubectl runs the cluster's own kubectl (or kubectl-cnpg) and returns its output.
func (e *env) kubectl(ctx context.Context, bin string, args ...string) (string, error) {
	path := e.s.Bin[bin]
	if path == "" {
		return "", fmt.Errorf("no %s binary", bin)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.c.Kubeconfig())
	return runTool(bin, cmd)
}

// runTool runs cmd and returns its standard output. Its standard error stays out of the answer (kubectl's
// client warnings, such as klog's "Unknown stream id" of an exec over WebSockets, were read as a
// server_version once) and goes with the output into the error when the command fails.
func runTool(bin string, cmd *exec.Cmd) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		out := stdout.String() + stderr.String()
		return out, fmt.Errorf("%s %s: %w: %s", bin, strings.Join(cmd.Args[1:], " "), err, strings.TrimSpace(out))
	}
	return stdout.String(), nil
}

// cnpgStatus saves `kubectl cnpg status` of both databases next to the results.
func (e *env) cnpgStatus(ctx context.Context, tag string) {
	var b strings.Builder
	for _, db := range []string{"bank-db", "store-db"} {
		out, err := e.kubectl(ctx, "kubectl-cnpg", "status", db, "-n", namespace)
		if err != nil {
			out += "\n" + err.Error()
		}
		b.WriteString(out + "\n")
	}
	_ = os.MkdirAll(e.opts.Out, 0o755)
	_ = os.WriteFile(filepath.Join(e.opts.Out, "cnpg-status-"+tag+".txt"), []byte(b.String()), 0o644)
}

// scale sets a Deployment's replicas through its scale subresource (as `kubectl scale`).
func (e *env) scale(ctx context.Context, name string, n int32) error {
	s, err := e.cs.AppsV1().Deployments(namespace).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	s.Spec.Replicas = n
	_, err = e.cs.AppsV1().Deployments(namespace).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
	return err
}

// outbox reads GET /v1/outbox through the Store's Service.
type outboxStatus struct {
	Backlog int64  `json:"backlog"`
	Breaker string `json:"breaker"`
}

func (e *env) outbox(ctx context.Context) (outboxStatus, error) {
	var o outboxStatus
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.store+"/v1/outbox", nil)
	resp, err := e.client.Do(req)
	if err != nil {
		return o, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return o, fmt.Errorf("GET /v1/outbox: %d", resp.StatusCode)
	}
	return o, decodeJSON(resp, &o)
}

// waitDrained waits until the outbox is empty and returns how long it took.
func (e *env) waitDrained(ctx context.Context, d time.Duration) (time.Duration, error) {
	t := time.Now()
	for time.Since(t) < d {
		if o, err := e.outbox(ctx); err == nil && o.Backlog == 0 {
			return time.Since(t), nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return 0, errors.New("outbox not drained within " + d.String())
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func containerdVersion() string {
	out, err := exec.Command("containerd", "--version").Output()
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(out))
	if len(f) >= 3 {
		return f[2]
	}
	return strings.TrimSpace(string(out))
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
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

// waitRollout waits until every available pod of the Deployment runs image.
func (e *env) waitRollout(ctx context.Context, app, image string, d time.Duration) error {
	return e.waitTemplate(ctx, app, func(c corev1.Container) bool { return c.Image == image }, d)
}

// waitTemplate waits until the Deployment's container template satisfies ok and all its replicas run it.
func (e *env) waitTemplate(ctx context.Context, app string, ok func(corev1.Container) bool, d time.Duration) error {
	return e.s.Apply.Wait(ctx, manifests.Deployments, namespace, app, d, manifests.MinReplicas(2, func(o *unstructured.Unstructured) (bool, string) {
		var dep appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &dep); err != nil {
			return false, err.Error()
		}
		if !ok(dep.Spec.Template.Spec.Containers[0]) {
			return false, "template not updated yet"
		}
		return manifests.DeploymentAvailable(o)
	}))
}

func tagOf(ref string) string { return ref[strings.LastIndex(ref, ":")+1:] }

func decodeJSON(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// failureLogs saves what a failed row needs to be understood once the cluster is gone: the apps' log lines
// above INFO since the scenario began (every running bank/store pod, primaries and canaries included), the
// namespace's events and both databases' status.
func (e *env) failureLogs(ctx context.Context, tag string, since time.Duration) {
	var b strings.Builder
	out, err := e.kubectl(ctx, "kubectl", "logs", "-n", namespace, "--prefix", "--all-containers",
		"--max-log-requests=20", "--tail=-1", fmt.Sprintf("--since=%ds", int(since.Seconds())+30),
		"-l", "app in (bank,bank-primary,store,store-primary)")
	if err != nil {
		out += "\n" + err.Error()
	}
	info := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "level=INFO") || strings.Contains(l, `"level":"INFO"`) {
			info++
			continue
		}
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "(%d INFO lines left out)\n\n", info)
	// The operator's side of a switchover or failover (what it waited on, which pod it could not read),
	// without its per-reconcile chatter.
	op, err := e.kubectl(ctx, "kubectl", "logs", "-n", cnpg.Namespace, "--prefix", "--tail=-1",
		fmt.Sprintf("--since=%ds", int(since.Seconds())+30), "-l", "app.kubernetes.io/name=cloudnative-pg")
	if err != nil {
		op += "\n" + err.Error()
	}
	noise := 0
	for _, l := range strings.Split(op, "\n") {
		if strings.Contains(l, `"msg":"Defaulting for`) || strings.Contains(l, `"msg":"Validat`) ||
			strings.Contains(l, `"msg":"pod status (`) {
			noise++
			continue
		}
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "(%d operator lines left out: defaulting, validation, pod status)\n\n", noise)
	// The instances' side (the instance manager, PostgreSQL's own records, the Barman Cloud sidecar's archive and
	// restore calls): what a switchover waited on. Pods deleted during the row took their logs with them.
	inst, err := e.kubectl(ctx, "kubectl", "logs", "-n", namespace, "--prefix", "--all-containers",
		"--max-log-requests=20", "--tail=-1", fmt.Sprintf("--since=%ds", int(since.Seconds())+30), "-l", "cnpg.io/podRole=instance")
	if err != nil {
		inst += "\n" + err.Error()
	}
	noise = 0
	for _, l := range strings.Split(inst, "\n") {
		if strings.Contains(l, "Unable to collect metrics") || strings.Contains(l, "Error collecting user query") ||
			strings.Contains(l, `"msg":"pod status`) || strings.Contains(l, "/metrics") {
			noise++
			continue
		}
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "(%d instance lines left out: metrics)\n\n", noise)
	ev, err := e.kubectl(ctx, "kubectl", "get", "events", "-n", namespace, "--sort-by=.lastTimestamp")
	if err != nil {
		ev += "\n" + err.Error()
	}
	b.WriteString(ev + "\n")
	_ = os.MkdirAll(e.opts.Out, 0o755)
	_ = os.WriteFile(filepath.Join(e.opts.Out, "failed-"+tag+".txt"), []byte(b.String()), 0o644)
	e.cnpgStatus(ctx, "failed-"+tag)
}
