package main

import (
	"fmt"
	"math"
	"strings"
)

// Input is one number the model starts from: a figure txmesh measured (make bench, make lab, make run, make
// e2e) or an assumption, each with where it comes from.
type Input struct {
	Key      string // flag name
	Value    float64
	Unit     string
	Measured bool
	Source   string
}

// Inputs are the model's starting points. Defaults are docs/performance.md's last make bench (2026-11-29,
// primary + synchronous standby, fsync on, 2 shared vCPUs), the lab's failover figures (docs/lab.md), the WAL
// measured with make run (docs/scaling.md), and the assumptions of docs/scaling.md.
type Inputs struct {
	list []*Input
	byK  map[string]*Input
}

func (in *Inputs) add(key string, v float64, unit string, measured bool, source string) {
	i := &Input{Key: key, Value: v, Unit: unit, Measured: measured, Source: source}
	in.list = append(in.list, i)
	in.byK[key] = i
}

// Get returns the value of key; an unknown key is a programming error.
func (in *Inputs) Get(key string) float64 {
	i, ok := in.byK[key]
	if !ok {
		panic("capacity: no input " + key)
	}
	return i.Value
}

// Set changes an input (the command's flags).
func (in *Inputs) Set(key string, v float64) error {
	i, ok := in.byK[key]
	if !ok {
		return fmt.Errorf("no input %q", key)
	}
	i.Value = v
	return nil
}

// List returns the inputs in the order they are documented.
func (in *Inputs) List() []*Input { return in.list }

// DefaultInputs returns the documented inputs.
func DefaultInputs() *Inputs {
	in := &Inputs{byK: map[string]*Input{}}
	const bench = "make bench 2026-11-29, primary + sync standby (docs/performance.md)"
	// The target.
	in.add("peak-per-min", 6e6, "purchases/min", false, "design target: peak minute, all regions")
	in.add("peak-to-average", 3, "×", false, "peak minute over the day's average minute (retail/card traffic; to be replaced by real traffic)")
	// Measured per purchase, CPU time (vCPU-ms) at saturation.
	in.add("bank-db-ms", 0.486, "vCPU-ms/purchase", true, bench+": PostgreSQL CPU per Bank transaction, primary and standby processes")
	in.add("bank-ms", 0.164, "vCPU-ms/purchase", true, bench+": Bank process CPU per transaction, HTTPS+mTLS")
	in.add("store-db-deliver-ms", 0.367, "vCPU-ms/purchase", true, bench+": outbox drain PostgreSQL 0.853 minus the Bank's 0.486 (claim + outcome on store-db)")
	in.add("store-deliver-ms", 0.272, "vCPU-ms/purchase", true, bench+": outbox drain Bank+Store 0.436 minus the Bank's 0.164 (the relay)")
	in.add("store-db-accept-ms", 0.486, "vCPU-ms/purchase", false, "not isolated by make bench: taken equal to the Bank's statement (one synchronously replicated commit of two rows)")
	in.add("store-accept-ms", 0.164, "vCPU-ms/purchase", false, "not isolated by make bench: taken equal to the Bank process (same HTTP, JSON, one statement)")
	in.add("sidecar-ms", 0.20, "vCPU-ms/request/proxy", false, "Istio's published sidecar cost, 0.20 vCPU per 1,000 requests/s (no mesh on this machine); 3 proxy passes per purchase")
	in.add("e2e-max", 635, "purchases/s", true, bench+": end-to-end sustained maximum, everything on 2 vCPUs (Store API → outbox → Bank)")
	in.add("wal-bytes", 2112, "bytes/purchase", true, "make run at 200/s, 2026-12-01: 10,525,008 WAL bytes for 4,984 purchases, bank and store together, full_page_writes on")
	// Node sizes and how far a node is loaded.
	in.add("db-vcpu", 16, "vCPU", false, "database node: terraform/azure db_pool default, Standard_E16ds_v5 (16 vCPU, 128 GiB)")
	in.add("app-vcpu", 8, "vCPU", false, "application node: terraform/azure apps_pool (Standard_D8ds_v5)")
	in.add("db-scaling", 0.6, "×", false, "throughput per vCPU on a 16-vCPU primary relative to the 2-vCPU measurement (WAL insert and lock contention); to be measured on the real node")
	in.add("db-utilisation", 0.5, "×", false, "primary CPU at peak: the other half drains a backlog as fast as it grew (outage, failover) and absorbs checkpoints and vacuum")
	in.add("app-utilisation", 0.6, "×", false, "service CPU at peak (HPA target)")
	in.add("zones", 3, "zones", false, "zones per region (terraform/azure zones)")
	in.add("instances", 3, "instances", false, "CloudNativePG instances per database (kustomize base: 3, synchronous ANY 1)")
	in.add("dr-instances", 2, "instances", false, "instances of each CloudNativePG replica cluster in the paired region")
	in.add("wal-compression", 3, "×", false, "gzip on the WAL archive (kustomize/overlays/production); not measured")
	in.add("retention-days", 30, "days", true, "kustomize/overlays/production ObjectStore retentionPolicy 30d")
	// Failover, measured by the lab (kill -9 of the primary, synchronous standby promoted).
	in.add("failover-commit-s", 3.3, "s", true, "make lab 9m, worst of 2 failovers: kill -9 of the primary → first Bank commit on the new one (docs/lab.md)")
	in.add("failover-gap-s", 7.3, "s", true, "make lab 9m, worst of 2: Bank's last commit before the kill → first after (includes the 4 s replication cut)")
	// Failover on Kubernetes, measured by make e2e (CloudNativePG 1.30, 3 nodes in 3 zones, 2026-12-01 run).
	in.add("e2e-pod-failover-s", 17.9, "s", true, "make e2e 2026-12-01, worst of bank-db and store-db: primary pod deleted → standby promoted (0 lost)")
	in.add("outage-s", 82.6, "s", true, "make e2e 2026-12-01, worst of node-kill and node-cut: node lost → first Bank commit on the new primary (0 lost)")
	return in
}

// Row is one line of the capacity table: what, the value, how it was derived.
type Row struct {
	What, Value, How string
}

// Result is the model's output.
type Result struct {
	Rows  []Row
	Cells int
}

func ceil(x float64) int { return int(math.Ceil(x - 1e-9)) }

func num(x float64) string {
	switch {
	case x >= 100:
		return group(int64(math.Round(x)))
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	case x >= 1:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

func group(n int64) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Model derives the capacity table from the inputs.
func Model(in *Inputs) Result {
	g := in.Get
	var r Result
	add := func(what, value, how string) { r.Rows = append(r.Rows, Row{what, value, how}) }

	peak := g("peak-per-min") / 60
	avg := peak / g("peak-to-average")
	add("peak", num(peak)+" purchases/s", fmt.Sprintf("%s/min ÷ 60", group(int64(g("peak-per-min")))))
	add("average", num(avg)+" purchases/s", fmt.Sprintf("peak ÷ %s; %s million a day", num(g("peak-to-average")), num(avg*86400/1e6)))

	// One primary: measured CPU per purchase, a bigger node at an assumed efficiency, loaded to the target.
	perVCPU := func(ms float64) float64 { return 1000 / ms }
	usable := g("db-vcpu") * g("db-scaling") * g("db-utilisation")
	bankCap := usable * perVCPU(g("bank-db-ms"))
	storeMs := g("store-db-deliver-ms") + g("store-db-accept-ms")
	storeCap := usable * perVCPU(storeMs)
	add("bank-db primary at peak load", num(bankCap)+" purchases/s",
		fmt.Sprintf("%s vCPU × %s × %s ÷ %s ms", num(g("db-vcpu")), num(g("db-scaling")), num(g("db-utilisation")), num(g("bank-db-ms"))))
	add("store-db primary at peak load", num(storeCap)+" purchases/s",
		fmt.Sprintf("same node ÷ (%s deliver + %s accept) ms: the outbox costs store-db more than the ledger costs bank-db", num(g("store-db-deliver-ms")), num(g("store-db-accept-ms"))))
	// The same per-purchase costs on the bench's 2 vCPUs against what the bench measured end to end.
	perPurchase := g("bank-db-ms") + storeMs + g("bank-ms") + g("store-deliver-ms") + g("store-accept-ms")
	predicted := 2 * perVCPU(perPurchase)
	add("check: these costs on 2 vCPUs", num(predicted)+" purchases/s",
		fmt.Sprintf("2 vCPU ÷ %s ms per purchase; make bench measured %s/s end to end: the costs are %s× optimistic there (the load generator and idle wake-ups share the cores), inside what db-scaling takes off", num(perPurchase), num(g("e2e-max")), num(predicted/g("e2e-max"))))
	cellCap := math.Min(bankCap, storeCap)
	add("one cell (Store + Bank + store-db + bank-db)", num(cellCap)+" purchases/s", "the smaller of the two primaries")
	r.Cells = ceil(peak / cellCap)
	add("**cells for the peak**", fmt.Sprintf("**%d**", r.Cells), fmt.Sprintf("%s ÷ %s, rounded up; each cell at ≤ %s of its primaries' CPU at peak", num(peak), num(cellCap), pct(g("db-utilisation"))))
	dbNodes := r.Cells * 2 * int(g("instances"))
	add("database nodes, home region(s)", fmt.Sprint(dbNodes), fmt.Sprintf("cells × 2 databases × %d instances, one per node, spread over %d zones", int(g("instances")), int(g("zones"))))
	add("database nodes, replica clusters", fmt.Sprint(r.Cells*2*int(g("dr-instances"))), fmt.Sprintf("cells × 2 × %d in the paired region (designated primary + standby)", int(g("dr-instances"))))

	// Losing a zone: every database keeps a primary and a synchronous standby (3 → 2 instances), so its
	// capacity holds; the services lose a third of their pods, so they are sized for two zones.
	zoneFactor := g("zones") / (g("zones") - 1)
	add("a zone lost: databases", "capacity unchanged", fmt.Sprintf("each database keeps %d of %d instances: a primary (promoted in the lab in ≤ %s s to first commit) and a synchronous standby", int(g("instances"))-1, int(g("instances")), num(g("failover-commit-s"))))
	appMs := g("bank-ms") + g("store-deliver-ms") + g("store-accept-ms")
	meshMs := 3 * g("sidecar-ms")
	appVCPU := peak * (appMs + meshMs) / 1000 / g("app-utilisation") * zoneFactor
	add("service vCPU at peak, sized for a lost zone", num(appVCPU)+" vCPU",
		fmt.Sprintf("peak × (%s services + %s sidecars) ms ÷ %s × %d/%d zones", num(appMs), num(meshMs), num(g("app-utilisation")), int(g("zones")), int(g("zones"))-1))
	add("application nodes", fmt.Sprint(ceil(appVCPU/g("app-vcpu"))), fmt.Sprintf("÷ %s vCPU per node (before the platform's own pods)", num(g("app-vcpu"))))

	// Recovery: a backlog grows at the cell's rate and drains with its spare capacity.
	load := cellCap
	spare := cellCap/g("db-utilisation") - load
	add("backlog of a "+num(g("outage-s"))+" s stop of one cell's commits (a node lost), per cell", num(load*g("outage-s"))+" purchases",
		fmt.Sprintf("drained in %s s with the spare %s purchases/s (make bench drained 100,000 in 75 s on 2 vCPUs)", num(load*g("outage-s")/spare), num(spare)))
	add("failover of one primary", fmt.Sprintf("RPO 0, %s s (lab) to %s s (pod on Kubernetes) to %s s (node)", num(g("failover-commit-s")), num(g("e2e-pod-failover-s")), num(g("outage-s"))),
		fmt.Sprintf("lab: 0 lost over 2 failovers, Bank gap ≤ %s s; make e2e: 0 lost in every failover; one failover touches 1 cell of %d (%s of accounts)", num(g("failover-gap-s")), r.Cells, pct(1/float64(r.Cells))))

	// WAL: what replication across zones and regions carries, and what the archive keeps.
	walCell := cellCap * g("wal-bytes") / 1e6
	add("WAL per cell at peak", num(walCell)+" MB/s", fmt.Sprintf("%s purchases/s × %s bytes; ×%d to the standbys across zones, ×1 to the replica cluster", num(cellCap), group(int64(g("wal-bytes"))), int(g("instances"))-1))
	walDay := avg * g("wal-bytes") * 86400 / 1e12
	add("WAL per day, all cells, at the average", num(walDay)+" TB", fmt.Sprintf("archived compressed ÷ %s: %s TB kept for %s days", num(g("wal-compression")), num(walDay/g("wal-compression")*g("retention-days")), num(g("retention-days"))))
	return r
}

func pct(x float64) string { return fmt.Sprintf("%.0f %%", x*100) }

// Markdown renders the inputs and the result as the tables docs/scaling.md shows.
func Markdown(in *Inputs, r Result) string {
	var b strings.Builder
	b.WriteString("| input | value | unit | measured? | source |\n|---|---:|---|---|---|\n")
	for _, i := range in.List() {
		kind := "assumption"
		if i.Measured {
			kind = "measured"
		}
		fmt.Fprintf(&b, "| `-%s` | %s | %s | %s | %s |\n", i.Key, trim(i.Value), i.Unit, kind, i.Source)
	}
	b.WriteString("\n| | result | how |\n|---|---:|---|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", row.What, row.Value, row.How)
	}
	return b.String()
}

func trim(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) >= 1000 {
		return group(int64(v))
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", v), "0"), ".")
}
