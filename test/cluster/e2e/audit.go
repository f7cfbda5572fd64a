package e2e

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/txmesh/txmesh/test/cluster/manifests"
)

//go:embed audit-job.yaml
var auditJob string

// auditReport is txaudit's JSON report (the fields the judge reads).
type auditReport struct {
	Purchases map[string]int64 `json:"purchases"`
	Backlog   int64            `json:"backlog"`
	Bank      struct {
		Transactions int64 `json:"transactions"`
		Approved     int64 `json:"approved"`
		Declined     int64 `json:"declined"`
		// Canary is the Bank's traffic on canary accounts; OnCustomerAccounts the canary checks' transactions
		// that spent a customer's account instead (the webhooks must never).
		Canary struct {
			Transactions       int64 `json:"transactions"`
			OnCustomerAccounts struct {
				Transactions int64            `json:"transactions"`
				Approved     int64            `json:"approved"`
				Amounts      map[string]int64 `json:"approved_amounts"`
			} `json:"on_customer_accounts"`
		} `json:"canary"`
	} `json:"bank"`
	Defects  map[string]int64 `json:"defects"`
	Findings []struct {
		Category string `json:"category"`
		ID       string `json:"id"`
		Detail   string `json:"detail"`
	} `json:"findings"`
	Clean   bool  `json:"clean"`
	Drained *bool `json:"drained"`
}

// audit runs txaudit as a Job and returns its report.
func (e *env) audit(ctx context.Context, name string, wait time.Duration) (*auditReport, error) {
	y := strings.NewReplacer("NAME", name, "IMAGE", e.image, "WAIT", wait.String()).Replace(auditJob)
	objs, err := manifests.Decode([]byte(y))
	if err != nil {
		return nil, err
	}
	if err := e.s.Apply.Delete(ctx, objs[0]); err != nil {
		return nil, err
	}
	// A Job of the same name being deleted blocks the apply until it is gone.
	for i := 0; i < 60; i++ {
		if _, err := e.s.Apply.Get(ctx, objs[0]); err != nil {
			break
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return nil, err
		}
	}
	if err := e.s.Apply.Apply(ctx, objs); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait + 3*time.Minute)
	for {
		job, err := e.cs.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil && (job.Status.Succeeded > 0 || job.Status.Failed > 0) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("audit job %s did not finish within %s", name, wait+3*time.Minute)
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return nil, err
		}
	}
	pods, err := e.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + name})
	if err != nil || len(pods.Items) == 0 {
		return nil, fmt.Errorf("audit job %s: no pod (%w)", name, err)
	}
	logs, err := e.cs.CoreV1().Pods(namespace).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{Container: "txaudit"}).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit job %s logs: %w", name, err)
	}
	var r auditReport
	// The report is the one JSON object txaudit prints on stdout.
	s := string(logs)
	if i := strings.Index(s, "{"); i >= 0 {
		s = s[i:]
	}
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, fmt.Errorf("audit job %s: report not JSON: %w\n%s", name, err, logs)
	}
	return &r, nil
}

// canaryOnCustomers says what the canary checks (the harness's webhooks) spent of customers' accounts, ""
// when nothing: they spend canary accounts only.
func (r *auditReport) canaryOnCustomers() string {
	o := r.Bank.Canary.OnCustomerAccounts
	if o.Transactions == 0 {
		return ""
	}
	return fmt.Sprintf("canary checks spent customer accounts: %d transactions, %d approved (%v minor units; "+
		"txaudit bank.canary.on_customer_accounts)", o.Transactions, o.Approved, o.Amounts)
}
