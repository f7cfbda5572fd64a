package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bad-release: a release whose Bank names a client CA file its Secret lacks, applied by hand. Checks: the
// rollout stalls at progressDeadlineSeconds with the 2 old pods serving (no client error), the new pod's
// crash is the missing file, and kubectl rollout undo restores it.
var badRelease = scenario{
	name:           "bad-release",
	fault:          "a release whose Bank configuration names a CA file that does not exist: stalls, undone",
	noClientErrors: true,
	run:            badReleaseRun,
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

// badReleaseRun applies a release whose Bank names a client CA file that is not in its Secret — a typo a
// reviewer misses — and expects the rollout to stall at progressDeadlineSeconds with the old pods serving,
// then undoes it as the CD path does.
func badReleaseRun(ctx context.Context, e *env, r *Row) error {
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
