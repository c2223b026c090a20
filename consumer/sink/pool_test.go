package sink

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPKeepsAlivePoolForConcurrentRequests: the default client keeps
// as many idle connections as requests were in flight (IdleConnsPerHost),
// so rounds of concurrent requests reuse their connections instead of
// opening new ones (Go's default transport keeps 2 per host).
func TestHTTPKeepsAlivePoolForConcurrentRequests(t *testing.T) {
	const conc = 12
	var conns, arrived atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		// Hold every request until the whole round arrived: all conc
		// are in flight together.
		n := arrived.Add(1)
		for target := (n + conc - 1) / conc * conc; arrived.Load() < target; {
			time.Sleep(time.Millisecond)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s := NewHTTP(srv.URL, "", HTTPOptions{IdleConnsPerHost: conc})
	defer s.Close()
	for round := range 3 {
		var wg sync.WaitGroup
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Send(context.Background(), evs("a")); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if round == 0 && conns.Load() != conc {
			t.Fatalf("%d connections for %d concurrent requests", conns.Load(), conc)
		}
	}
	if n := conns.Load(); n > conc+2 {
		t.Fatalf("3 rounds of %d concurrent requests opened %d connections: the idle pool does not keep them", conc, n)
	}
}
