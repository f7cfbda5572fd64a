package e2e

import (
	"net/http"
	"testing"
)

func TestRetryable5xx(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		want   bool
	}{
		{503, `{"error":{"code":"unavailable","message":"database unavailable, retry later"}}`, true},
		{503, `{"error":{"code":"overloaded"}}`, true},
		{504, `{"error":{"code":"outcome_unknown"}}`, true},
		{503, `no healthy upstream`, false}, // a proxy's, not the Store's
		{504, `{"error":{"code":"unavailable"}}`, false},
		{500, `{"error":{"code":"internal"}}`, false},
		{502, ``, false},
	} {
		if got := retryable5xx(c.status, []byte(c.body)); got != c.want {
			t.Errorf("retryable5xx(%d, %s) = %v, want %v", c.status, c.body, got, c.want)
		}
	}
}

// The drain row's promise: retries told by the contract pass; anything else, or a client giving up, fails.
func TestJudgeRetriesOnly(t *testing.T) {
	drained := true
	rep := &auditReport{Drained: &drained}
	sc := scenario{name: "drain", retriesOnly: true}
	row := func(f func(*Row)) *Row {
		r := &Row{Purchases: 100}
		r.Client5xx, r.Client.Status5xx = 40, 40
		f(r)
		return r
	}
	if !judge(sc, row(func(*Row) {}), rep) {
		t.Error("40 retried contract 5xx, none gave up: want pass")
	}
	if judge(sc, row(func(r *Row) { r.Failed, r.Client.Failed = 1, 1 }), rep) {
		t.Error("a client gave up: want fail")
	}
	if judge(sc, row(func(r *Row) { r.Client.Other5xx = 1 }), rep) {
		t.Error("a 5xx outside the contract: want fail")
	}
	strict := scenario{name: "rolling-update", noClientErrors: true}
	if judge(strict, row(func(*Row) {}), rep) {
		t.Error("noClientErrors with 40 client 5xx: want fail")
	}
	d := newDriver(func() string { return "" }, http.DefaultClient, 1, 1, "t")
	d.note5xx(503, []byte(`{"error":{"code":"unavailable"}}`))
	d.note5xx(502, []byte(`bad gateway`))
	d.note5xx(504, []byte(`{"error":{"code":"outcome_unknown","message":"purchase 01a24b43-81de-7cd6-9ae8-fd2fc64d6693 is stored"}}`))
	d.note5xx(504, []byte(`{"error":{"code":"outcome_unknown","message":"purchase 01a24b43-8327-7ddc-9b25-33ef723eb879 is stored"}}`))
	if n := d.stats().Why5xx["504 outcome_unknown: purchase <id> is stored"]; n != 2 {
		t.Errorf("two 504s about two purchases: %d under one line, want 2 (%v)", n, d.stats().Why5xx)
	}
	if s := d.stats(); s.Other5xx != 1 {
		t.Errorf("Other5xx = %d after a contract 503 and a proxy's 502, want 1", s.Other5xx)
	}
}
