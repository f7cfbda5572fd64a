package lab

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// API is what the Store API answered the lab's load, held against store-db at the end. The Store never says
// anything false: a 503 says nothing was stored, so a 503'd Purchase-Id in store-db is a false 503; a 504
// (outcome unknown) names a purchase the client resolves by reading its Location or retrying with its key.
type API struct {
	Posts      int
	ByStatus   map[int]int // 0: no answer (connection error, client timeout)
	False503   int         // 503'd Purchase-Ids that store-db holds
	Unexpected int         // answers other than 202, 503 and 504
	Unknown    int         // 504s
	Resolved   map[string]int
	// DoubleAfter504: a 504's purchase is stored, and a retry with its key stored another one.
	DoubleAfter504 int
	Examples       []string
}

// judgeAPI holds the answers against stored (whether store-db holds a purchase id).
func judgeAPI(answers []postAnswer, unknowns []unknownOutcome, stored func(string) bool) API {
	a := API{Posts: len(answers), ByStatus: map[int]int{}, Resolved: map[string]int{}}
	for _, x := range answers {
		a.ByStatus[x.Status]++
		switch x.Status {
		case http.StatusAccepted, http.StatusGatewayTimeout, 0:
		case http.StatusServiceUnavailable:
			if x.ID != "" && stored(x.ID) {
				a.False503++
				a.example("false 503: " + x.ID)
			}
		default:
			a.Unexpected++
			a.example("unexpected " + http.StatusText(x.Status) + ": " + x.ID)
		}
	}
	for _, u := range unknowns {
		a.Unknown++
		a.Resolved[u.Resolution]++
		if u.Resolution == resolvedRetryNew && stored(u.ID) {
			a.DoubleAfter504++
			a.example("504'd purchase stored besides its retry's: " + u.ID)
		}
	}
	return a
}

func (a *API) example(s string) {
	if len(a.Examples) < 5 {
		a.Examples = append(a.Examples, s)
	}
}

// StandbyResult is one "store-db standby gone" window.
type StandbyResult struct {
	Gone time.Duration
	// ByStatus: the answers to the POSTs sent from the standby's loss to its return.
	ByStatus map[int]int
	// ToAccepting: from the standby's return to the first 202 to a POST sent after it; -1 when none came.
	ToAccepting time.Duration
}

func measureStandby(w window, answers []postAnswer) StandbyResult {
	s := StandbyResult{Gone: w.To.Sub(w.From), ByStatus: map[int]int{}, ToAccepting: -1}
	for _, a := range answers {
		if !a.Sent.Before(w.From) && a.Sent.Before(w.To) {
			s.ByStatus[a.Status]++
		}
		if a.Status == http.StatusAccepted && !a.Sent.Before(w.To) {
			if d := a.Sent.Add(a.Took).Sub(w.To); s.ToAccepting < 0 || d < s.ToAccepting {
				s.ToAccepting = d
			}
		}
	}
	return s
}

// StallResult is one stalled-clients window: the latency of the normal clients of the stalled Store.
type StallResult struct {
	Store         string
	For           time.Duration
	Posts         int // POSTs to that Store sent during the window
	P99, Max      time.Duration
	NoAnswer      int
	Stallers      string
	OtherStoreP99 time.Duration
}

func measureStall(w window, store int, answers []postAnswer) StallResult {
	s := StallResult{Store: w.Target, For: w.To.Sub(w.From), Stallers: w.Detail}
	var lat, other []time.Duration
	for _, a := range answers {
		if a.Sent.Before(w.From) || !a.Sent.Before(w.To) {
			continue
		}
		if a.Store != store {
			other = append(other, a.Took)
			continue
		}
		lat = append(lat, a.Took)
		if a.Status == 0 {
			s.NoAnswer++
		}
	}
	s.Posts = len(lat)
	s.P99, s.Max = p99(lat), p99max(lat)
	s.OtherStoreP99 = p99(other)
	return s
}

// p99 is the 99th percentile (nearest rank) of ds; 0 for none.
func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (99*len(s)+99)/100 - 1
	return s[i]
}

func p99max(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}

// judgeAPIAnswers holds the load's answers against store-db and measures the standby and stall windows.
func (r *run) judgeAPIAnswers(ctx context.Context, storeDSN string) error {
	answers, unknowns := r.load.results()
	conn, err := pgx.Connect(ctx, storeDSN)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT id::text FROM purchases WHERE source = 'api'")
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	stored := make(map[string]bool, len(ids))
	for _, id := range ids {
		stored[id] = true
	}
	r.res.API = judgeAPI(answers, unknowns, func(id string) bool { return stored[id] })
	standbys, stalls := r.exec.windows()
	for _, w := range standbys {
		r.res.Standbys = append(r.res.Standbys, measureStandby(w, answers))
	}
	for _, w := range stalls {
		idx := 0
		for i, s := range r.stores {
			if s.Name() == w.Target {
				idx = i
			}
		}
		r.res.Stalls = append(r.res.Stalls, measureStall(w, idx, answers))
	}
	return nil
}
