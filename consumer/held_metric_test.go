package consumer

import (
	"testing"
	"testing/synctest"

	"github.com/bucketq/bucketq/internal/openmetertest"
)

// TestSinkBreakerOpenGaugeFollowsTheHold: sink_breaker_open is 0 while the
// breaker only dead-letters, 1 from the first held retry for as long as the
// event is held (across retries), and 0 again once the sink accepts it.
func TestSinkBreakerOpenGaugeFollowsTheHold(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{Poison: refuseAll})
		h.events(2, 3)
		c, _ := h.loggedConsumer(h.config(func(c *Config) { c.MaxConsecutivePoison = 2 }))
		open := h.m.SinkBreakerOpen
		held := h.m.SinkEvents.WithLabelValues("held")
		if v := value(open); v != 0 {
			t.Fatalf("sink_breaker_open %v before the consumer started, want 0", v)
		}
		r := start(c)
		defer r.stop(t)

		eventuallyValue(t, "sink_breaker_open to become 1 while the breaker holds", func() float64 { return value(open) }, func(v float64) bool { return v == 1 })
		// Still held (and the gauge still 1) after several slow retries.
		eventuallyValue(t, "three held retries", func() float64 { return value(held) }, func(v float64) bool { return v >= 3 })
		if v := value(open); v != 1 {
			t.Fatalf("sink_breaker_open %v after three held retries, want 1", v)
		}
		if n := len(h.om.Events()); n != 0 {
			t.Fatalf("the refusing sink accepted %d events", n)
		}

		h.om.SetPoison(nil) // the operator fixed the route
		eventually(t, "queue drained after the sink recovered", func() bool { return h.queueLen() == 0 })
		// The gauge is cleared when the held event is delivered, before the
		// dequeue that drained the queue: no wait needed.
		if v := value(open); v != 0 {
			t.Fatalf("sink_breaker_open %v after the sink recovered and the queue drained, want 0", v)
		}
		if n := len(h.om.Events()); n != 4 {
			t.Fatalf("delivered %d events after recovery, want the 4 not dead-lettered", n)
		}
	})
}

// TestSinkBreakerOpenGaugeClearedOnStop: a consumer stopped while holding
// leaves the gauge at 0 — it holds nothing any more — though the event
// stays queued.
func TestSinkBreakerOpenGaugeClearedOnStop(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h, r := startHeld(t)
		eventuallyValue(t, "sink_breaker_open to become 1 while the breaker holds", func() float64 { return value(h.m.SinkBreakerOpen) }, func(v float64) bool { return v == 1 })
		r.stop(t)
		if v := value(h.m.SinkBreakerOpen); v != 0 {
			t.Fatalf("sink_breaker_open %v after Run returned, want 0", v)
		}
		if n := h.queueLen(); n != 2 {
			t.Fatalf("queue holds %d entries after a stop while held, want 2", n)
		}
	})
}

// TestSinkBreakerOpenGaugeClearedOnStart: a Run starts with the gauge at 0
// even when an earlier holder in the process left it at 1 (a library user
// sharing one Metrics across consumers, or a Run that never returned
// cleanly).
func TestSinkBreakerOpenGaugeClearedOnStart(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		h.m.SinkBreakerOpen.Set(1)
		r := start(h.consumer(h.config(nil), ""))
		defer r.stop(t)
		// The epoch is set after the fence, which follows the reset; the queue
		// is empty, so no delivery clears the gauge on its own.
		eventuallyValue(t, "the consumer to fence the queue", func() float64 { return value(h.m.ConsumerEpoch) }, func(v float64) bool { return v >= 1 })
		if v := value(h.m.SinkBreakerOpen); v != 0 {
			t.Fatalf("sink_breaker_open %v after Run started, want 0", v)
		}
	})
}
