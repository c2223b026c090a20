package consumer

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bucketq/bucketq/internal/openmetertest"
)

// TestDequeueIntervalCoalescesManifestWrites: while busy, the consumer acks
// with at most one manifest write per DequeueInterval, and still drains the
// queue when it runs empty; with a tiny interval it writes once per flush.
func TestDequeueIntervalCoalescesManifestWrites(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                 string
		interval             time.Duration
		minWrites, maxWrites int
	}{
		// Fence + one dequeue once the queue is empty.
		{"coalesced", time.Hour, 2, 3},
		// Fence + one dequeue per completed entry (30 entries, one per
		// flush): each request takes a millisecond, more than the interval.
		{"every flush", time.Nanosecond, 31, 31},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				// Each request takes a millisecond of the bubble's clock:
				// with none, every entry would complete at the same instant.
				h := newHarness(t, openmetertest.Options{Latency: time.Millisecond})
				want := h.events(30, 4) // one entry per sink batch of 4
				var writes atomic.Int64
				h.store.BeforeWrite = func(string) error { writes.Add(1); return nil }
				// One request at a time: with several in flight, answers arrive
				// together and complete several entries per dequeue, which is
				// not what the interval is tested for.
				cons := h.consumer(h.config(func(cfg *Config) { cfg.DequeueInterval = c.interval; cfg.SinkConcurrency = 1 }), "")
				r := start(cons)
				defer r.stop(t)
				if !h.om.WaitEvents(len(want), patience) {
					t.Fatalf("delivered %d of %d", len(h.om.Events()), len(want))
				}
				eventually(t, "queue drained", func() bool { return h.queueLen() == 0 })
				if n := int(writes.Load()); n < c.minWrites || n > c.maxWrites {
					t.Fatalf("%d manifest writes, want %d..%d", n, c.minWrites, c.maxWrites)
				}
				if h.om.Duplicates() != 0 || h.om.Distinct() != len(want) {
					t.Fatalf("distinct %d duplicates %d, want %d and 0", h.om.Distinct(), h.om.Duplicates(), len(want))
				}
			})
		})
	}
}
