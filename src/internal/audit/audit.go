// Package audit proves, from the Store's and the Bank's databases, that the system did what it promises:
// nothing lost, nothing extra, nothing applied twice, every balance equal to its seed minus its approved
// debits. txaudit prints its Report; the make-run launcher and the HA lab call Run in-process.
package audit

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// Category is a kind of defect.
type Category string

// Defect categories.
const (
	// Lost: the Store holds a purchase as decided (approved/declined) that the Bank lacks, or a pending
	// purchase has no outbox row (it would never be sent).
	Lost Category = "lost"
	// Unknown: the Bank holds a transaction the Store does not know.
	Unknown Category = "unknown"
	// Mismatch: a purchase and the Bank's transaction with its id differ in a field or in the decision.
	Mismatch Category = "mismatch"
	// Duplicate: the Bank holds an id more than once (applied more than once).
	Duplicate Category = "duplicate"
	// Imbalance: an account's balance is not its initial balance minus its approved debits.
	Imbalance Category = "imbalance"
)

// Categories lists every category, in report order.
var Categories = []Category{Lost, Unknown, Mismatch, Duplicate, Imbalance}

// MaxFindings caps the findings a Report lists; Defects counts them all.
const MaxFindings = 100

// Finding is one defect.
type Finding struct {
	Category  Category `json:"category"`
	ID        string   `json:"id,omitempty"` // the purchase / transaction id
	AccountID string   `json:"account_id,omitempty"`
	Detail    string   `json:"detail"`
}

// BankSummary counts the Bank's side.
type BankSummary struct {
	Transactions int64 `json:"transactions"`
	Approved     int64 `json:"approved"`
	Declined     int64 `json:"declined"`
	Accounts     int64 `json:"accounts"`
	// Probes counts the canary checks' transactions (ProbeStores): the Bank's alone by design, not unknown.
	Probes int64 `json:"probes"`
	// Callers counts the transactions by the identity of the caller that created them, sorted by it (caller
	// "": recorded by a Bank that predates callers).
	Callers []CallerSummary `json:"callers"`
	// Customer and Canary split the transactions above (and the accounts) by account: canary accounts
	// (payment.CanaryAccountPrefix, CANARY-…) hold the canary checks' test money; every other account is a
	// customer's. Customer + Canary = the totals above.
	Customer AccountTraffic `json:"customer"`
	Canary   CanaryTraffic  `json:"canary"`
}

// Traffic counts transactions: how many, how the Bank decided them, and the approved debits per currency
// (minor units).
type Traffic struct {
	Transactions    int64            `json:"transactions"`
	Approved        int64            `json:"approved"`
	Declined        int64            `json:"declined"`
	ApprovedAmounts map[string]int64 `json:"approved_amounts"`
}

func newTraffic() Traffic { return Traffic{ApprovedAmounts: map[string]int64{}} }

func (t *Traffic) add(a aggregate) {
	t.Transactions += a.n
	t.Approved += a.approved
	t.Declined += a.declined
	if a.amount != 0 {
		t.ApprovedAmounts[a.currency] += a.amount
	}
}

// AccountTraffic is the traffic on one class of accounts, and how many accounts the class has.
type AccountTraffic struct {
	Accounts int64 `json:"accounts"`
	Traffic
}

// CanaryTraffic is the traffic on canary accounts, by kind, and the traffic of the canary checks that reached
// customer accounts instead: never once canary accounts exist; a deployment whose canaries ran before them
// (on ACC-000001…) shows that history here.
type CanaryTraffic struct {
	AccountTraffic
	// Kinds splits the canary accounts' traffic by store id, sorted by it: flagger-acceptance and
	// flagger-load for the checks' own transactions, a Store's id for purchases made on canary accounts.
	Kinds []KindTraffic `json:"kinds"`
	// OnCustomerAccounts: the canary checks' transactions (ProbeStores) on customer accounts.
	OnCustomerAccounts Traffic `json:"on_customer_accounts"`
}

// KindTraffic is one kind of canary traffic.
type KindTraffic struct {
	Kind string `json:"kind"`
	Traffic
}

// aggregate is one row of the traffic query: the transactions of one class, store and currency.
type aggregate struct {
	canary                        bool
	store, currency               string
	n, approved, declined, amount int64
}

// CallerSummary counts one caller's transactions.
type CallerSummary struct {
	Caller       string `json:"caller"`
	Transactions int64  `json:"transactions"`
	Approved     int64  `json:"approved"`
	Declined     int64  `json:"declined"`
}

// ProbeStores are the store ids of the transactions Flagger's canary checks send straight to a Bank canary
// (the acceptance test and the load test of kustomize/components/canary and make e2e's stand-in for them):
// no Store holds them, so they are counted, not reported unknown. They still count in every balance.
var ProbeStores = map[string]bool{"flagger-acceptance": true, "flagger-load": true}

// Report is the audit's result.
type Report struct {
	// Purchases counts the Store's purchases by status (pending, approved, declined, rejected).
	Purchases map[string]int64 `json:"purchases"`
	// CanaryPurchases counts, of Purchases, those on canary accounts (payment.CanaryAccountPrefix) by status:
	// test money, not a customer's.
	CanaryPurchases map[string]int64 `json:"canary_purchases"`
	// Backlog is the Store's outbox size.
	Backlog int64 `json:"backlog"`
	// InFlight counts pending purchases the Bank has already decided (sent, outcome not recorded yet).
	InFlight int64       `json:"in_flight"`
	Bank     BankSummary `json:"bank"`
	// Defects counts defects by category (every category present).
	Defects map[Category]int `json:"defects"`
	// Findings lists the first MaxFindings defects.
	Findings []Finding `json:"findings"`
	Clean    bool      `json:"clean"`
	// Drained is set by callers that waited for the backlog to drain (txaudit --wait).
	Drained *bool `json:"drained,omitempty"`
}

func (r *Report) add(c Category, id, account, format string, args ...any) {
	r.Defects[c]++
	r.Clean = false
	if len(r.Findings) < MaxFindings {
		r.Findings = append(r.Findings, Finding{Category: c, ID: id, AccountID: account,
			Detail: fmt.Sprintf(format, args...)})
	}
}

// row is a purchase or a Bank transaction: the fields they share.
type row struct {
	ID        uuid.UUID
	StoreID   string
	AccountID string
	Amount    int64
	Currency  string
	CreatedAt time.Time
	Status    string
	Reason    string
}

const rowColumns = `id, store_id, account_id, amount, currency, created_at, status, reason`

func scanRow(rows *sql.Rows) (row, error) {
	var r row
	err := rows.Scan(&r.ID, &r.StoreID, &r.AccountID, &r.Amount, &r.Currency, &r.CreatedAt, &r.Status, &r.Reason)
	r.Currency = strings.TrimSpace(r.Currency)
	return r, err
}

// cursor walks a query's rows one at a time.
type cursor struct {
	rows *sql.Rows
	cur  row
	ok   bool
	err  error
}

func (c *cursor) next() {
	if c.ok = c.rows.Next(); c.ok {
		c.cur, c.err = scanRow(c.rows)
		c.ok = c.err == nil
	} else if c.err == nil {
		c.err = c.rows.Err()
	}
}

func readOnly(ctx context.Context, db *sql.DB) (*sql.Tx, error) {
	return db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
}

// Run audits the Store's database against the Bank's. It works on live systems too: it reads the Store in
// one snapshot taken before the Bank's (a purchase the Store holds as decided was in the Bank before), and
// looks again at the Store for Bank transactions its snapshot lacked (purchases created meanwhile). An error
// means the audit could not be made (connection, missing tables), not that it found defects.
func Run(ctx context.Context, storeDB, bankDB *sql.DB) (Report, error) {
	rep := Report{Purchases: map[string]int64{"pending": 0, "approved": 0, "declined": 0, "rejected": 0},
		CanaryPurchases: map[string]int64{"pending": 0, "approved": 0, "declined": 0, "rejected": 0},
		Defects:         map[Category]int{}, Findings: []Finding{}, Clean: true,
		Bank: BankSummary{Callers: []CallerSummary{}, Customer: AccountTraffic{Traffic: newTraffic()},
			Canary: CanaryTraffic{AccountTraffic: AccountTraffic{Traffic: newTraffic()}, Kinds: []KindTraffic{},
				OnCustomerAccounts: newTraffic()}}}
	for _, c := range Categories {
		rep.Defects[c] = 0
	}
	storeTx, err := readOnly(ctx, storeDB)
	if err != nil {
		return rep, fmt.Errorf("store database: %w", err)
	}
	defer func() { _ = storeTx.Rollback() }()
	if err := storeSummary(ctx, storeTx, &rep); err != nil { // the first query fixes the Store's snapshot
		return rep, fmt.Errorf("store database: %w", err)
	}
	bankTx, err := readOnly(ctx, bankDB)
	if err != nil {
		return rep, fmt.Errorf("bank database: %w", err)
	}
	defer func() { _ = bankTx.Rollback() }()
	if err := balances(ctx, bankTx, &rep); err != nil { // the first query fixes the Bank's snapshot
		return rep, fmt.Errorf("bank database: %w", err)
	}
	if err := callers(ctx, bankTx, &rep); err != nil {
		return rep, fmt.Errorf("bank database: %w", err)
	}
	if err := traffic(ctx, bankTx, &rep); err != nil {
		return rep, fmt.Errorf("bank database: %w", err)
	}
	candidates, err := compare(ctx, storeTx, bankTx, &rep)
	if err != nil {
		return rep, err
	}
	if err := recheckUnknown(ctx, storeDB, candidates, &rep); err != nil {
		return rep, fmt.Errorf("store database: %w", err)
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		return categoryOrder(rep.Findings[i].Category) < categoryOrder(rep.Findings[j].Category)
	})
	return rep, nil
}

func categoryOrder(c Category) int {
	for i, x := range Categories {
		if x == c {
			return i
		}
	}
	return len(Categories)
}

func storeSummary(ctx context.Context, tx *sql.Tx, rep *Report) error {
	rows, err := tx.QueryContext(ctx, `
SELECT status, count(*), count(*) FILTER (WHERE starts_with(account_id, $1)) FROM purchases GROUP BY status`,
		payment.CanaryAccountPrefix)
	if err != nil {
		return err
	}
	for rows.Next() {
		var s string
		var n, canary int64
		if err := rows.Scan(&s, &n, &canary); err != nil {
			rows.Close()
			return err
		}
		rep.Purchases[s], rep.CanaryPurchases[s] = n, canary
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&rep.Backlog); err != nil {
		return err
	}
	// A pending purchase without its outbox row is never sent: lost as surely as a missing Bank row.
	stranded, err := tx.QueryContext(ctx, `
SELECT p.id, p.account_id FROM purchases p LEFT JOIN outbox o ON o.purchase_id = p.id
WHERE p.status = 'pending' AND o.purchase_id IS NULL ORDER BY p.id`)
	if err != nil {
		return err
	}
	defer stranded.Close()
	for stranded.Next() {
		var id, account string
		if err := stranded.Scan(&id, &account); err != nil {
			return err
		}
		rep.add(Lost, id, account, "pending purchase without an outbox row: it is never sent")
	}
	return stranded.Err()
}

func balances(ctx context.Context, tx *sql.Tx, rep *Report) error {
	rows, err := tx.QueryContext(ctx, `
SELECT a.id, a.initial_balance, a.balance,
       COALESCE(SUM(t.amount) FILTER (WHERE t.status = 'approved'), 0)::bigint AS debits
FROM accounts a LEFT JOIN transactions t ON t.account_id = a.id
GROUP BY a.id ORDER BY a.id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var initial, balance, debits int64
		if err := rows.Scan(&id, &initial, &balance, &debits); err != nil {
			return err
		}
		rep.Bank.Accounts++
		if payment.IsCanaryAccount(id) {
			rep.Bank.Canary.Accounts++
		} else {
			rep.Bank.Customer.Accounts++
		}
		if initial-debits != balance {
			rep.add(Imbalance, "", id, "balance %d, but initial %d − approved debits %d = %d (off by %d)",
				balance, initial, debits, initial-debits, balance-(initial-debits))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return nil
}

// callers counts the Bank's transactions per caller.
func callers(ctx context.Context, tx *sql.Tx, rep *Report) error {
	rows, err := tx.QueryContext(ctx, `
SELECT caller, count(*), count(*) FILTER (WHERE status = 'approved'), count(*) FILTER (WHERE status = 'declined')
FROM transactions GROUP BY caller ORDER BY caller`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var c CallerSummary
		if err := rows.Scan(&c.Caller, &c.Transactions, &c.Approved, &c.Declined); err != nil {
			return err
		}
		rep.Bank.Callers = append(rep.Bank.Callers, c)
	}
	return rows.Err()
}

// traffic splits the Bank's transactions into customer and canary traffic (by account), the canary's by kind.
func traffic(ctx context.Context, tx *sql.Tx, rep *Report) error {
	rows, err := tx.QueryContext(ctx, `
SELECT starts_with(account_id, $1), store_id, currency, count(*), count(*) FILTER (WHERE status = 'approved'),
       count(*) FILTER (WHERE status = 'declined'), COALESCE(SUM(amount) FILTER (WHERE status = 'approved'), 0)::bigint
FROM transactions GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, payment.CanaryAccountPrefix)
	if err != nil {
		return err
	}
	defer rows.Close()
	c := &rep.Bank.Canary
	for rows.Next() {
		var a aggregate
		if err := rows.Scan(&a.canary, &a.store, &a.currency, &a.n, &a.approved, &a.declined, &a.amount); err != nil {
			return err
		}
		a.currency = strings.TrimSpace(a.currency)
		switch {
		case a.canary:
			c.add(a)
			if k := len(c.Kinds); k == 0 || c.Kinds[k-1].Kind != a.store {
				c.Kinds = append(c.Kinds, KindTraffic{Kind: a.store, Traffic: newTraffic()})
			}
			c.Kinds[len(c.Kinds)-1].add(a)
		default:
			rep.Bank.Customer.add(a)
			if ProbeStores[a.store] {
				c.OnCustomerAccounts.add(a)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	sort.Slice(c.Kinds, func(i, j int) bool { return c.Kinds[i].Kind < c.Kinds[j].Kind })
	return nil
}

// compare walks the purchases and the Bank's transactions in id order side by side. It returns the Bank
// ids the Store's snapshot lacked.
func compare(ctx context.Context, storeTx, bankTx *sql.Tx, rep *Report) ([]row, error) {
	sRows, err := storeTx.QueryContext(ctx, `SELECT `+rowColumns+` FROM purchases ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("store database: %w", err)
	}
	defer sRows.Close()
	bRows, err := bankTx.QueryContext(ctx, `SELECT `+rowColumns+` FROM transactions ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("bank database: %w", err)
	}
	defer bRows.Close()
	s, b := &cursor{rows: sRows}, &cursor{rows: bRows}
	nextBank := func() {
		b.next()
		if b.ok {
			rep.Bank.Transactions++
			switch b.cur.Status {
			case "approved":
				rep.Bank.Approved++
			case "declined":
				rep.Bank.Declined++
			}
		}
	}
	s.next()
	nextBank()
	var candidates []row
	var lastBank uuid.UUID
	haveLast := false
	for s.ok || b.ok {
		if b.ok && haveLast && b.cur.ID == lastBank {
			rep.add(Duplicate, b.cur.ID.String(), b.cur.AccountID, "the Bank holds this id more than once")
			nextBank()
			continue
		}
		var order int
		switch {
		case !b.ok:
			order = -1
		case !s.ok:
			order = 1
		default:
			order = bytes.Compare(s.cur.ID[:], b.cur.ID[:])
		}
		switch {
		case order < 0: // only in the Store
			if s.cur.Status == "approved" || s.cur.Status == "declined" {
				rep.add(Lost, s.cur.ID.String(), s.cur.AccountID, "the Store holds it as %s; the Bank has no such "+
					"transaction", s.cur.Status)
			}
			s.next()
		case order > 0: // only in the Bank: maybe created after the Store's snapshot
			candidates = append(candidates, b.cur)
			lastBank, haveLast = b.cur.ID, true
			nextBank()
		default:
			judge(rep, s.cur, b.cur)
			lastBank, haveLast = b.cur.ID, true
			s.next()
			nextBank()
		}
	}
	if s.err != nil {
		return nil, fmt.Errorf("store database: %w", s.err)
	}
	if b.err != nil {
		return nil, fmt.Errorf("bank database: %w", b.err)
	}
	return candidates, nil
}

// judge compares a purchase with the Bank's transaction of the same id.
func judge(rep *Report, p, t row) {
	var diffs []string
	if p.StoreID != t.StoreID {
		diffs = append(diffs, fmt.Sprintf("store_id %q≠%q", p.StoreID, t.StoreID))
	}
	if p.AccountID != t.AccountID {
		diffs = append(diffs, fmt.Sprintf("account_id %q≠%q", p.AccountID, t.AccountID))
	}
	if p.Amount != t.Amount {
		diffs = append(diffs, fmt.Sprintf("amount %d≠%d", p.Amount, t.Amount))
	}
	if p.Currency != t.Currency {
		diffs = append(diffs, fmt.Sprintf("currency %s≠%s", p.Currency, t.Currency))
	}
	if !p.CreatedAt.Equal(t.CreatedAt) {
		diffs = append(diffs, fmt.Sprintf("created_at %s≠%s", p.CreatedAt.UTC().Format(time.RFC3339Nano),
			t.CreatedAt.UTC().Format(time.RFC3339Nano)))
	}
	switch p.Status {
	case "pending":
		rep.InFlight++ // sent, the outcome not recorded yet
	case "approved", "declined":
		if p.Status != t.Status || p.Reason != t.Reason {
			diffs = append(diffs, fmt.Sprintf("decision %s/%q≠%s/%q", p.Status, p.Reason, t.Status, t.Reason))
		}
	default: // rejected: the Bank refused it, so it must not have applied it
		if len(diffs) == 0 {
			diffs = append(diffs, fmt.Sprintf("the Store holds it as %s; the Bank %s it", p.Status, t.Status))
		}
	}
	if len(diffs) > 0 {
		rep.add(Mismatch, p.ID.String(), p.AccountID, "Store≠Bank: %s", strings.Join(diffs, ", "))
	}
}

// recheckUnknown looks at the Store again (after the Bank's snapshot) for the Bank ids its first snapshot
// lacked: a purchase created and sent meanwhile is there now; anything else is unknown.
func recheckUnknown(ctx context.Context, storeDB *sql.DB, candidates []row, rep *Report) error {
	const chunk = 1000
	for len(candidates) > 0 {
		n := min(chunk, len(candidates))
		batch := candidates[:n]
		candidates = candidates[n:]
		ids := make([]string, n)
		for i, c := range batch {
			ids[i] = c.ID.String()
		}
		rows, err := storeDB.QueryContext(ctx, `SELECT `+rowColumns+` FROM purchases WHERE id = ANY($1::uuid[])`,
			"{"+strings.Join(ids, ",")+"}")
		if err != nil {
			return err
		}
		found := map[uuid.UUID]row{}
		for rows.Next() {
			r, err := scanRow(rows)
			if err != nil {
				rows.Close()
				return err
			}
			found[r.ID] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, t := range batch {
			if p, ok := found[t.ID]; ok {
				judge(rep, p, t)
				continue
			}
			if ProbeStores[t.StoreID] {
				rep.Bank.Probes++
				continue
			}
			rep.add(Unknown, t.ID.String(), t.AccountID, "the Bank holds a %s transaction of %d %s the Store "+
				"does not know", t.Status, t.Amount, t.Currency)
		}
	}
	return nil
}

// WaitDrained waits until the Store's outbox is empty or timeout passes, polling every poll; it returns the
// backlog it saw last (0: drained).
func WaitDrained(ctx context.Context, storeDB *sql.DB, timeout, poll time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var backlog int64
	for {
		err := storeDB.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&backlog)
		switch {
		case err != nil && ctx.Err() != nil:
			return backlog, nil // timed out while asking
		case err != nil:
			return backlog, fmt.Errorf("store database: %w", err)
		case backlog == 0:
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return backlog, nil
		case <-time.After(poll):
		}
	}
}

// WriteJSON writes the report as one JSON document.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

var categoryHelp = map[Category]string{
	Lost:      "purchases the Store holds as decided that the Bank lacks (or never sendable)",
	Unknown:   "Bank transactions the Store does not know",
	Mismatch:  "purchases whose fields or decision differ from the Bank's",
	Duplicate: "ids the Bank applied more than once",
	Imbalance: "accounts whose balance ≠ initial − approved debits",
}

// WriteText writes the report for people.
func (r Report) WriteText(w io.Writer) error {
	p := r.Purchases
	total := p["pending"] + p["approved"] + p["declined"] + p["rejected"]
	var b strings.Builder
	fmt.Fprintf(&b, "txaudit: store: %d purchases — pending %d, approved %d, declined %d, rejected %d; "+
		"outbox backlog %d; in flight %d\n", total, p["pending"], p["approved"], p["declined"], p["rejected"],
		r.Backlog, r.InFlight)
	if n := r.CanaryPurchases; n["pending"]+n["approved"]+n["declined"]+n["rejected"] > 0 {
		fmt.Fprintf(&b, "txaudit: store: of which on canary accounts %d — pending %d, approved %d, declined %d, "+
			"rejected %d\n", n["pending"]+n["approved"]+n["declined"]+n["rejected"], n["pending"], n["approved"],
			n["declined"], n["rejected"])
	}
	fmt.Fprintf(&b, "txaudit: bank:  %d transactions — approved %d, declined %d (canary probes %d); %d accounts\n",
		r.Bank.Transactions, r.Bank.Approved, r.Bank.Declined, r.Bank.Probes, r.Bank.Accounts)
	cu, ca := r.Bank.Customer, r.Bank.Canary
	fmt.Fprintf(&b, "txaudit: bank customers: %d accounts; %s\n", cu.Accounts, cu.Traffic)
	fmt.Fprintf(&b, "txaudit: bank canary (%s…): %d accounts; %s; by kind:", payment.CanaryAccountPrefix,
		ca.Accounts, ca.Traffic)
	for i, k := range ca.Kinds {
		fmt.Fprintf(&b, " %s %s", k.Kind, k.Traffic)
		if i < len(ca.Kinds)-1 {
			b.WriteString(";")
		}
	}
	if len(ca.Kinds) == 0 {
		b.WriteString(" none")
	}
	b.WriteString("\n")
	if o := ca.OnCustomerAccounts; o.Transactions > 0 {
		fmt.Fprintf(&b, "txaudit: WARNING: canary checks on customer accounts: %s — customers' money; canary "+
			"traffic must use %s accounts (bank seed --canary-accounts)\n", o, payment.CanaryAccountPrefix)
	}
	b.WriteString("txaudit: bank by caller:")
	for i, c := range r.Bank.Callers {
		who := c.Caller
		if who == "" {
			who = "(not recorded)"
		}
		sep := ";"
		if i == len(r.Bank.Callers)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, " %s %d (approved %d, declined %d)%s", who, c.Transactions, c.Approved, c.Declined, sep)
	}
	if len(r.Bank.Callers) == 0 {
		b.WriteString(" none")
	}
	b.WriteString("\n")
	if r.Drained != nil && !*r.Drained {
		fmt.Fprintf(&b, "txaudit: the backlog did not drain within --wait (%d left)\n", r.Backlog)
	}
	for _, c := range Categories {
		fmt.Fprintf(&b, "  %-10s %6d  %s\n", c, r.Defects[c], categoryHelp[c])
	}
	for _, f := range r.Findings {
		who := f.ID
		if who == "" {
			who = f.AccountID
		}
		fmt.Fprintf(&b, "  - %s %s: %s\n", f.Category, who, f.Detail)
	}
	if n := r.total(); n > len(r.Findings) {
		fmt.Fprintf(&b, "  … and %d more\n", n-len(r.Findings))
	}
	switch {
	case r.Clean && r.Drained != nil && !*r.Drained:
		b.WriteString("txaudit: NOT DRAINED — no defect in what was delivered, but the backlog did not drain in time\n")
	case r.Clean:
		b.WriteString("txaudit: CLEAN — nothing lost, nothing unknown, no mismatch, nothing applied twice, " +
			"every balance adds up\n")
	default:
		fmt.Fprintf(&b, "txaudit: DEFECTS FOUND (%d)\n", r.total())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// String is the traffic in one phrase: "3 transactions — approved 2 (250 EUR), declined 1".
func (t Traffic) String() string {
	cur := make([]string, 0, len(t.ApprovedAmounts))
	for c := range t.ApprovedAmounts {
		cur = append(cur, c)
	}
	sort.Strings(cur)
	amounts := make([]string, 0, len(cur))
	for _, c := range cur {
		amounts = append(amounts, fmt.Sprintf("%d %s", t.ApprovedAmounts[c], c))
	}
	if len(amounts) == 0 {
		amounts = []string{"0"}
	}
	return fmt.Sprintf("%d transactions — approved %d (%s), declined %d", t.Transactions, t.Approved,
		strings.Join(amounts, ", "), t.Declined)
}

func (r Report) total() int {
	n := 0
	for _, v := range r.Defects {
		n += v
	}
	return n
}

// ErrDefects is what callers return when a report is not clean (txaudit exits 1 on it).
var ErrDefects = errors.New("audit found defects")
