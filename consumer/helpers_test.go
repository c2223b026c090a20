package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
)

// patience is how long a test waits for a condition before failing. It is
// far above the time anything takes on a loaded CI machine: waits end as
// soon as their condition holds, so it only matters when a test fails.
const patience = 30 * time.Second

// sendRecord is one sink request seen by recordingSink.
type sendRecord struct {
	start  time.Time
	done   bool
	status int // the HTTP status; 0 when there was no response
	err    error
}

// recordingSink is the HTTP sink, recording when each request started and
// how it ended, so tests can check retry spacing from the consumer's side.
type recordingSink struct {
	*sink.HTTP
	mu    sync.Mutex
	sends []sendRecord
}

func newRecordingSink(s *sink.HTTP) *recordingSink {
	return &recordingSink{HTTP: s}
}

// httpSink is the HTTP sink to the harness's fake API, through its
// in-memory client (no network, so it works in a synctest bubble).
func (h *harness) httpSink(token string) *sink.HTTP {
	return sink.NewHTTP(h.om.Endpoint, token, sink.HTTPOptions{Client: h.om.Client()})
}

func (s *recordingSink) SendStatus(ctx context.Context, evs []json.RawMessage) (int, error) {
	s.mu.Lock()
	i := len(s.sends)
	s.sends = append(s.sends, sendRecord{start: time.Now()})
	s.mu.Unlock()
	status, err := s.HTTP.SendStatus(ctx, evs)
	s.mu.Lock()
	s.sends[i].done, s.sends[i].status, s.sends[i].err = true, status, err
	s.mu.Unlock()
	return status, err
}

func (s *recordingSink) Send(ctx context.Context, evs []json.RawMessage) error {
	_, err := s.SendStatus(ctx, evs)
	return err
}

// records returns a copy of the requests so far.
func (s *recordingSink) records() []sendRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sendRecord(nil), s.sends...)
}

// answered counts the finished requests answered with status.
func (s *recordingSink) answered(status int) int {
	n := 0
	for _, r := range s.records() {
		if r.done && r.status == status {
			n++
		}
	}
	return n
}

// consumerWith builds a consumer on the harness with its own sink.
func (h *harness) consumerWith(cfg Config, snk sink.Sink) *Consumer {
	h.t.Helper()
	c, err := New(h.bkt, h.q, convert.NewRegistry(), snk, cfg, h.m, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// fakeClock is an injectable Consumer.now that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a log destination safe for the consumer's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// eventually waits, in a synctest bubble, until cond holds at a moment when
// every goroutine of the bubble is blocked, letting the fake clock run on
// in steps of a millisecond; after patience of fake time it fails. It takes
// no real time beyond the work itself.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyValue(t, what, func() float64 {
		if cond() {
			return 1
		}
		return 0
	}, func(v float64) bool { return v == 1 })
}

// eventuallyValue is eventually for a value, which it returns; a failure
// names the last value.
func eventuallyValue(t *testing.T, what string, get func() float64, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		synctest.Wait()
		v := get()
		if ok(v) {
			return v
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("timed out after %v of fake time waiting for %s (last value %v)", patience, what, v)
		}
		time.Sleep(time.Millisecond)
	}
}
