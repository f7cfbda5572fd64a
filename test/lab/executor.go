package lab

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txmesh/txmesh/src/localenv/httpfault"
)

// executor applies the planned faults, each at its time, and keeps what is active for the progress line.
type executor struct {
	r      *run
	mu     sync.Mutex
	active map[string]string // key → description
	counts map[string]int
	fos    []*failover
	// storeDBDown is set from a kill of store-db until its restart has finished: a second kill meanwhile
	// would hit the crash recovery of the first.
	storeDBDown atomic.Bool
	proxyMu     map[string]*sync.Mutex // one toxic at a time per proxy (see apply)
	standbys    []window               // store-db standby gone: paused → resumed
	stalls      []window               // stalled clients against a Store
}

// window is when a fault held: From its start To its end (for a standby: its return), against Target.
type window struct {
	From, To time.Time
	Target   string
	Detail   string
}

func newExecutor(r *run) *executor {
	return &executor{r: r, active: map[string]string{}, counts: map[string]int{}}
}

func (e *executor) count(kind string) {
	e.mu.Lock()
	e.counts[kind]++
	e.mu.Unlock()
}

func (e *executor) set(key, desc string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if desc == "" {
		delete(e.active, key)
	} else {
		e.active[key] = desc
	}
}

func (e *executor) activeList() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var l []string
	for _, d := range e.active {
		l = append(l, d)
	}
	sort.Strings(l)
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// run applies every fault at start+At and returns when all are over (a failover may outlast the phase).
func (e *executor) run(ctx context.Context, start time.Time, faults []fault) {
	var wg sync.WaitGroup
	for i, f := range faults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleep(ctx, time.Until(start.Add(f.At))) {
				return
			}
			e.apply(ctx, i, f)
		}()
	}
	wg.Wait()
}

func (e *executor) proxyLock(target string) *sync.Mutex {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proxyMu == nil {
		e.proxyMu = map[string]*sync.Mutex{}
	}
	if e.proxyMu[target] == nil {
		e.proxyMu[target] = &sync.Mutex{}
	}
	return e.proxyMu[target]
}

func (e *executor) proxy(target string) *netProxy {
	if target == BankToDB {
		return e.r.db.rw
	}
	return e.r.toBank
}

func (e *executor) apply(ctx context.Context, i int, f fault) {
	r := e.r
	key := f.Kind + "/" + f.Target + "/" + f.Toxic.Name
	switch f.Kind {
	case KillBank, KillStore:
		p := r.service(f.Target)
		if !p.Kill() {
			r.logf("%s: %s already down, skipped", f.Kind, f.Target)
			return
		}
		e.count(f.Kind)
		e.set(key, f.Kind+" "+f.Target)
		r.logf("fault: kill -9 %s (restart in %.1fs)", f.Target, f.For.Seconds())
		sleep(ctx, f.For)
		if err := p.Start(); err != nil {
			r.logf("restart %s: %v", f.Target, err)
		}
		e.set(key, "")
	case KillStoreDB:
		if !e.storeDBDown.CompareAndSwap(false, true) {
			r.logf("%s: store-db is still down or recovering from the last one, skipped", f.Kind)
			return
		}
		defer e.storeDBDown.Store(false)
		if err := r.storeDB.Kill(); err != nil {
			r.logf("%s: %v, skipped", f.Kind, err)
			return
		}
		e.count(f.Kind)
		e.set(key, f.Kind)
		r.logf("fault: kill -9 store-db (restart in %.1fs)", f.For.Seconds())
		sleep(ctx, f.For)
		if err := r.storeDB.Restart(ctx); err != nil {
			r.logf("restart store-db: %v", err)
		}
		e.set(key, "")
	case BankOutage:
		e.count(f.Kind)
		e.set(key, "bank outage")
		r.logf("fault: Bank outage for %.0fs (%s refused: the breakers should open, the backlog grow)",
			f.For.Seconds(), f.Target)
		r.toBank.cut()
		sleep(ctx, f.For)
		if err := r.toBank.restore(); err != nil {
			r.logf("restore %s: %v", f.Target, err)
		}
		e.set(key, "")
		r.logf("fault over: Bank reachable again")
	case failoverKind:
		e.failover(ctx, f)
	case MeshDeny, MeshNoRoute, MeshDenyAfter, MeshCorrupt:
		e.mesh(ctx, key, f)
	case StandbyGone:
		e.standbyGone(ctx, key, f)
	case Stall:
		e.stall(ctx, key, f)
	default:
		// One toxic at a time per proxy: toxiproxy (v2.12) can block forever removing a toxic chained before
		// one that has closed its link (reset_peer, timeout) — the proxy, and every later fault and the
		// failover's re-pointing, would hang with it (Shopify/toxiproxy#558). A toxic waits for the previous
		// one on its proxy to end; toxics on the two proxies, kills and outages still combine.
		mu := e.proxyLock(f.Target)
		mu.Lock()
		defer mu.Unlock()
		px := e.proxy(f.Target)
		if err := px.addToxic(f.Toxic); err != nil {
			r.logf("fault %s: %v", f.Kind, err)
			return
		}
		e.count(f.Kind)
		e.set(key, f.Toxic.Type+" "+f.Target)
		r.logf("fault: %s", strings.TrimSpace(f.String()[8:]))
		sleep(ctx, f.For)
		if err := px.removeToxic(f.Toxic.Name); err != nil {
			r.logf("remove toxic %s: %v", f.Toxic.Name, err)
		}
		e.set(key, "")
	}
}

// meshFaults are the sidecar's faults for a mesh fault kind with share p of the requests.
func meshFaults(kind string, p float64) httpfault.Faults {
	switch kind {
	case MeshDeny:
		return httpfault.Faults{Deny: p}
	case MeshNoRoute:
		return httpfault.Faults{NoRoute: p}
	case MeshDenyAfter:
		return httpfault.Faults{DenyAfter: p}
	}
	return httpfault.Faults{Corrupt: p}
}

// mesh puts a fault in a Store's sidecar for f.For.
func (e *executor) mesh(ctx context.Context, key string, f fault) {
	sc := e.r.sidecars[f.Target]
	e.count(f.Kind)
	e.set(key, f.Kind+" "+f.Target)
	e.r.logf("fault: %s", strings.TrimSpace(f.String()[8:]))
	sc.set(meshFaults(f.Kind, f.Prob))
	sleep(ctx, f.For)
	sc.set(httpfault.Faults{})
	e.set(key, "")
}

// standbyGone pauses store-db's synchronous standby for f.For: every commit on store-db waits meanwhile.
func (e *executor) standbyGone(ctx context.Context, key string, f fault) {
	r := e.r
	if err := r.storeStandby.Pause(); err != nil {
		r.logf("%s: %v, skipped", f.Kind, err)
		return
	}
	w := window{From: time.Now(), Target: f.Target}
	e.count(f.Kind)
	e.set(key, "store-db standby gone")
	r.logf("fault: %s (Store commits wait until it returns)", strings.TrimSpace(f.String()[8:]))
	sleep(ctx, f.For)
	if err := r.storeStandby.Resume(); err != nil {
		r.logf("resume %s: %v", storeStandbyName, err)
	}
	w.To = time.Now()
	e.mu.Lock()
	e.standbys = append(e.standbys, w)
	e.mu.Unlock()
	e.set(key, "")
	r.logf("fault over: %s back", storeStandbyName)
}

// stall holds stalledClients slow clients against a Store for f.For.
func (e *executor) stall(ctx context.Context, key string, f fault) {
	r := e.r
	p := r.service(f.Target)
	var addr string
	for i, s := range r.stores {
		if s == p {
			addr = strings.TrimPrefix(r.storeURLs[i], "http://")
		}
	}
	e.count(f.Kind)
	e.set(key, fmt.Sprintf("%d stalled clients on %s", stalledClients, f.Target))
	r.logf("fault: %s", strings.TrimSpace(f.String()[8:]))
	w := window{From: time.Now(), Target: f.Target}
	sctx, cancel := context.WithTimeout(ctx, f.For)
	var st stallers
	st.run(sctx, addr, stalledClients)
	cancel()
	w.To = time.Now()
	w.Detail = fmt.Sprintf("%d connections, %d answered 408", st.opened.Load(), st.timedOut.Load())
	e.mu.Lock()
	e.stalls = append(e.stalls, w)
	e.mu.Unlock()
	e.set(key, "")
	r.logf("fault over: stalled clients on %s (%s)", f.Target, w.Detail)
}

// failover: cut the replication stream, let the Bank run on for f.For (an asynchronous primary keeps
// acknowledging what the standby will never see; a synchronous one stalls), kill -9 the primary, and let the
// operator fail over.
func (e *executor) failover(ctx context.Context, f fault) {
	r := e.r
	fo := &failover{}
	e.mu.Lock()
	e.fos = append(e.fos, fo)
	e.mu.Unlock()
	fo.Cut = time.Now()
	r.db.repl.cut()
	e.count(ReplCut)
	e.set("failover", "replication cut")
	r.logf("fault: replication stream %s → %s cut; primary killed in %.0fs", r.db.standby.name,
		r.db.primary.name, f.For.Seconds())
	sleep(ctx, f.For)
	e.set("failover", "bank-db primary down")
	if err := r.db.killPrimary(fo); err != nil {
		fo.Err = err
		r.logf("kill primary: %v", err)
		return
	}
	e.count(KillPrimary)
	r.logf("fault: kill -9 of bank-db primary %s", r.db.primary.name)
	err := r.db.failover(ctx, fo, r.logf)
	if !fo.Promoted.IsZero() {
		e.count(Promotion)
	}
	if !fo.Rejoined.IsZero() {
		e.count(Rejoin)
	}
	if err != nil {
		fo.Err = err
		r.logf("failover: %v", err)
	}
	e.set("failover", "")
}

func (e *executor) windows() (standbys, stalls []window) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]window{}, e.standbys...), append([]window{}, e.stalls...)
}

func (e *executor) snapshot() (map[string]int, []failover) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := map[string]int{}
	for k, v := range e.counts {
		c[k] = v
	}
	var fos []failover
	for _, f := range e.fos {
		fos = append(fos, *f)
	}
	return c, fos
}
