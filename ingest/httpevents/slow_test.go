package httpevents

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/ingest/reqbody"
)

// hangGuard bounds every wait of these tests; it is a hang guard, not a
// timing assertion.
const hangGuard = 20 * time.Second

// slowServer is the handler behind a real loopback server.
func slowServer(t *testing.T, app interface {
	Append(context.Context, format.Header, [][]byte) error
}, cfg Config) (*httptest.Server, *ingestmetrics.Metrics) {
	t.Helper()
	cfg.Now = func() time.Time { return fixedNow }
	m := ingestmetrics.New(nil)
	srv := httptest.NewServer(NewHandler(app, cfg, m, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	return srv, m
}

// rawPost opens a connection to srv and sends the headers of a POST with
// the given Content-Length (and extra header lines) and the first bytes of
// its body.
func rawPost(t *testing.T, srv *httptest.Server, contentLength int, extra, body string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hangGuard))
	fmt.Fprintf(c, "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s", ctBatch, contentLength, extra, body)
	return c
}

// TestSlowBodyIsCutOff: a client that declares 8 MiB and then sends one
// byte, or trickles far below the minimum rate, is answered 408 (counted)
// and its connection closed, plain or gzip. Before, the handler waited for
// ever.
func TestSlowBodyIsCutOff(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		trickle     bool
	}{
		{"stalled", "", false},
		{"trickling", "", true},
		{"stalled gzip", "Content-Encoding: gzip\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := &recorder{}
			srv, m := slowServer(t, app, Config{BodyLimits: reqbody.Limits{Timeout: 200 * time.Millisecond, MinRate: 1 << 20}})
			c := rawPost(t, srv, 8<<20, tc.extra, "[")
			if tc.trickle {
				go func() {
					for range 200 {
						if _, err := c.Write([]byte(" ")); err != nil {
							return
						}
						time.Sleep(20 * time.Millisecond)
					}
				}()
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("Content-Type") != "application/problem+json" ||
				!strings.Contains(string(body), "too slowly") {
				t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if !resp.Close {
				t.Errorf("408 without Connection: close")
			}
			if n, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("connection still open: read %d bytes", n)
			}
			if n := val(m.Requests.WithLabelValues(Front, "408")); n != 1 {
				t.Errorf("IngestRequests{408} = %v", n)
			}
			if app.calls != 0 {
				t.Errorf("the producer was called")
			}
		})
	}
}

// slowAppender is an Appender that takes its time, as a producer waiting
// for its commit does.
type slowAppender struct{ d time.Duration }

func (s slowAppender) Append(ctx context.Context, _ format.Header, _ [][]byte) error {
	select {
	case <-time.After(s.d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestRateGuardEndsWithTheBody: the read deadline of the rate guard does
// not outlive the body. A request whose commit takes longer than the body
// timeout is still answered 204 (an expired deadline on the connection
// would cancel its context), and the next request on the same connection,
// sent after the timeout, too.
func TestRateGuardEndsWithTheBody(t *testing.T) {
	timeout := 100 * time.Millisecond
	srv, _ := slowServer(t, slowAppender{d: 3 * timeout}, Config{BodyLimits: reqbody.Limits{Timeout: timeout, MinRate: 1 << 20}})
	body := "[" + ev("a", `"time":"2026-01-01T00:00:00Z"`) + "]"
	c := rawPost(t, srv, len(body), "", body)
	br := bufio.NewReader(c)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("request %d: status %d: %s", i, resp.StatusCode, b)
		}
		time.Sleep(2 * timeout)
		fmt.Fprintf(c, "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", ctBatch, len(body), body)
	}
}

// TestBodyBudget: body bytes are reserved as they arrive, in chunks, not
// the declared length; once the shared budget is spent, requests get 429
// until the bytes are released.
func TestBodyBudget(t *testing.T) {
	budget := reqbody.NewBudget(256 << 10)
	srv, m := slowServer(t, &recorder{}, Config{Budget: budget})
	// Declares 8 MiB (32 times the budget) and sends 100 KiB: two chunks
	// reserved, no more.
	c := rawPost(t, srv, 8<<20, "", "["+strings.Repeat(" ", 100<<10))
	for start := time.Now(); budget.Used() < 128<<10; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > hangGuard {
			t.Fatalf("budget used %d, want the 100 KiB received reserved", budget.Used())
		}
	}
	time.Sleep(50 * time.Millisecond) // were it reserving more, it would by now
	if u := budget.Used(); u > 128<<10 {
		t.Fatalf("budget used %d after 100 KiB received: more than the bytes received (in 64 KiB chunks)", u)
	}
	// A second body of 200 KiB does not fit next to it.
	big := "[" + ev("b", `"time":"2026-01-01T00:00:00Z"`) + strings.Repeat(" ", 200<<10) + "]"
	resp, err := http.Post(srv.URL, ctBatch, strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "memory bound") {
		t.Fatalf("status %d Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	// The slow client goes away: its bytes are released, and the same
	// request is accepted.
	c.Close()
	for start := time.Now(); budget.Used() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > hangGuard {
			t.Fatalf("budget used %d after the client went away", budget.Used())
		}
	}
	resp, err = http.Post(srv.URL, ctBatch, strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d after the budget was released", resp.StatusCode)
	}
	if budget.Used() != 0 {
		t.Errorf("budget used %d after every request finished", budget.Used())
	}
	if n := val(m.Requests.WithLabelValues(Front, "429")); n != 1 {
		t.Errorf("IngestRequests{429} = %v", n)
	}
}
