package web_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/web"
)

// stallBodies opens n connections to addr that each send a POST's headers and half its body, then stall.
func stallBodies(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := fmt.Fprintf(c, "POST /work HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"+
			"Content-Length: 100\r\n\r\n%s", strings.Repeat("x", 50)); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns
}

// TestStalledBodiesDoNotStarveOthers: 80 connections send headers and half a body and stall, against a
// handler bounded to 4 requests in flight. Bounded reads bodies before the bound's slot is taken, so normal
// requests meanwhile all reach the handler and get its 202 (without it the 4 slots are held by stalled
// bodies and every normal request is shed); the stalled ones are answered 408 request_timeout at their body
// deadline, their connections closed, and never reach the handler.
func TestStalledBodiesDoNotStarveOthers(t *testing.T) {
	const bound, stalled, normal = 4, 80, 20
	reg := prometheus.NewRegistry()
	var handled, entered atomic.Int64
	limited := web.LimitInFlight(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if _, ok := r.Context().Deadline(); !ok {
			w.WriteHeader(http.StatusTeapot) // no request deadline
			return
		}
		handled.Add(1)
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(b)
	}), bound, "t", reg)
	bounded := web.Bounded(limited, web.ServerConfig{ReadBodyTimeout: 3 * time.Second, RequestTimeout: time.Minute,
		Service: "t"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1) // its headers are in
		bounded.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close) // after the stalled connections close (cleanups run last-registered first)
	conns := stallBodies(t, srv.Listener.Addr().String(), stalled)
	for deadline := time.Now().Add(10 * time.Second); entered.Load() < stalled; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d stalled requests had their headers read", entered.Load(), stalled)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := range normal {
		resp, err := http.Post(srv.URL+"/work", "application/json", strings.NewReader(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || string(b) != `{"n":1}` {
			t.Fatalf("normal request %d while %d stall: %d %s", i, stalled, resp.StatusCode, b)
		}
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("stalled request %d: %v", i, err)
		}
		var e payment.ErrorBody
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close ||
			json.Unmarshal(b, &e) != nil || e.Error.Code != payment.CodeRequestTimeout ||
			!payment.IsProblem(resp.Header.Get("Content-Type")) || resp.Header.Get(payment.ServiceHeader) != "t" {
			t.Fatalf("stalled request %d: %d close=%v %v %s; want the service's 408 request_timeout, closed", i,
				resp.StatusCode, resp.Close, resp.Header, b)
		}
	}
	if n := handled.Load(); n != normal {
		t.Fatalf("the handler served %d requests, want the %d normal ones", n, normal)
	}
}

// TestBoundedBodyLimit: a body beyond the largest any route accepts is a 413 before the handler; one within
// reaches it whole.
func TestBoundedBodyLimit(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(web.Bounded(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(int64(len(b)))
	}), web.ServerConfig{}))
	defer srv.Close()
	for _, tt := range []struct {
		size, status int
	}{{payment.MaxBatchBytes, http.StatusOK}, {payment.MaxBatchBytes + 1, http.StatusRequestEntityTooLarge}} {
		got.Store(-1)
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(strings.Repeat(" ", tt.size)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Fatalf("%d bytes: %d, want %d", tt.size, resp.StatusCode, tt.status)
		}
		if want := int64(tt.size); tt.status == http.StatusOK && got.Load() != want {
			t.Fatalf("the handler read %d of %d bytes", got.Load(), want)
		}
		if tt.status != http.StatusOK && got.Load() != -1 {
			t.Fatal("an oversized body reached the handler")
		}
	}
}

func TestServerConfigTimeouts(t *testing.T) {
	base := web.ServerConfig{Addr: ":8080", ShutdownTimeout: time.Second}
	if err := base.Validate(); err != nil {
		t.Fatalf("zero timeouts (the defaults): %v", err)
	}
	if c := base.Timeouts(); c.ReadHeaderTimeout != web.DefaultReadHeaderTimeout ||
		c.ReadBodyTimeout != web.DefaultReadBodyTimeout || c.RequestTimeout != web.DefaultRequestTimeout {
		t.Fatalf("defaults: %+v", c)
	}
	for _, name := range []string{"HTTP_READ_HEADER_TIMEOUT", "HTTP_READ_BODY_TIMEOUT", "HTTP_REQUEST_TIMEOUT"} {
		c := base
		switch name {
		case "HTTP_READ_HEADER_TIMEOUT":
			c.ReadHeaderTimeout = -time.Second
		case "HTTP_READ_BODY_TIMEOUT":
			c.ReadBodyTimeout = -time.Second
		default:
			c.RequestTimeout = -time.Second
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s < 0: %v", name, err)
		}
	}
}
