// Package e2e is `make e2e`: it brings up the throwaway cluster with txmesh deployed (or reuses the running
// one), drives purchases into the Store's Service at a steady rate, runs each scenario — outages, database
// and node failures, a drain, rolling updates, a bad release, and a negative control that must lose — and
// judges each with txaudit run as a Job in the cluster plus a lookup of every purchase the Store accepted.
// It prints a table and writes e2e-results/e2e.json; the shape follows test/lab (schedule, judge, table, JSON).
// Each scenario is one file, scenario_<name>.go (its fault, needs and checks); schedule.go is the order.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/txmesh/txmesh/test/cluster/cnpg"
	"github.com/txmesh/txmesh/test/cluster/gitserver"
	"github.com/txmesh/txmesh/test/cluster/kube"
	"github.com/txmesh/txmesh/test/cluster/stack"
	"github.com/txmesh/txmesh/test/cluster/txmesh"
)

const namespace = txmesh.Namespace

// Options configure Run.
type Options struct {
	Repo      string
	Scenarios []string // names to run (and what they need), in the schedule's order; all when empty
	Keep      bool     // leave the cluster up afterwards
	Rate      float64  // purchases per second from the driver
	Seed      uint64
	Out       string // results directory
	Log       io.Writer
	Attach    *Attach // run on a running kind cluster instead of the throwaway one
}

// Row is one scenario's result.
type Row struct {
	Name       string             `json:"name"`
	Expect     string             `json:"expect"` // "clean", or "loss" for the negative control
	Passed     bool               `json:"passed"`
	Purchases  int64              `json:"purchases"` // accepted (202) from the driver during the scenario
	Audited    int64              `json:"audited"`   // all purchases in the Store at the audit
	Lost       int64              `json:"lost"`
	Unknown    int64              `json:"unknown"`
	Duplicated int64              `json:"duplicated"`
	Mismatched int64              `json:"mismatched"`
	Imbalanced int64              `json:"imbalanced"`
	Missing202 int64              `json:"missing_202"`
	Client5xx  int64              `json:"client_5xx"`
	Failed     int64              `json:"client_failed"` // purchases a client gave up on (not a loss: never accepted)
	Seconds    float64            `json:"seconds"`
	Times      map[string]float64 `json:"times,omitempty"` // measured intervals in seconds, e.g. kill_to_primary
	Checks     []string           `json:"checks"`          // what the scenario verified, in words
	Client     clientStats        `json:"client"`
	Audit      *auditReport       `json:"audit,omitempty"`
	Error      string             `json:"error,omitempty"`
	NotRun     string             `json:"not_run,omitempty"`  // why the scenario could not run here (attached); Passed is false
	FluxCLI    string             `json:"flux_cli,omitempty"` // cd-bootstrap: the flux CLI that ran `flux bootstrap git`
	// pitr: how far before the recovery target the last recovered commit is, and the recovery's start (the
	// Cluster created) to the recovered database's first answer, in seconds.
	RPOSeconds *float64 `json:"rpo_s,omitempty"`
	RTOSeconds *float64 `json:"rto_s,omitempty"`
	// AlertsFired are the shipped alerts that went to firing caused in the row (the harness's Prometheus,
	// alerts.go); AlertsCarried those already pending or firing when it began; AlertSeconds how long each was
	// pending or firing during it.
	AlertsFired   []string           `json:"alerts_fired"`
	AlertsCarried []string           `json:"alerts_carried,omitempty"`
	AlertSeconds  map[string]float64 `json:"alert_seconds,omitempty"`
}

// Result is the whole run.
type Result struct {
	Scenarios []*Row `json:"scenarios"`
	Cluster   struct {
		Kubernetes string   `json:"kubernetes"`
		Nodes      []string `json:"nodes"`
		CNPG       string   `json:"cnpg"`
		// PostgresVersion is SHOW server_version on both databases; its major must be the manifests'.
		PostgresVersion string `json:"postgres_version"`
		Containerd      string `json:"containerd"`
		Mesh            string `json:"mesh"`
	} `json:"cluster"`
	Memory    *memory            `json:"memory,omitempty"`
	Timing    map[string]float64 `json:"timing"` // seconds: cluster_up, scenarios, total
	Rate      float64            `json:"rate"`
	Seed      uint64             `json:"seed"`
	Passed    bool               `json:"passed"`
	StartedAt time.Time          `json:"started_at"`
}

// env is what scenarios act on.
type env struct {
	s       *stack.Stack
	c       nodes
	cs      kubernetes.Interface
	client  *http.Client
	store   string // https://<store ClusterIP>:8080 (set under storeMu: the load reads it)
	storeMu sync.Mutex
	image   string            // the txmesh image deployed
	gitops  *gitserver.GitOps // the Git server Flux reconciles from, once cd-bootstrap ran
	hooks   *flaggerHooks     // the webhooks Flagger calls, once cd-bootstrap ran
	emptied time.Time         // when cd-bootstrap emptied the namespace
	// scheduled are the completed Backups seen by ScheduledBackup (scheduledBackupDone): the Barman Cloud
	// plugin deletes a Backup once it is no longer in its cluster's catalog (major-upgrade moves the catalog).
	scheduled map[string]string
	opts      Options
	log       io.Writer
}

func (e *env) logf(format string, a ...any) {
	fmt.Fprintf(e.log, "%s e2e: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

// Run runs the scenarios and returns the result (an error only when the run itself could not happen).
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Rate == 0 {
		o.Rate = 20
	}
	if o.Out == "" {
		o.Out = filepath.Join(o.Repo, "e2e-results")
	}
	sched, added, err := planFor(o.Attach != nil && o.Attach.Mesh, o.Scenarios)
	if err != nil {
		return nil, err
	}
	for _, a := range added {
		fmt.Fprintf(o.Log, "e2e: also running %s\n", a)
	}
	if o.Attach != nil {
		return runAttached(ctx, o, sched)
	}
	res := &Result{Rate: o.Rate, Seed: o.Seed, StartedAt: time.Now().UTC(), Timing: map[string]float64{}}
	t0 := time.Now()
	upgrade := slices.ContainsFunc(sched, func(sc scenario) bool { return sc.name == majorUpgrade.name })
	s, err := stack.Up(ctx, stack.Options{RepoRoot: o.Repo, Log: o.Log, BankDBUpgrade: upgrade})
	if err != nil {
		return nil, err
	}
	if !o.Keep {
		defer func() {
			if err := kube.Down(s.Cluster.Layout(), o.Log); err != nil {
				fmt.Fprintln(o.Log, "e2e: cluster down:", err)
			}
		}()
	}
	res.Timing["cluster_up"] = time.Since(t0).Seconds()
	e, err := newEnv(ctx, s, s.Cluster, o)
	if err != nil {
		return nil, err
	}
	res.Cluster.Kubernetes, res.Cluster.CNPG = kube.Version, cnpg.Version
	res.Cluster.Containerd = containerdVersion()
	res.Cluster.Mesh = "none: the apps' own mTLS (no Envoy build is obtainable offline)"
	if res.Cluster.PostgresVersion, err = e.postgresVersion(ctx, upgrade); err != nil {
		return nil, err
	}
	for _, n := range s.Cluster.Nodes() {
		res.Cluster.Nodes = append(res.Cluster.Nodes, n.Name+" ("+n.Zone+")")
	}
	t1 := time.Now()
	for i, sc := range sched {
		row := e.runScenario(ctx, sc, uint64(i)+o.Seed)
		res.Scenarios = append(res.Scenarios, row)
		if i == 0 {
			res.Memory = measureMemory(s.Cluster)
		}
		if ctx.Err() != nil {
			break
		}
	}
	res.Timing["scenarios"] = time.Since(t1).Seconds()
	res.Timing["total"] = time.Since(t0).Seconds()
	res.Passed = len(res.Scenarios) == len(sched)
	for _, r := range res.Scenarios {
		res.Passed = res.Passed && r.Passed
	}
	if res.Memory != nil {
		res.Passed = res.Passed && res.Memory.PSSBytes < memoryBudget
	}
	return res, write(res, o.Out)
}

func newEnv(ctx context.Context, s *stack.Stack, c nodes, o Options) (*env, error) {
	cs, err := s.Clientset()
	if err != nil {
		return nil, err
	}
	e := &env{s: s, c: c, cs: cs, image: s.Images["txmesh"].Ref, opts: o, log: o.Log}
	if s.Meshed() {
		e.client = meshClient()
		if e.store, err = e.meshStoreURL(ctx); err != nil {
			return nil, err
		}
		return e, e.waitStoreReachable(ctx, 2*time.Minute)
	}
	if e.client, err = newClient(s.TLS); err != nil {
		return nil, err
	}
	if e.store, err = e.serviceURL(ctx, "store"); err != nil {
		return nil, err
	}
	return e, e.waitStoreReachable(ctx, 2*time.Minute)
}

func (e *env) storeURL() string {
	e.storeMu.Lock()
	defer e.storeMu.Unlock()
	return e.store
}

// runScenario runs one scenario under load and judges it.
func (e *env) runScenario(ctx context.Context, sc scenario, seed uint64) *Row {
	row := &Row{Name: sc.name, Expect: "clean", Times: map[string]float64{}}
	if sc.negative {
		row.Expect = "loss"
	}
	e.logf("── scenario %s: %s", sc.name, sc.fault)
	start := time.Now()
	var err error
	if sc.before != nil {
		err = sc.before(ctx, e, row)
	}
	lctx, stopLoad := context.WithCancel(ctx)
	d := newDriver(e.storeURL, e.client, e.opts.Rate, seed, sc.name)
	go d.run(lctx)
	if err == nil {
		err = sc.run(ctx, e, row)
	}
	stopLoad()
	<-d.stopped
	if err != nil {
		row.Error = err.Error()
		e.logf("scenario %s: %v", sc.name, err)
	}
	row.Client = d.stats()
	row.Purchases, row.Client5xx, row.Failed = row.Client.Accepted, row.Client.Status5xx, row.Client.Failed
	if ctx.Err() != nil { // interrupted: no judging, the run ends and the cluster comes down
		row.Error = strings.TrimSpace(row.Error + "; interrupted")
		return row
	}
	// The audit waits for the outbox to drain; the system must be whole again first.
	if herr := e.s.WaitHealthy(ctx, 6*time.Minute); herr != nil && row.Error == "" {
		row.Error = "not healthy after the scenario: " + herr.Error()
	}
	healthy := time.Now()
	rep, aerr := e.audit(ctx, "txaudit-"+sc.name, 3*time.Minute)
	if aerr != nil {
		row.Error = strings.TrimSpace(row.Error + "; audit: " + aerr.Error())
	} else {
		row.Audit = rep
		if msg := rep.canaryOnCustomers(); msg != "" {
			row.Error = strings.TrimSpace(row.Error + "; " + msg)
		}
		row.Lost, row.Unknown, row.Duplicated = rep.Defects["lost"], rep.Defects["unknown"], rep.Defects["duplicate"]
		row.Mismatched, row.Imbalanced = rep.Defects["mismatch"], rep.Defects["imbalance"]
		for _, n := range rep.Purchases {
			row.Audited += n
		}
	}
	if !e.s.Attached() {
		if err := e.settleAlerts(ctx, healthy); err != nil {
			row.Checks = append(row.Checks, "alerts: "+err.Error())
		}
		e.recordAlerts(ctx, sc, row, start)
	}
	ids := d.accepted202()
	missing, notFinal, verr := verify202s(ctx, e.client, e.store, ids)
	if verr != nil {
		row.Error = strings.TrimSpace(row.Error + "; 202 lookup: " + verr.Error())
	}
	row.Missing202, row.Client.NotFinal, row.Client.Checked = missing+notFinal, notFinal, int64(len(ids))
	row.Client.MissingFrom = row.Missing202
	row.Seconds = time.Since(start).Seconds()
	row.Passed = judge(sc, row, rep)
	e.logf("scenario %s: %s in %.0fs — purchases %d, lost %d, 202-missing %d, client 5xx %d, failed %d",
		sc.name, map[bool]string{true: "PASS", false: "FAIL"}[row.Passed], row.Seconds, row.Purchases, row.Lost,
		row.Missing202, row.Client5xx, row.Failed)
	if len(row.Client.Why5xx) > 0 {
		e.logf("scenario %s: the clients' 5xx answers: %v", sc.name, row.Client.Why5xx)
	}
	if !row.Passed {
		e.failureLogs(ctx, sc.name, time.Since(start))
	}
	return row
}

// judge: a clean scenario has no defect of any kind, every 202 final in the Store, a drained outbox, the
// scenario's own checks passed, and (where the scenario promises it) no client-visible failure. The
// negative control passes when the audit sees the loss it was built to cause.
func judge(sc scenario, r *Row, rep *auditReport) bool {
	if rep == nil || rep.Drained == nil || !*rep.Drained {
		return false
	}
	if sc.negative {
		return r.Lost > 0 && r.Error == ""
	}
	clean := r.Error == "" && r.Lost == 0 && r.Unknown == 0 && r.Duplicated == 0 && r.Mismatched == 0 &&
		r.Imbalanced == 0 && r.Missing202 == 0 && r.Purchases > 0
	if sc.noClientErrors {
		clean = clean && r.Client5xx == 0 && r.Failed == 0
	}
	if sc.retriesOnly {
		clean = clean && r.Client.Other5xx == 0 && r.Failed == 0
	}
	return clean
}

func write(res *Result, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "e2e.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	// The table as printed, beside the JSON: the workflows upload the directory and show the table.
	var t bytes.Buffer
	res.Table(&t)
	return os.WriteFile(filepath.Join(dir, "table.md"), t.Bytes(), 0o644)
}
