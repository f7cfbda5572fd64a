package lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// stallers are slow clients: each sends a POST /v1/purchases's headers and half its body, then nothing. A
// connection the Store closes (its body read deadline: a 408) is opened again at once, so n connections
// stall until ctx ends.
type stallers struct {
	opened, timedOut atomic.Int64 // connections opened; answered 408 by the Store
}

// stallBody is half of the body the headers announce.
const stallBody = `{"account_id":"ACC-000001","amount":`

func (s *stallers) run(ctx context.Context, addr string, n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				s.one(ctx, addr)
				sleep(ctx, 50*time.Millisecond)
			}
		})
	}
	wg.Wait()
}

func (s *stallers) one(ctx context.Context, addr string) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return
	}
	s.opened.Add(1)
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	defer c.Close()
	_, err = fmt.Fprintf(c, "POST /v1/purchases HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Idempotency-Key: lab-stall\r\nContent-Length: %d\r\n\r\n%s", addr, 2*len(stallBody), stallBody)
	if err != nil {
		return
	}
	// Nothing more is sent: wait for the Store to give up on the body (or for the end of the window).
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil && strings.Contains(line, " 408 ") {
		s.timedOut.Add(1)
	}
}
