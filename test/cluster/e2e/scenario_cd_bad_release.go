package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/txmesh/txmesh/test/cluster/flux"
)

// cd-bad-release: an engineer's commit sets the Bank's client CA to its own certificate. Checks: Flagger's
// acceptance test fails and the canary is rolled back by itself (Canary Failed, bank-primary on the old
// configuration, no client error); the revert in Git is promoted.
var cdBadRelease = scenario{
	name:           "cd-bad-release",
	fault:          "a commit sets the Bank's client CA to a wrong file: Flagger's checks fail, automatic rollback; the revert promoted",
	needs:          []string{"cd-bootstrap"},
	noClientErrors: true,
	run:            cdBadReleaseRun,
}

// cdBadReleaseRun ships a misconfiguration the way it would reach production: an engineer's commit in Git. The
// Bank's client CA is set to its own certificate file (it exists, so the Bank starts and its probes pass, but
// no client certificate verifies against it): the acceptance test and every Store would be refused. Flagger
// must roll it back by itself: the canary fails its checks, is scaled to zero, the Canary is Failed, bank-
// primary keeps serving the old configuration (so the clients see nothing). The commit is then reverted in
// Git and Flagger promotes the fix.
func cdBadReleaseRun(ctx context.Context, e *env, r *Row) error {
	if e.gitops == nil {
		return fmt.Errorf("cd-bad-release needs cd-bootstrap before it")
	}
	const file, good, bad = "kustomize/overlays/e2e/apps-mtls.yaml", "TLS_CLIENT_CA_FILE: /etc/txmesh/tls/ca.crt",
		"TLS_CLIENT_CA_FILE: /etc/txmesh/tls/tls.crt"
	rev, err := e.canaryRevision(ctx, "bank")
	if err != nil {
		return err
	}
	hooks := e.hooks.stats()
	t := time.Now()
	commit, err := e.gitops.Commit(ctx, "bank: client CA from the mounted certificate", func(dir string) error {
		return replaceIn(filepath.Join(dir, file), "name: bank-config", good, bad)
	})
	if err != nil {
		return err
	}
	if err := e.s.Apply.Wait(ctx, flux.Kustomizations, flux.Namespace, "apps", 5*time.Minute,
		attemptedRevision(commit)); err != nil {
		return err
	}
	r.Times["commit_to_applied"] = time.Since(t).Seconds()
	end, err := e.awaitCanary(ctx, "bank", rev, "Failed", t, 6*time.Minute)
	if err != nil {
		return err
	}
	r.Times["commit_to_rolled_back"] = end.At.Sub(t).Seconds()
	if err := e.servedByPrimary(ctx, "bank"); err != nil {
		return err
	}
	cm, err := e.cs.CoreV1().ConfigMaps(namespace).Get(ctx, "bank-config-primary", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := "TLS_CLIENT_CA_FILE: " + cm.Data["TLS_CLIENT_CA_FILE"]; got != good {
		return fmt.Errorf("bank-primary's configuration (bank-config-primary) has %s", got)
	}
	why := e.canaryEvents(ctx, "bank", t, "Halt", "Rolling back", "Canary failed")
	r.Checks = append(r.Checks, fmt.Sprintf("commit %s (%s: %s) applied by Flux in %.0f s; Flagger rolled the "+
		"canary back %.0f s after the commit: %s; bank-primary still has %s; events: %s", commit[:12], file, bad,
		r.Times["commit_to_applied"], r.Times["commit_to_rolled_back"], end.Seen, good, why),
		"the harness's webhooks: "+e.hooks.stats().since(hooks).String())

	if rev, err = e.canaryRevision(ctx, "bank"); err != nil {
		return err
	}
	t = time.Now()
	revert, err := e.gitops.Revert(ctx, commit)
	if err != nil {
		return err
	}
	if err := e.s.Apply.Wait(ctx, flux.Kustomizations, flux.Namespace, "apps", 5*time.Minute,
		attemptedRevision(revert)); err != nil {
		return err
	}
	hooks = e.hooks.stats()
	end, err = e.awaitCanary(ctx, "bank", rev, "Succeeded", t, 6*time.Minute)
	if err == nil {
		err = end.cleanAnalysis()
	}
	if err != nil {
		return fmt.Errorf("revert %s: %w; the harness's webhooks since: %s", revert[:12], err,
			e.hooks.stats().since(hooks))
	}
	r.Times["revert_to_promoted"] = end.At.Sub(t).Seconds()
	r.Checks = append(r.Checks, fmt.Sprintf("revert %s applied and promoted in %.0f s: %s", revert[:12],
		r.Times["revert_to_promoted"], end.Seen))
	return nil
}

// replaceIn replaces the first old after the line after in file (a YAML document's name), once.
func replaceIn(file, after, old, new string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, after)
	if i < 0 {
		return fmt.Errorf("%s: no %q", file, after)
	}
	j := strings.Index(s[i:], old)
	if j < 0 {
		return fmt.Errorf("%s: no %q after %q", file, old, after)
	}
	s = s[:i+j] + new + s[i+j+len(old):]
	return os.WriteFile(file, []byte(s), 0o644)
}
