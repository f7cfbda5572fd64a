package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txmesh/txmesh/src/internal/banktest"
	"github.com/txmesh/txmesh/src/internal/payment"
	"github.com/txmesh/txmesh/src/internal/pgtest"
)

// stall opens n connections to the service at base that each send the headers of a purchase and half its
// body, then stall.
func stall(t testing.TB, base string, n int) []net.Conn {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"account_id":"ACC-000001","amount":1250,"currency":"EUR"}`
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := fmt.Fprintf(c, "POST /v1/purchases HTTP/1.1\r\nHost: store\r\nContent-Type: application/json\r\n"+
			"Content-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2]); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns
}

// startStalled starts the store (the default HTTP_MAX_IN_FLIGHT, 64) on a real PostgreSQL and Bank, with 80
// connections stalled mid-body: more than the bound.
func startStalled(t testing.TB, bodyTimeout time.Duration) (*service, []net.Conn) {
	bank := banktest.Start(t, banktest.Options{Accounts: 5})
	s := startService(t, withBank(bank, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t),
		"GENERATOR_INTERVAL": "0", "HTTP_READ_BODY_TIMEOUT": bodyTimeout.String(),
		"LOG_LEVEL": "info"}))
	conns := stall(t, s.url, 80)
	time.Sleep(500 * time.Millisecond) // let the server read their headers (no assertion on time)
	return s, conns
}

// TestStalledClientsDoNotStarvePurchases: with 80 connections stalled mid-body on a store bounded to 64
// requests in flight, normal purchases are still accepted (the bound's slots are taken only once a body is
// in); the stalled requests are answered 408 request_timeout at HTTP_READ_BODY_TIMEOUT and stored nothing.
func TestStalledClientsDoNotStarvePurchases(t *testing.T) {
	s, conns := startStalled(t, 3*time.Second)
	for i := range 10 {
		resp, err := http.Post(s.url+"/v1/purchases", "application/json",
			strings.NewReader(`{"account_id":"ACC-000002","amount":10,"currency":"EUR"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("purchase %d while 80 clients stall: %d %s", i, resp.StatusCode, b)
		}
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("stalled request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), payment.CodeRequestTimeout) {
			t.Fatalf("stalled request %d: %d %s; want 408 request_timeout", i, resp.StatusCode, b)
		}
	}
	var st struct{ Backlog int64 }
	if getJSON(t, s.url+"/v1/outbox", &st); st.Backlog > 10 {
		t.Fatalf("%d purchases stored, want the 10 accepted", st.Backlog)
	}
}

// BenchmarkPurchasesWhile80Stall measures normal clients' purchases (8 at once, keep-alive) on a store
// bounded to 64 requests in flight while 80 connections stall mid-body: p50 and p99 latency, and the share
// shed (503 overloaded). Run: go test -run '^$' -bench PurchasesWhile80Stall -benchtime 2000x ./src/cmd/store/
func BenchmarkPurchasesWhile80Stall(b *testing.B) {
	s, _ := startStalled(b, 10*time.Minute)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	var mu sync.Mutex
	var took []time.Duration
	shed, failed := 0, 0
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0))) // about 8 clients at once
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := time.Now()
			resp, err := hc.Post(s.url+"/v1/purchases", "application/json",
				strings.NewReader(`{"account_id":"ACC-000003","amount":5,"currency":"EUR"}`))
			d := time.Since(start)
			mu.Lock()
			switch {
			case err != nil:
				failed++
			default:
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusAccepted:
					took = append(took, d)
				case http.StatusServiceUnavailable:
					shed++
				default:
					failed++
				}
			}
			mu.Unlock()
		}
	})
	b.StopTimer()
	if failed > 0 || len(took) == 0 {
		b.Fatalf("%d purchases failed, %d accepted", failed, len(took))
	}
	slices.Sort(took)
	q := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(float64(shed)/float64(shed+len(took)), "shed_ratio")
}
