// Package webtest checks a service's management listener (ADMIN_ADDR) from the outside, for tests: plain
// HTTP requests, each on a new connection, so that a closed listener shows as a failed request.
package webtest

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/internal/payment"
)

// Client is a plain HTTP client without keep-alive and without a client certificate (a kubelet probe).
var Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// Answer is a response read in full.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// Get sends GET url with c.
func Get(c *http.Client, url string) (Answer, error) {
	resp, err := c.Get(url)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, err
}

// MustGet is Get with Client, failing the test on a transport error.
func MustGet(t testing.TB, url string) Answer {
	t.Helper()
	a, err := Get(Client, url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return a
}

// WantUnavailable fails the test unless a is the services' 503: Retry-After and the JSON error body with
// code unavailable.
func WantUnavailable(t testing.TB, a Answer, what string) {
	t.Helper()
	var e payment.ErrorBody
	if a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" ||
		json.Unmarshal([]byte(a.Body), &e) != nil || e.Error.Code != payment.CodeUnavailable {
		t.Fatalf("%s: %d %v %s; want 503 unavailable with Retry-After", what, a.Status, a.Header, a.Body)
	}
}

// Drain is what WatchDrain saw.
type Drain struct {
	NotReady int           // /readyz answers 503 before the listener closed
	Live     int           // /healthz answers 200 among them
	Closed   time.Duration // from the start of the watch to the listener's close
}

// WatchDrain polls base+"/readyz" (and /healthz) of a service that is shutting down until the listener
// closes, within limit. It fails the test on an answer other than 200 or the 503, on a 200 after a 503, and
// on an error other than a closed listener.
func WatchDrain(t testing.TB, base string, limit time.Duration) Drain {
	t.Helper()
	start := time.Now()
	var d Drain
	for {
		r, err := Get(Client, base+"/readyz")
		if err != nil {
			// The listener closed: a refused dial, or a connection the kernel had queued reset with it.
			var opErr *net.OpError
			if (!errors.As(err, &opErr) || opErr.Op != "dial") && !errors.Is(err, io.EOF) &&
				!errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("%s/readyz during shutdown: %v (want 503s, then a closed listener)", base, err)
			}
			d.Closed = time.Since(start)
			return d
		}
		switch r.Status {
		case http.StatusServiceUnavailable:
			WantUnavailable(t, r, base+"/readyz while draining")
			d.NotReady++
			if h, err := Get(Client, base+"/healthz"); err == nil && h.Status == http.StatusOK {
				d.Live++
			}
		case http.StatusOK:
			if d.NotReady > 0 {
				t.Fatalf("%s/readyz went back to 200 while draining", base)
			}
		default:
			t.Fatalf("%s/readyz during shutdown: %d %s", base, r.Status, r.Body)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: the listener did not close within %v (%d readiness 503s)", base, limit, d.NotReady)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Refuses fails the test if addr (host:port) still accepts connections.
func Refuses(t testing.TB, addr string) {
	t.Helper()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections", addr)
	}
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago, for an ADMIN_ADDR the test must know
// before the service starts.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
