package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/localenv/httpfault"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
	"github.com/txmesh/txmesh/src/localenv/proc"
)

// TestLabShort is the short variant `make test` runs (about two minutes): the synchronous run with every kind
// of fault must lose nothing, and the negative control — the same failover with asynchronous replication and
// the replication stream cut — must lose transactions, or the lab could not fail and would prove nothing.
// LAB_SEED changes the seed.
func TestLabShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the HA lab takes about two minutes")
	}
	if _, err := pglocal.BinDir(); err != nil {
		t.Fatalf("the lab needs the PostgreSQL server binaries: %v", err) // a skipped lab proves nothing
	}
	seed := uint64(7)
	if s := os.Getenv("LAB_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LAB_SEED: %v", err)
		}
		seed = n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out := &lineLogger{t: t}
	common := Config{BinDir: binDir, Seed: seed, Rate: 30, GeneratorInterval: 100 * time.Millisecond,
		Progress: 10 * time.Second, Out: out, Outage: 10 * time.Second}

	syncCfg := common
	syncCfg.Mode, syncCfg.Duration = Sync, 60*time.Second
	start := time.Now()
	syncRes, err := Run(ctx, syncCfg)
	if err != nil {
		t.Fatalf("synchronous run: %v", err)
	}
	syncTook := time.Since(start)

	ctlCfg := common
	ctlCfg.Mode, ctlCfg.Duration, ctlCfg.FailoverOnly = Async, 25*time.Second, true
	start = time.Now()
	ctlRes, err := Run(ctx, ctlCfg)
	if err != nil {
		t.Fatalf("negative control: %v", err)
	}
	t.Logf("synchronous run %s, negative control %s\n%s", syncTook.Round(time.Second),
		time.Since(start).Round(time.Second), Table(syncRes, ctlRes))

	if !syncRes.Passed() {
		t.Errorf("synchronous run: %s", syncRes.Verdict())
	}
	for _, k := range FaultKinds {
		if syncRes.Faults[k] == 0 {
			t.Errorf("synchronous run: no %q fault was injected", k)
		}
	}
	if len(syncRes.BreakerOpen) == 0 {
		t.Errorf("synchronous run: the Bank outage never opened a breaker")
	}
	if ctlRes.Lost() == 0 {
		t.Errorf("negative control: no transaction lost — the lab cannot detect loss")
	}
	if ctlRes.Check.Lost != ctlRes.Lost() {
		t.Errorf("negative control: txaudit says %d lost, the lab's cross-check %d", ctlRes.Lost(), ctlRes.Check.Lost)
	}
	if !syncRes.Audit.Ran || !ctlRes.Audit.Ran {
		t.Logf("txaudit did not run (%s): the verdicts rest on the lab's cross-check", syncRes.Audit.Err)
	}
}

// binDir holds the bank, store and (when present) txaudit commands TestMain built.
var binDir string

// TestMain builds the services before m.Run starts go test's -timeout clock (see proc.BuildDir).
func TestMain(m *testing.M) {
	pkgs := []string{"./src/cmd/bank", "./src/cmd/store"}
	if m, _ := filepath.Glob("../../src/cmd/txaudit/*.go"); len(m) > 0 {
		pkgs = append(pkgs, "./src/cmd/txaudit")
	}
	os.Exit(proc.WithBuild(&binDir, m.Run, "../..", pkgs...))
}

// lineLogger sends the lab's progress lines to t.Log.
type lineLogger struct {
	t   *testing.T
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line)
			return len(p), nil
		}
		l.t.Log(strings.TrimRight(line, "\n"))
	}
}

// hasDefect reports whether one of r's defects mentions what.
func hasDefect(r *Result, what string) bool {
	return slices.ContainsFunc(r.Defects(), func(d string) bool { return strings.Contains(d, what) })
}

// TestDeadLetterRule: a dead letter is the Bank's own rejection (not a loss), or a defect — the Bank applied
// the transaction, or never refused it. The synchronous run fails on either; the relay's negative control
// passes (is caught) only on either.
func TestDeadLetterRule(t *testing.T) {
	refused := map[string]bool{"a": true, "b": true}
	d := classifyDeadLetters([]string{"a", "b", "c", "d"}, map[string]bool{"b": true},
		func(id string) bool { return refused[id] })
	if d.Total != 4 || d.BankRefused != 1 || d.Applied != 1 || d.NotRefused != 2 {
		t.Fatalf("classified %+v, want 1 refused (a), 1 applied (b), 2 never refused (c, d)", d)
	}
	r := &Result{Mode: Sync, DeadLetters: d}
	for _, want := range []string{"1 dead letters of transactions the Bank applied", "2 dead letters the Bank never refused"} {
		if !hasDefect(r, want) {
			t.Errorf("defects %q lack %q", r.Defects(), want)
		}
	}
	if r.Passed() {
		t.Error("a run with dead letters the Bank never refused passed")
	}
	neg := &Result{Mode: Sync, NegativeRelay: true, DeadLetters: d}
	if !neg.Passed() {
		t.Errorf("the relay's negative control with such dead letters is not caught: %s", neg.Verdict())
	}
	clean := &Result{Mode: Sync, DeadLetters: classifyDeadLetters([]string{"a"}, nil, func(id string) bool { return refused[id] })}
	if !clean.Passed() {
		t.Errorf("the Bank's own rejection is not a loss, yet: %s", clean.Verdict())
	}
	if neg := (&Result{Mode: Sync, NegativeRelay: true, DeadLetters: clean.DeadLetters}); neg.Passed() {
		t.Error("a relay negative control with only the Bank's own rejections counts as caught")
	}
	after := &Result{Mode: Sync, DeadLetters: DeadLetters{After: 1, AfterNotRefused: 1}}
	if !hasDefect(after, "after the redrive") {
		t.Errorf("a dead letter left after the redrive that the Bank did not refuse: defects %q", after.Defects())
	}
}

// TestRedriveAudit: every dead letter has its audit line in `store redrive`'s output, and no other purchase.
func TestRedriveAudit(t *testing.T) {
	out := []byte(`{"time":"2026-12-06T06:00:00Z","level":"INFO","msg":"store redrive","version":"dev"}
{"time":"2026-12-06T06:00:00Z","level":"INFO","msg":"` + redriveMsg + `","purchase_id":"a","error_code":"invalid_request"}
not json
{"time":"2026-12-06T06:00:00Z","level":"INFO","msg":"` + redriveMsg + `","purchase_id":"b","error_code":"invalid_request"}
{"time":"2026-12-06T06:00:00Z","level":"INFO","msg":"` + redriveDoneMsg + `","purchases":2}
`)
	ids, done := parseRedrive(out)
	if !slices.Equal(ids, []string{"a", "b"}) || done != 2 {
		t.Fatalf("parsed %v, %d", ids, done)
	}
	if n := auditMismatch([]string{"a", "b"}, ids); n != 0 {
		t.Errorf("matching audit: %d mismatches", n)
	}
	if n := auditMismatch([]string{"a", "b", "c"}, []string{"a", "b", "x"}); n != 2 {
		t.Errorf("c without a line and x of no dead letter: %d mismatches, want 2", n)
	}
	if _, done := parseRedrive([]byte("store: boom\n")); done != -1 {
		t.Errorf("no closing line: done %d, want -1", done)
	}
	r := &Result{Mode: Sync, DeadLetters: DeadLetters{Total: 3, Redriven: 3, AuditMismatch: 2}}
	if !hasDefect(r, "redrive audit lines") {
		t.Errorf("mismatching audit lines: defects %q", r.Defects())
	}
}

// TestAPIRule: a 503'd Purchase-Id that store-db holds is a false 503; an answer other than 202/503/504 is
// unexpected; a 504's purchase stored besides the one its retry stored is a double purchase.
func TestAPIRule(t *testing.T) {
	stored := map[string]bool{"p1": true, "p3": true, "u2": true}
	now := time.Now()
	answers := []postAnswer{
		{Sent: now, Status: 202, ID: "p1"},
		{Sent: now, Status: 503, ID: "p2"}, // truthful: not stored
		{Sent: now, Status: 503, ID: "p3"}, // false
		{Sent: now, Status: 504, ID: "u1"},
		{Sent: now, Status: 500, ID: "p4"},
		{Sent: now, Status: 0},
	}
	unknowns := []unknownOutcome{{ID: "u1", Resolution: resolvedLookup}, {ID: "u2", Resolution: resolvedRetryNew}}
	a := judgeAPI(answers, unknowns, func(id string) bool { return stored[id] })
	if a.False503 != 1 || a.Unexpected != 1 || a.Unknown != 2 || a.DoubleAfter504 != 1 || a.Posts != 6 {
		t.Fatalf("judged %+v", a)
	}
	r := &Result{Mode: Sync, API: a}
	for _, want := range []string{"1 false 503s", "1 POST answers other than", "1 504'd purchases stored"} {
		if !hasDefect(r, want) {
			t.Errorf("defects %q lack %q", r.Defects(), want)
		}
	}
	if ok := judgeAPI(answers[:2], nil, func(id string) bool { return stored[id] }); len((&Result{API: ok}).ContractDefects()) != 0 {
		t.Errorf("truthful answers judged defective: %+v", ok)
	}
}

// TestForeignCountedRule: answers the sidecars injected must show up in the Stores' count.
func TestForeignCountedRule(t *testing.T) {
	if r := (&Result{Mode: Sync, ForeignInjected: 10}); !hasDefect(r, "none counted") {
		t.Errorf("foreign answers injected and not counted: defects %q", r.Defects())
	}
	if r := (&Result{Mode: Sync, ForeignInjected: 10, ForeignCounted: 9}); len(r.ContractDefects()) != 0 {
		t.Errorf("counted (a lower bound across kills): defects %q", r.ContractDefects())
	}
	// The Stores' counters restart from zero when a Store is killed; the lab's total does not.
	var c counter
	for _, v := range []float64{3, 5, 2, 4} {
		c.observe(v)
	}
	if c.total != 9 {
		t.Errorf("counter across a restart: %v, want 5 + 4", c.total)
	}
	text := []byte("# HELP store_relay_foreign_answers_total x\n" +
		"store_relay_foreign_answers_total{code=\"403\"} 4\nstore_relay_foreign_answers_total{code=\"404\"} 2\n" +
		"store_relay_foreign_answers_totalx 100\n")
	if v, ok := sumMetric(text, foreignMetric); !ok || v != 6 {
		t.Errorf("sum %v %v, want 6", v, ok)
	}
}

// TestMeasurements: the standby window's time to the first 202 counts only POSTs sent after the return; the
// stall window's p99 is the stalled Store's, over the POSTs sent during it.
func TestMeasurements(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	w := window{From: at(0), To: at(5)}
	answers := []postAnswer{
		{Sent: at(1), Took: 4500 * time.Millisecond, Status: 202}, // sent before the return: not counted
		{Sent: at(2), Took: 8 * time.Second, Status: 504},
		{Sent: at(5.5), Took: time.Second, Status: 503},
		{Sent: at(6), Took: 500 * time.Millisecond, Status: 202},
		{Sent: at(7), Took: 100 * time.Millisecond, Status: 202},
	}
	s := measureStandby(w, answers)
	if s.ToAccepting != 1500*time.Millisecond || s.ByStatus[202] != 1 || s.ByStatus[504] != 1 {
		t.Errorf("standby: %+v, want back to accepting in 1.5s", s)
	}
	if s := measureStandby(w, answers[:3]); s.ToAccepting != -1 {
		t.Errorf("no 202 after the return: %v, want -1", s.ToAccepting)
	}
	var stall []postAnswer
	for i := range 100 {
		stall = append(stall, postAnswer{Sent: at(1), Store: 1, Took: time.Duration(i+1) * time.Millisecond, Status: 202})
	}
	stall = append(stall, postAnswer{Sent: at(1), Store: 0, Took: time.Minute}, postAnswer{Sent: at(9), Store: 1, Took: time.Hour})
	st := measureStall(window{From: at(0), To: at(5), Target: "store-2"}, 1, stall)
	if st.P99 != 99*time.Millisecond || st.Max != 100*time.Millisecond || st.Posts != 100 || st.OtherStoreP99 != time.Minute {
		t.Errorf("stall: %+v", st)
	}
}

// TestSidecarRecordsBankRejections: the sidecar records a transaction as refused only on the Bank's own
// marked rejection (single or batch item), never on its mesh faults' answers, and the Bank sees the ids the
// Store sent even when the body reaches it garbled.
func TestSidecarRecordsBankRejections(t *testing.T) {
	bank := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Txmesh-Service", "bank")
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		switch {
		case r.URL.Path == "/v1/transactions/batch":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"results":[{"status":201,"body":{}},{"status":400,"body":{"error":{"code":"invalid_request"}}}]}`))
		case !bytes.HasPrefix(b.Bytes(), []byte("{")): // garbled
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"code":"invalid_request"}}`))
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
		}
	}))
	defer bank.Close()
	ref := newRefusals()
	sc, err := startSidecar("store-1", bank.URL, &tls.Config{InsecureSkipVerify: true}, ref) //nolint:gosec // a test server
	if err != nil {
		t.Fatal(err)
	}
	defer sc.close()
	post := func(path, body string) int {
		resp, err := http.Post(sc.url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post("/v1/transactions", `{"id":"ok"}`); c != http.StatusCreated {
		t.Fatalf("forwarded: %d", c)
	}
	sc.set(httpfault.Faults{Deny: 1})
	if c := post("/v1/transactions", `{"id":"denied"}`); c != http.StatusForbidden {
		t.Fatalf("mesh deny: %d", c)
	}
	sc.set(httpfault.Faults{Corrupt: 1})
	if c := post("/v1/transactions", `{"id":"garbled"}`); c != http.StatusBadRequest {
		t.Fatalf("garbled: %d", c)
	}
	sc.set(httpfault.Faults{})
	if c := post("/v1/transactions/batch", `{"transactions":[{"id":"b1"},{"id":"b2"}]}`); c != http.StatusOK {
		t.Fatalf("batch: %d", c)
	}
	for id, want := range map[string]bool{"ok": false, "denied": false, "garbled": true, "b1": false, "b2": true} {
		if ref.has(id) != want {
			t.Errorf("%s refused by the Bank: %v, want %v", id, ref.has(id), want)
		}
	}
	// Unmarked: the same 400 without the Bank's header is no rejection of the Bank's.
	r2 := newRefusals()
	r2.recordAnswer([]string{"x"}, false, 400, http.Header{"Content-Type": {"application/problem+json"}},
		[]byte(`{"error":{"code":"invalid_request"}}`))
	if r2.has("x") {
		t.Error("an unmarked 400 recorded as the Bank's rejection")
	}
}
