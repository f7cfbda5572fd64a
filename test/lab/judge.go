package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/localenv/proc"
)

// judge runs txaudit and the lab's own cross-check, and measures the failovers.
func (r *run) judge(ctx context.Context) error {
	storeDSN, bankDSN := r.storeDB.DSN("store"), r.db.primaryDSN()
	if err := r.crossCheck(ctx, storeDSN, bankDSN); err != nil {
		return fmt.Errorf("cross-check: %w", err)
	}
	if err := r.judgeAPIAnswers(ctx, storeDSN); err != nil {
		return fmt.Errorf("the Store API's answers: %w", err)
	}
	for _, fo := range r.res.failovers {
		m, err := measureFailover(ctx, fo, storeDSN, bankDSN)
		if err != nil {
			return err
		}
		r.res.Failovers = append(r.res.Failovers, m)
	}
	r.res.Audit = r.txaudit(ctx, storeDSN, bankDSN)
	r.logf("txaudit: %s", r.res.Audit.summary())
	return nil
}

// Audit is txaudit's verdict.
type Audit struct {
	Ran                                               bool
	Exit                                              int
	Lost, Unknown, Duplicated, Mismatched, Imbalanced int
	Output                                            string // where its report was written
	Err                                               string
}

func (a Audit) summary() string {
	if !a.Ran {
		return "not run: " + a.Err
	}
	return fmt.Sprintf("exit %d, lost %d, unknown %d, duplicated %d, mismatched %d, imbalanced %d (%s)", a.Exit,
		a.Lost, a.Unknown, a.Duplicated, a.Mismatched, a.Imbalanced, a.Output)
}

func (r *run) txaudit(ctx context.Context, storeDSN, bankDSN string) Audit {
	bin := filepath.Join(r.cfg.BinDir, "txaudit")
	if _, err := os.Stat(bin); err != nil {
		return Audit{Err: "no txaudit binary in " + r.cfg.BinDir}
	}
	var a Audit
	a.Ran = true
	for _, format := range []string{"json", "text"} {
		args := []string{"--store-dsn", storeDSN, "--bank-dsn", bankDSN, "--wait", "30s"}
		if format == "json" {
			args = append(args, "--json")
		}
		var out, stderr bytes.Buffer
		_, err := proc.Run(ctx, proc.Spec{Name: "txaudit", Path: bin, Args: args, Stdout: &out, Stderr: &stderr})
		path := filepath.Join(r.dir, "txaudit."+format)
		_ = os.WriteFile(path, append(out.Bytes(), stderr.Bytes()...), 0o644)
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			a.Exit = exit.ExitCode()
		case err != nil:
			a.Err = err.Error()
		}
		if format == "json" {
			a.Output = path
			var rep struct {
				Defects map[string]int `json:"defects"`
			}
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Defects == nil {
				a.Err = "txaudit --json: no defects object (see " + path + ")"
			}
			d := rep.Defects
			a.Lost, a.Unknown, a.Duplicated = d["lost"], d["unknown"], d["duplicate"]
			a.Mismatched, a.Imbalanced = d["mismatch"], d["imbalance"]
		}
	}
	return a
}

// Check is the lab's own cross-check of store-db against bank-db (independent of txaudit), plus what only
// the lab knows: the purchases a Store accepted (202) through the API.
type Check struct {
	Lost            int // delivered (approved/declined) in store-db, absent from bank-db
	Unknown         int // in bank-db, absent from store-db
	Mismatched      int // present in both, fields or decision differ
	Imbalanced      int // accounts whose balance != initial − approved debits
	AcceptedMissing int // 202 from the Store API, absent from store-db
	Pending         int
	ByStatus        map[string]int
	BySource        map[string]int
	BankRows        int
}

type row struct {
	account, currency, status string
	amount                    int64
}

func (r *run) crossCheck(ctx context.Context, storeDSN, bankDSN string) error {
	sc, err := pgx.Connect(ctx, storeDSN)
	if err != nil {
		return err
	}
	defer sc.Close(ctx)
	bc, err := pgx.Connect(ctx, bankDSN)
	if err != nil {
		return err
	}
	defer bc.Close(ctx)
	c := Check{ByStatus: map[string]int{}, BySource: map[string]int{}}
	store := map[string]row{}
	rows, err := sc.Query(ctx, "SELECT id::text, account_id, amount, currency, status, source FROM purchases")
	if err != nil {
		return err
	}
	for rows.Next() {
		var id, src string
		var x row
		if err := rows.Scan(&id, &x.account, &x.amount, &x.currency, &x.status, &src); err != nil {
			return err
		}
		store[id] = x
		c.ByStatus[x.status]++
		c.BySource[src]++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	bank := map[string]row{}
	rows, err = bc.Query(ctx, "SELECT id::text, account_id, amount, currency, status FROM transactions")
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		var x row
		if err := rows.Scan(&id, &x.account, &x.amount, &x.currency, &x.status); err != nil {
			return err
		}
		bank[id] = x
	}
	if err := rows.Err(); err != nil {
		return err
	}
	c.BankRows = len(bank)
	for id, s := range store {
		b, ok := bank[id]
		switch {
		case s.status == "pending":
			c.Pending++
		case s.status == "rejected":
			if ok {
				c.Mismatched++
			}
		case !ok:
			c.Lost++
		case b != s:
			c.Mismatched++
		}
	}
	for id := range bank {
		if _, ok := store[id]; !ok {
			c.Unknown++
		}
	}
	for _, id := range r.load.acceptedIDs() {
		if _, ok := store[id]; !ok {
			c.AcceptedMissing++
		}
	}
	err = bc.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT a.id FROM accounts a LEFT JOIN transactions t ON t.account_id = a.id AND t.status = 'approved'
		GROUP BY a.id, a.initial_balance, a.balance
		HAVING a.initial_balance - coalesce(sum(t.amount), 0) <> a.balance) x`).Scan(&c.Imbalanced)
	if err != nil {
		return err
	}
	r.res.Check = c
	return nil
}

// FailoverResult is what one failover cost.
type FailoverResult struct {
	KillToPromoted    time.Duration // kill -9 → the standby accepts writes (detection + promotion)
	KillToFirstCommit time.Duration // kill -9 → the first Bank transaction committed on the new primary
	KillToRejoined    time.Duration // kill -9 → the old primary streams again as the standby
	CommitGap         time.Duration // last Bank transaction before the kill still in bank-db → first after
	AckGap            time.Duration // last outcome a Store recorded before the kill → first after
	RejoinedBy        string
	Err               string
}

func measureFailover(ctx context.Context, fo failover, storeDSN, bankDSN string) (FailoverResult, error) {
	m := FailoverResult{RejoinedBy: fo.RejoinedBy}
	if fo.Err != nil {
		m.Err = fo.Err.Error()
	}
	if fo.Killed.IsZero() || fo.Promoted.IsZero() {
		return m, nil
	}
	m.KillToPromoted = fo.Promoted.Sub(fo.Killed)
	if !fo.Rejoined.IsZero() {
		m.KillToRejoined = fo.Rejoined.Sub(fo.Killed)
	}
	var err error
	if m.CommitGap, err = gapAround(ctx, bankDSN, "transactions", "processed_at", fo.Killed); err != nil {
		return m, err
	}
	if m.AckGap, err = gapAround(ctx, storeDSN, "purchases", "completed_at", fo.Killed); err != nil {
		return m, err
	}
	conn, err := pgx.Connect(ctx, bankDSN)
	if err != nil {
		return m, err
	}
	defer conn.Close(ctx)
	var first *time.Time
	if err := conn.QueryRow(ctx, "SELECT min(processed_at) FROM transactions WHERE processed_at > $1",
		fo.Killed).Scan(&first); err != nil {
		return m, err
	}
	if first != nil {
		m.KillToFirstCommit = first.Sub(fo.Killed)
	}
	return m, nil
}

// gapAround is the time between the last row before t and the first row after it, by column.
func gapAround(ctx context.Context, dsn, table, column string, t time.Time) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var before, after *time.Time
	err = conn.QueryRow(ctx, fmt.Sprintf("SELECT (SELECT max(%[1]s) FROM %[2]s WHERE %[1]s <= $1), "+
		"(SELECT min(%[1]s) FROM %[2]s WHERE %[1]s > $1)", column, table), t).Scan(&before, &after)
	if err != nil || before == nil || after == nil {
		return 0, err
	}
	return after.Sub(*before), nil
}
