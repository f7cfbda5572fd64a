package e2e

import (
	"context"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/txmesh/txmesh/test/cluster/istio"
	"github.com/txmesh/txmesh/test/cluster/kind"
	"github.com/txmesh/txmesh/test/cluster/stack"
)

// nodes are the node faults the scenarios inject: the throwaway cluster does them with its network
// namespaces and processes (*kube.Cluster), kind with docker (*kind.Nodes).
type nodes interface {
	Kubeconfig() string
	KillNode(name string) error
	RebootNode(ctx context.Context, name string) error
	CutNode(name string) error
	HealNode(name string) error
	WaitNodeReady(ctx context.Context, name string, ready bool, d time.Duration) error
	BlockFromPod(node, podIP string, port int, dst []string) error
	UnblockFromPod(node string) error
}

// Attach is a running kind cluster the scenarios run on instead of the throwaway one (cmd/e2e -attach):
// CloudNativePG's operator installed, the txmesh image pushed to Registry by the run.
type Attach struct {
	Kubeconfig string
	Registry   string // host:port, plain HTTP; the overlay names its images <Registry>/txmesh
	Overlay    string // kustomize/overlays/<Overlay>
	Network    string // the docker network of the kind nodes
	// Mesh: Istio runs on the cluster and Overlay puts txmesh in its mesh (kustomize/overlays/kind-mesh): the
	// run is meshSchedule, its client comes through the ingress gateway.
	Mesh bool
}

// splitAttached separates the schedule into what runs attached and the rows of what cannot, in order: a
// scenario that needs a harness component (only the throwaway cluster has them), or a scenario that cannot
// run there, is reported as not run with the reason (never passed). Every other scenario runs there as it
// does here.
func splitAttached(sched []scenario) (run []scenario, skipped []*Row) {
	notRun := map[string]bool{}
	for _, sc := range sched {
		var why []string
		for _, n := range sc.needs {
			if d, ok := harness[n]; ok {
				why = append(why, d)
			} else if notRun[n] {
				why = append(why, n+", which cannot run here")
			}
		}
		if len(why) == 0 {
			run = append(run, sc)
			continue
		}
		notRun[sc.name] = true
		r := &Row{Name: sc.name, Expect: "clean", NotRun: "needs " + strings.Join(why, "; "), Checks: []string{}}
		if sc.negative {
			r.Expect = "loss"
		}
		skipped = append(skipped, r)
	}
	return run, skipped
}

// runAttached is Run on a cluster the run did not start: nothing to bring up or down, no memory budget
// (the cluster is not this machine's), the rows that cannot run there reported as not run.
func runAttached(ctx context.Context, o Options, sched []scenario) (*Result, error) {
	res := &Result{Rate: o.Rate, Seed: o.Seed, StartedAt: time.Now().UTC(), Timing: map[string]float64{}}
	t0 := time.Now()
	s, err := stack.Attach(ctx, stack.AttachOptions{RepoRoot: o.Repo, Kubeconfig: o.Attach.Kubeconfig,
		Registry: o.Attach.Registry, Overlay: o.Attach.Overlay, Mesh: o.Attach.Mesh, Log: o.Log})
	if err != nil {
		return nil, err
	}
	res.Timing["cluster_up"] = time.Since(t0).Seconds()
	cs, err := s.Clientset()
	if err != nil {
		return nil, err
	}
	e, err := newEnv(ctx, s, kind.New(o.Attach.Kubeconfig, o.Attach.Network, cs), o)
	if err != nil {
		return nil, err
	}
	if err := e.describeAttached(ctx, res); err != nil {
		return nil, err
	}
	if res.Cluster.PostgresVersion, err = e.postgresVersion(ctx, false); err != nil {
		return nil, err
	}
	run, skipped := splitAttached(sched)
	t1 := time.Now()
	for i, sc := range run {
		res.Scenarios = append(res.Scenarios, e.runScenario(ctx, sc, uint64(i)+o.Seed))
		if ctx.Err() != nil {
			break
		}
	}
	res.Timing["scenarios"] = time.Since(t1).Seconds()
	res.Timing["total"] = time.Since(t0).Seconds()
	res.Passed = len(res.Scenarios) == len(run) && len(run) > 0
	for _, r := range res.Scenarios {
		res.Passed = res.Passed && r.Passed
	}
	res.Scenarios = inScheduleOrder(sched, append(res.Scenarios, skipped...))
	return res, write(res, o.Out)
}

// inScheduleOrder sorts rows as the schedule runs them.
func inScheduleOrder(sched []scenario, rows []*Row) []*Row {
	pos := func(name string) int {
		return slices.IndexFunc(sched, func(sc scenario) bool { return sc.name == name })
	}
	sort.SliceStable(rows, func(i, j int) bool { return pos(rows[i].Name) < pos(rows[j].Name) })
	return rows
}

// describeAttached fills the result's cluster line from the API: the nodes the scenarios may fault.
func (e *env) describeAttached(ctx context.Context, res *Result) error {
	v, err := e.cs.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	res.Cluster.Kubernetes = v.GitVersion
	res.Cluster.CNPG = "installed beside the run (its chart)"
	res.Cluster.Mesh = "none in namespace " + namespace + ": the apps' own mTLS (kustomize/overlays/" + e.opts.Attach.Overlay + ")"
	if e.opts.Attach.Mesh {
		res.Cluster.Mesh = "Istio " + istio.Version + " (sidecars, STRICT mTLS, mesh/) in namespace " + namespace +
			" (kustomize/overlays/" + e.opts.Attach.Overlay + ")"
	}
	nl, err := e.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nl.Items {
		res.Cluster.Nodes = append(res.Cluster.Nodes, n.Name+" ("+n.Labels["topology.kubernetes.io/zone"]+")")
		res.Cluster.Containerd = strings.TrimPrefix(n.Status.NodeInfo.ContainerRuntimeVersion, "containerd://")
	}
	return nil
}

// killPostmasterExec kill -9s PostgreSQL's postmaster from inside its container (PGDATA/postmaster.pid
// names it): an attached cluster's node processes are not this machine's to signal.
func (e *env) killPostmasterExec(p cnpgPrimary) error {
	_, err := e.kubectl(context.Background(), "kubectl", killPostmasterArgs(p.Pod)...)
	return err
}

func killPostmasterArgs(pod string) []string {
	return []string{"exec", "-n", namespace, pod, "-c", "postgres", "--", "sh", "-c",
		`kill -9 "$(head -n 1 "$PGDATA/postmaster.pid")"`}
}
