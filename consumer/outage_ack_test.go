package consumer

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
)

// okThenDown accepts the first ok requests, then answers 503 to every
// request until up is closed.
type okThenDown struct {
	mu       sync.Mutex
	ok       int
	accepted int
	refused  int
	up       chan struct{}
}

func (s *okThenDown) Send(ctx context.Context, evs []json.RawMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.up:
		s.accepted += len(evs)
		return nil
	default:
	}
	if s.ok > 0 {
		s.ok--
		s.accepted += len(evs)
		return nil
	}
	s.refused++
	return &sink.HTTPError{Status: 503}
}

func (s *okThenDown) Close() error { return nil }

func (s *okThenDown) counts() (accepted, refused int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.refused
}

// TestOutageAcksEntriesDeliveredBeforeIt: entries delivered just before a
// sink outage are dequeued during the outage (once DequeueInterval has
// passed), not only when the sink comes back, so a crash during a long
// outage does not redeliver them.
func TestOutageAcksEntriesDeliveredBeforeIt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		h.events(3, 2)
		snk := &okThenDown{ok: 2, up: make(chan struct{})}
		c := h.consumerWith(h.config(func(c *Config) {
			c.SinkBatchSize = 2
			c.Prefetch = 1
			c.DequeueInterval = 300 * time.Millisecond
			// One request at a time: the sink accepts the first two requests
			// to arrive, which must be entries 0 and 1.
			c.SinkConcurrency = 1
		}), snk)
		r := start(c)
		defer r.stop(t)
		// Entry 0 is delivered and dequeued at once (the first dequeue is
		// due); entry 1 is delivered less than DequeueInterval later, so its
		// dequeue waits; entry 2 meets the outage.
		eventually(t, "the sink to refuse entry 2", func() bool { _, refused := snk.counts(); return refused >= 1 })
		eventually(t, "entry 1 dequeued while the sink is still down", func() bool { return h.queueLen() == 1 })
		if accepted, _ := snk.counts(); accepted != 4 {
			t.Fatalf("sink accepted %d events during the outage, want entries 0 and 1 (4)", accepted)
		}
		close(snk.up)
		eventually(t, "queue drained after the outage", func() bool { return h.queueLen() == 0 })
	})
}
