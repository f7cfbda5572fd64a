package web_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/txmesh/txmesh/src/internal/web"
	"github.com/txmesh/txmesh/src/internal/webtest"
)

// blocking is a service whose /work requests stay in its handler until release is closed, with the
// management routes beside it.
type blocking struct {
	entered, inside, maxInside atomic.Int64
	release                    chan struct{}
	mux                        *http.ServeMux
}

func newBlocking(reg *prometheus.Registry) *blocking {
	b := &blocking{release: make(chan struct{}), mux: http.NewServeMux()}
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) }
	b.mux.HandleFunc(web.PathHealthz, ok)
	b.mux.HandleFunc(web.PathReadyz, ok)
	b.mux.Handle(web.PathMetrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	b.mux.HandleFunc("/work", func(w http.ResponseWriter, _ *http.Request) {
		n := b.inside.Add(1)
		for m := b.maxInside.Load(); n > m && !b.maxInside.CompareAndSwap(m, n); m = b.maxInside.Load() {
		}
		b.entered.Add(1)
		<-b.release
		b.inside.Add(-1)
		_, _ = w.Write([]byte("done"))
	})
	b.mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) })
	return b
}

func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	v, err := webtest.Metric(webtest.Client, base+web.PathMetrics, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLimitInFlightShedsBeyondTheBound fills the bound with requests that stay in the handler, then sends a
// burst ten times the bound on new connections: every one is answered 503 overloaded at once — while the
// bound's requests are still in the handler, so nothing queued — and never reaches the handler; probes and
// the metrics are answered meanwhile; once the handler lets go, the slots serve again.
func TestLimitInFlightShedsBeyondTheBound(t *testing.T) {
	const bound, burst = 3, 30
	reg := prometheus.NewRegistry()
	b := newBlocking(reg)
	srv := httptest.NewServer(web.LimitInFlight(b.mux, bound, "t", reg))
	defer srv.Close()

	held := make(chan webtest.Answer, bound)
	for range bound {
		go func() {
			a, err := webtest.Get(webtest.Client, srv.URL+"/work")
			if err != nil {
				t.Error(err)
			}
			held <- a
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.entered.Load() < bound {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests reached the handler", b.entered.Load(), bound)
		}
		time.Sleep(time.Millisecond)
	}

	var wg sync.WaitGroup
	answers := make([]webtest.Answer, burst)
	took := make([]time.Duration, burst)
	for i := range burst {
		wg.Go(func() {
			start := time.Now()
			a, err := webtest.Get(webtest.Client, srv.URL+"/work") // a 5 s timeout: a queued request fails
			took[i] = time.Since(start)
			if err != nil {
				t.Errorf("burst request %d: %v", i, err)
			}
			answers[i] = a
		})
	}
	wg.Wait()
	for i, a := range answers {
		webtest.WantOverloaded(t, a, "burst request")
		if took[i] > 2*time.Second {
			t.Errorf("burst request %d answered after %s", i, took[i])
		}
	}
	if got := b.entered.Load(); got != bound {
		t.Fatalf("%d requests reached the handler, want the %d of the bound", got, bound)
	}
	for _, p := range []string{web.PathHealthz, web.PathReadyz} {
		if a := webtest.MustGet(t, srv.URL+p); a.Status != http.StatusOK {
			t.Fatalf("GET %s while the bound is full: %d %s", p, a.Status, a.Body)
		}
	}
	if v := metric(t, srv.URL, "t_http_requests_in_flight"); v != bound {
		t.Errorf("in flight %v, want %d", v, bound)
	}
	if v := metric(t, srv.URL, "t_http_max_requests_in_flight"); v != bound {
		t.Errorf("max in flight %v, want %d", v, bound)
	}
	if v := metric(t, srv.URL, "t_http_requests_shed_total"); v != burst {
		t.Errorf("shed %v, want %d", v, burst)
	}

	close(b.release)
	for range bound {
		if a := <-held; a.Status != http.StatusOK || a.Body != "done" {
			t.Fatalf("a request of the bound: %d %s", a.Status, a.Body)
		}
	}
	if a := webtest.MustGet(t, srv.URL+"/work"); a.Status != http.StatusOK {
		t.Fatalf("after the bound's requests ended: %d %s", a.Status, a.Body)
	}
	if m := b.maxInside.Load(); m != bound {
		t.Errorf("at most %d requests were in the handler at once, want %d", m, bound)
	}
	if v := metric(t, srv.URL, "t_http_requests_in_flight"); v != 0 {
		t.Errorf("in flight %v after the load, want 0", v)
	}
}

// TestLimitInFlightPanicFreesItsSlot: a handler that panics (net/http recovers it) gives its slot back.
func TestLimitInFlightPanicFreesItsSlot(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := newBlocking(reg)
	close(b.release)
	srv := httptest.NewServer(web.LimitInFlight(b.mux, 1, "t", reg))
	defer srv.Close()
	for range 3 {
		if _, err := webtest.Get(webtest.Client, srv.URL+"/panic"); err == nil {
			t.Fatal("a panicking handler answered")
		}
	}
	if a := webtest.MustGet(t, srv.URL+"/work"); a.Status != http.StatusOK {
		t.Fatalf("after panics: %d %s", a.Status, a.Body)
	}
}

func TestLimitInFlightOff(t *testing.T) {
	mux := http.NewServeMux()
	if got := web.LimitInFlight(mux, 0, "t", prometheus.NewRegistry()); got != http.Handler(mux) {
		t.Fatalf("HTTP_MAX_IN_FLIGHT=0 wrapped the handler: %T", got)
	}
}

func TestServerConfigMaxInFlight(t *testing.T) {
	for _, n := range []int{0, 1, 64} {
		if err := (web.ServerConfig{Addr: ":8080", ShutdownTimeout: time.Second, MaxInFlight: n}).Validate(); err != nil {
			t.Errorf("HTTP_MAX_IN_FLIGHT=%d: %v", n, err)
		}
	}
	err := web.ServerConfig{Addr: ":8080", ShutdownTimeout: time.Second, MaxInFlight: -1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "HTTP_MAX_IN_FLIGHT") {
		t.Fatalf("HTTP_MAX_IN_FLIGHT=-1: %v", err)
	}
}
