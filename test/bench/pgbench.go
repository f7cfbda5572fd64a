package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
)

var namedParam = regexp.MustCompile(`@([a-z_]+)`)

// pgbenchScript renders the Bank's own statement (processSQL, read from its source) as a pgbench script: every @name becomes
// the pgbench variable :name, sent as a bind parameter in -M prepared mode exactly as gorm/pgx send theirs
// (one $n per occurrence, types inferred by the server). The one difference: pgbench variables cannot hold a
// UUID, so @id is gen_random_uuid() evaluated by the server (what the Store does on its side: a random v4).
func pgbenchScript(bankSQL string, accounts int) string {
	sql := namedParam.ReplaceAllStringFunc(bankSQL, func(m string) string {
		if m == "@id" {
			return "gen_random_uuid()"
		}
		return ":" + m[1:]
	})
	return fmt.Sprintf("\\set account random(1, %d)\n\\set amount random(1, 100)\n%s;\n", accounts,
		strings.TrimSpace(sql))
}

// pgbenchBatchScript renders the Bank's batch statement (processBatchSQL) as a pgbench script running batches
// of n new transactions: each array parameter becomes an array of n values built by the server —
// gen_random_uuid() ids, accounts drawn uniformly from 1…accounts, amounts 1–100, the constant store,
// currency and created time — which pgbench cannot hold in its variables. Everything else is the Bank's
// statement as it runs it (bind parameters aside: these arrays are built in the statement).
func pgbenchBatchScript(batchSQL string, accounts, n int) string {
	arrays := batchArrays(accounts, n)
	sql := namedParam.ReplaceAllStringFunc(batchSQL, func(m string) string {
		if v, ok := arrays[m]; ok {
			return v
		}
		return m // left as is: the test of the script catches it
	})
	return strings.TrimSpace(sql) + ";\n"
}

// batchArrays maps each parameter of processBatchSQL to the array expression pgbenchBatchScript puts there.
func batchArrays(accounts, n int) map[string]string {
	gen := func(expr string) string {
		return fmt.Sprintf("(SELECT array_agg(%s) FROM generate_series(1, %d))", expr, n)
	}
	fill := func(v string) string { return fmt.Sprintf("array_fill(%s, ARRAY[%d])", v, n) }
	return map[string]string{
		"@ids":        gen("gen_random_uuid()"),
		"@stores":     fill("'bench'::text"),
		"@accounts":   gen(fmt.Sprintf("(floor(random() * %d) + 1)::int::text", accounts)),
		"@amounts":    gen("(floor(random() * 100) + 1)::bigint"),
		"@currencies": fill("'EUR'::text"),
		"@created":    fill(":created::timestamptz"),
	}
}

// pgbenchRun is one pgbench process running the Bank's SQL.
type pgbenchRun struct {
	cmd    *exec.Cmd
	logDir string
	out    strings.Builder
	done   chan error
}

func startPgbench(ctx context.Context, dir, script string, port int, db string, clients, threads int,
	d time.Duration, extra []string) (*pgbenchRun, error) {
	bin, err := pglocal.BinDir()
	if err != nil {
		return nil, err
	}
	logDir, err := os.MkdirTemp(dir, "pgbench-")
	if err != nil {
		return nil, err
	}
	file := filepath.Join(logDir, "bank.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return nil, err
	}
	secs := int(math.Ceil(d.Seconds()))
	r := &pgbenchRun{logDir: logDir, done: make(chan error, 1)}
	args := []string{"-n", "-M", "prepared",
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(secs),
		"-f", file, "-l", "--log-prefix", filepath.Join(logDir, "pgb"),
		"-D", "store=bench", "-D", "currency=EUR", "-D", "created=" + time.Now().UTC().Format(time.RFC3339Nano),
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", pglocal.Superuser}
	args = append(append(args, extra...), db)
	r.cmd = exec.CommandContext(ctx, filepath.Join(bin, "pgbench"), args...)
	r.cmd.Dir = logDir
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pgbench: %w", err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	return r, nil
}

func (r *pgbenchRun) wait() error {
	if err := <-r.done; err != nil {
		return fmt.Errorf("pgbench: %w: %s", err, r.out.String()) // aborted clients make it exit non-zero
	}
	return nil
}

// samples reads pgbench's per-transaction logs ("client tx latency_us script epoch_s epoch_us") and returns
// the transactions that completed within [t0, t1).
func (r *pgbenchRun) samples(t0, t1 time.Time) ([]obs, error) {
	files, err := filepath.Glob(filepath.Join(r.logDir, "pgb.*"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("pgbench wrote no transaction log: %s", r.out.String())
	}
	var out []obs
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 6 {
				continue
			}
			lat, err1 := strconv.ParseInt(fl[2], 10, 64)
			sec, err2 := strconv.ParseInt(fl[4], 10, 64)
			usec, err3 := strconv.ParseInt(fl[5], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				continue // "skipped" or "failed" transactions carry no latency
			}
			end := time.Unix(sec, usec*1000)
			if !end.Before(t0) && end.Before(t1) {
				out = append(out, obs{latency: time.Duration(lat) * time.Microsecond})
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
