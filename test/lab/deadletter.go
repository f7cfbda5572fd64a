package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/txmesh/txmesh/src/localenv/proc"
)

// DeadLetters is what the judge makes of the purchases the Stores dead-lettered (status rejected). Only the
// Bank's own rejection may end a purchase: a dead letter the Bank truly refused (a sidecar saw its marked
// rejection of that transaction, and bank-db has no row of it) is not a loss; any other dead letter is a
// defect — one the Bank applied (the Store recorded a rejection for a charge) or one the Bank never refused
// (something in between ended it).
type DeadLetters struct {
	Total       int // when the backlog first drained, before the redrive
	BankRefused int // the Bank's own rejections: not a loss
	Applied     int // bank-db holds the transaction: a rejection recorded for a transaction the Bank applied
	NotRefused  int // the Bank never rejected it and has no row of it
	// The redrive: `store redrive --all`, its audit lines, and what was dead-lettered again afterwards.
	Redriven        int    // audit lines ("redriven: pending again")
	RedriveDone     int    // the count its closing line gives
	RedriveErr      string // the command failed
	AuditMismatch   int    // dead letters without an audit line, and audit lines of no dead letter
	After           int    // dead letters once the redriven purchases drained
	AfterNotRefused int    // of those, not the Bank's own rejection (or applied by it)
	Examples        []string
}

// classifyDeadLetters sorts dead letters: inBank holds the ids bank-db has, refused tells whether the Bank
// itself rejected an id.
func classifyDeadLetters(dead []string, inBank map[string]bool, refused func(string) bool) DeadLetters {
	d := DeadLetters{Total: len(dead)}
	for _, id := range dead {
		switch {
		case inBank[id]:
			d.Applied++
			d.example("applied by the Bank: " + id)
		case refused(id):
			d.BankRefused++
		default:
			d.NotRefused++
			d.example("never refused by the Bank: " + id)
		}
	}
	return d
}

func (d *DeadLetters) example(s string) {
	if len(d.Examples) < 5 {
		d.Examples = append(d.Examples, s)
	}
}

// redriveMsg is the audit line `store redrive` writes per purchase; redriveDoneMsg closes its output.
const (
	redriveMsg     = "redriven: pending again, the relay sends it with the same id"
	redriveDoneMsg = "redrive done"
)

// parseRedrive reads `store redrive`'s JSON log lines: the purchases it redrove (one audit line each) and
// the count its closing line gives (-1 without one).
func parseRedrive(out []byte) (ids []string, done int) {
	done = -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg        string `json:"msg"`
			PurchaseID string `json:"purchase_id"`
			Purchases  *int   `json:"purchases"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch line.Msg {
		case redriveMsg:
			ids = append(ids, line.PurchaseID)
		case redriveDoneMsg:
			if line.Purchases != nil {
				done = *line.Purchases
			}
		}
	}
	return ids, done
}

// auditMismatch counts the dead letters without an audit line and the audit lines of no dead letter.
func auditMismatch(dead, redriven []string) int {
	want := map[string]int{}
	for _, id := range dead {
		want[id]++
	}
	n := 0
	for _, id := range redriven {
		if want[id] == 0 {
			n++
			continue
		}
		want[id]--
	}
	for _, v := range want {
		n += v
	}
	return n
}

// deadLetterIDs are the purchases store-db holds as rejected.
func deadLetterIDs(ctx context.Context, storeDSN string) ([]string, error) {
	conn, err := pgx.Connect(ctx, storeDSN)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id::text FROM purchases WHERE status = 'rejected'")
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	sort.Strings(ids)
	return ids, err
}

// inBank returns which of ids bank-db holds.
func inBank(ctx context.Context, bankDSN string, ids []string) (map[string]bool, error) {
	conn, err := pgx.Connect(ctx, bankDSN)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id::text FROM transactions WHERE id = ANY($1::uuid[])", ids)
	if err != nil {
		return nil, err
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	m := map[string]bool{}
	for _, id := range have {
		m[id] = true
	}
	return m, err
}

// judgeDeadLetters classifies the dead letters once the backlog has drained (before any redrive).
func (r *run) judgeDeadLetters(ctx context.Context) ([]string, error) {
	dead, err := deadLetterIDs(ctx, r.storeDB.DSN("store"))
	if err != nil {
		return nil, err
	}
	banked, err := inBank(ctx, r.db.primaryDSN(), dead)
	if err != nil {
		return nil, err
	}
	r.res.DeadLetters = classifyDeadLetters(dead, banked, r.refusals.has)
	return dead, nil
}

// redrive runs the real `store redrive --all` and checks its audit lines against the dead letters.
func (r *run) redrive(ctx context.Context, dead []string) {
	var out, stderr bytes.Buffer
	_, err := proc.Run(ctx, proc.Spec{Name: "store redrive", Path: r.cfg.StoreBin, Args: []string{"redrive", "--all"},
		Env:    []string{"DATABASE_URL=" + r.storeDB.DSN("store"), "STORE_ID=lab-redrive", "LOG_LEVEL=info"},
		Stdout: &out, Stderr: &stderr})
	path := filepath.Join(r.dir, "redrive.log")
	_ = os.WriteFile(path, append(out.Bytes(), stderr.Bytes()...), 0o644)
	d := &r.res.DeadLetters
	if err != nil {
		d.RedriveErr = fmt.Sprintf("%v (see %s)", err, path)
	}
	ids, done := parseRedrive(out.Bytes())
	d.Redriven, d.RedriveDone = len(ids), done
	d.AuditMismatch = auditMismatch(dead, ids)
	if done != len(ids) && d.RedriveErr == "" {
		d.RedriveErr = fmt.Sprintf("its closing line counts %d purchases, %d audit lines (see %s)", done, len(ids), path)
	}
	r.logf("redrive: %d dead letters, %d audit lines, closing count %d", len(dead), len(ids), done)
}

// judgeAfterRedrive counts the dead letters left once the redriven purchases drained: each must be the Bank's
// own rejection again.
func (r *run) judgeAfterRedrive(ctx context.Context) error {
	dead, err := deadLetterIDs(ctx, r.storeDB.DSN("store"))
	if err != nil {
		return err
	}
	banked, err := inBank(ctx, r.db.primaryDSN(), dead)
	if err != nil {
		return err
	}
	after := classifyDeadLetters(dead, banked, r.refusals.has)
	d := &r.res.DeadLetters
	d.After, d.AfterNotRefused = after.Total, after.Applied+after.NotRefused
	for _, e := range after.Examples {
		if !slices.Contains(d.Examples, e) {
			d.example("after the redrive, " + e)
		}
	}
	return nil
}
