package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"
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

func newRecordingSink(endpoint, token string, timeout time.Duration) *recordingSink {
	return &recordingSink{HTTP: sink.NewHTTP(endpoint, token, sink.HTTPOptions{Timeout: timeout})}
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

// waitForValue polls like waitFor; it exists so a failure names the value.
func waitForValue(t *testing.T, what string, get func() float64, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		v := get()
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last value %v)", patience, what, v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
