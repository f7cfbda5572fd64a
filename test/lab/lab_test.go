package lab

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
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
	bin := buildServices(t)
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
	common := Config{BinDir: bin, Seed: seed, Rate: 30, GeneratorInterval: 100 * time.Millisecond,
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

// buildServices builds the bank, store and (when present) txaudit commands into a temporary directory.
func buildServices(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pkgs := []string{"./src/cmd/bank", "./src/cmd/store"}
	if m, _ := filepath.Glob("../../src/cmd/txaudit/*.go"); len(m) > 0 {
		pkgs = append(pkgs, "./src/cmd/txaudit")
	}
	// go test puts the GOROOT/bin of the go command running it first on PATH.
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
	return dir
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
