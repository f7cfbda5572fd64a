package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/txmesh/txmesh/src/localenv/pglocal"
	"github.com/txmesh/txmesh/src/localenv/pki"
	"github.com/txmesh/txmesh/src/localenv/proc"
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

// batchArrays maps each parameter of processBatchSQL to the array expression pgbenchBatchScript puts there
// (the caller, one for the batch, to a constant).
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
		"@caller":     "'" + pki.ID("store") + "'",
	}
}

// pgbenchRun is one pgbench process running the Bank's SQL.
type pgbenchRun struct {
	p      *proc.Process
	logDir string
	out    strings.Builder
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
	r := &pgbenchRun{logDir: logDir}
	args := []string{"-n", "-M", "prepared",
		"-c", strconv.Itoa(clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(secs),
		"-f", file, "-l", "--log-prefix", filepath.Join(logDir, "pgb"),
		"-D", "store=bench", "-D", "currency=EUR", "-D", "created=" + time.Now().UTC().Format(time.RFC3339Nano),
		"-D", "caller=" + pki.ID("store"),
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", pglocal.Superuser}
	args = append(append(args, extra...), db)
	if r.p, err = proc.Start(proc.Spec{Name: "pgbench", Path: filepath.Join(bin, "pgbench"), Args: args,
		Dir: logDir, Stdout: &r.out, Stderr: &r.out}); err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { r.p.Kill() })
	return r, nil
}

func (r *pgbenchRun) wait() error {
	<-r.p.Done()
	if err := r.p.Err(); err != nil {
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
