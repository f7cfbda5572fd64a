// Package httpfault answers HTTP requests in a server's place, as what sits between a client and a server in
// production does: an Envoy sidecar's 403 "RBAC: access denied" (an AuthorizationPolicy), a route's empty
// 404, a 403 that replaces the server's answer after it handled the request, a body garbled on its way, and
// the transport's faults (a 503 without handling, a connection reset before or after handling, an answer
// held past the client's timeout). None of its answers carries the server's marks. banktest wraps the
// in-process Bank with it; the HA lab runs it as a proxy between the Store and the Bank, where a sidecar sits.
package httpfault

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"
)

// Faults are drawn per request, each with its probability; the before-kinds and the after-kinds are one
// draw (their sum at most 1), Corrupt a draw of its own (a garbled request still meets the others).
type Faults struct {
	// Before the server: it never sees the request.
	Unavailable float64 // 503 with a JSON body, as a load balancer with no backend answers
	ResetBefore float64 // the connection reset
	Deny        float64 // 403 text/plain "RBAC: access denied" (an Istio AuthorizationPolicy)
	NoRoute     float64 // 404 with an empty body (no route for the path)
	// After the server handled it: its answer is lost, late or replaced.
	ResetAfter float64 // the connection reset instead of the answer
	SlowAfter  float64 // the answer held for Delay (beyond the client's timeout)
	DenyAfter  float64 // 403 "RBAC: access denied" instead of the answer
	Delay      time.Duration
	// Latency delays every request before anything else (a slow server: requests stay in flight).
	Latency time.Duration
	// Corrupt garbles the request body on its way: the server's own 400 answers it.
	Corrupt float64
}

// Stats counts what the faults did.
type Stats struct {
	Requests  int64 // requests seen
	Foreign   int64 // answered in the server's place with a status (Unavailable, Deny, NoRoute, DenyAfter)
	Resets    int64 // connections reset (before or after)
	Corrupted int64 // request bodies garbled
}

// Injector wraps handlers with faults that can change at any time.
type Injector struct {
	faults atomic.Pointer[Faults]
	stop   chan struct{}

	requests, foreign, resets, corrupted atomic.Int64
}

// New returns an Injector with no fault; Close releases the answers it holds (SlowAfter, Latency).
func New() *Injector {
	in := &Injector{stop: make(chan struct{})}
	in.faults.Store(&Faults{})
	return in
}

// Set changes the faults from the next request on.
func (in *Injector) Set(f Faults) { in.faults.Store(&f) }

// Faults returns the faults in force.
func (in *Injector) Faults() Faults { return *in.faults.Load() }

// Stats returns the counters.
func (in *Injector) Stats() Stats {
	return Stats{Requests: in.requests.Load(), Foreign: in.foreign.Load(), Resets: in.resets.Load(),
		Corrupted: in.corrupted.Load()}
}

// Close ends the waits of held answers.
func (in *Injector) Close() {
	select {
	case <-in.stop:
	default:
		close(in.stop)
	}
}

func (in *Injector) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-in.stop:
	}
}

// Wrap returns next behind the faults. The server's answer is recorded before it is passed on (or lost, or
// replaced); applies, when not nil, is told of every request the server handled, with its recorded answer.
func (in *Injector) Wrap(next http.Handler, applies func(*http.Request, *httptest.ResponseRecorder)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.requests.Add(1)
		f := in.faults.Load()
		if f.Latency > 0 {
			in.sleep(f.Latency)
		}
		p, at := rand.Float64(), 0.0
		hit := func(prob float64) bool { at += prob; return p < at }
		switch {
		case hit(f.Unavailable):
			in.foreign.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"injected fault"}}`))
			return
		case hit(f.ResetBefore):
			in.reset(w)
			return
		case hit(f.Deny):
			in.deny(w)
			return
		case hit(f.NoRoute):
			in.foreign.Add(1)
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if f.Corrupt > 0 && rand.Float64() < f.Corrupt {
			in.corrupted.Add(1)
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(append([]byte("\x00garbled"), body...)))
			r.ContentLength = -1
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if applies != nil {
			applies(r, rec)
		}
		switch {
		case hit(f.ResetAfter):
			in.reset(w)
			return
		case hit(f.SlowAfter):
			in.sleep(f.Delay)
		case hit(f.DenyAfter):
			in.deny(w)
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// deny answers as an Envoy sidecar does for a request an AuthorizationPolicy refuses.
func (in *Injector) deny(w http.ResponseWriter) {
	in.foreign.Add(1)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte("RBAC: access denied"))
}

// reset takes the connection from the HTTP server and resets it (RST): the client sees a broken connection.
func (in *Injector) reset(w http.ResponseWriter) {
	in.resets.Add(1)
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("httpfault: the response writer cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	Reset(conn)
}

// Reset closes c with a TCP RST (linger 0), through any TLS wrapping.
func Reset(c net.Conn) {
	for {
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
