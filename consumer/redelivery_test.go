package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
)

// acceptance is one sink request the consumer saw accepted: when its
// answer came back and how many events it carried.
type acceptance struct {
	at     time.Time
	events int
}

// timedSink is the HTTP sink, recording when each accepted request's answer
// arrived: the moment the consumer learned the events were delivered.
type timedSink struct {
	*sink.HTTP
	mu       sync.Mutex
	accepted []acceptance
}

func (s *timedSink) SendStatus(ctx context.Context, evs []json.RawMessage) (int, error) {
	status, err := s.HTTP.SendStatus(ctx, evs)
	if err == nil {
		now := time.Now()
		s.mu.Lock()
		s.accepted = append(s.accepted, acceptance{at: now, events: len(evs)})
		s.mu.Unlock()
	}
	return status, err
}

func (s *timedSink) Send(ctx context.Context, evs []json.RawMessage) error {
	_, err := s.SendStatus(ctx, evs)
	return err
}

func (s *timedSink) acceptances() []acceptance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]acceptance(nil), s.accepted...)
}

// TestCrashRedeliveryBoundedByDequeueInterval pins the documented bound on
// redelivery (README "Delivery guarantees", consumer package doc): a
// consumer that crashes while busy re-sends at most the events delivered
// since its last successful dequeue, which it writes at most DequeueInterval
// apart — about one DequeueInterval of delivered events, plus the sink
// requests in flight or delivered behind an unfinished one (up to
// SinkConcurrency × SinkBatchSize events), plus the part of one entry
// delivered before the last dequeue.
//
// The bound is measured, not assumed: the window's events are those the
// consumer saw accepted (timedSink's clock) in the last DequeueInterval +
// margin before the crash. The margin covers the one sink request during
// which a due dequeue waits (the dequeue is written after the request that
// completes past the interval): it is the longest time the consumer went
// without a sink answer. The test runs on a synctest bubble's clock, so the
// sink's latency is exact and no slack is needed for a loaded machine.
// Zero duplicates would also pass; more than the bound means dequeues are
// not happening once per interval (e.g. only when the queue runs empty).
func TestCrashRedeliveryBoundedByDequeueInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const (
			entries       = 400
			sinkBatchSize = 5
			concurrency   = 4 // requests in flight: ~1000 events/s at the latency
			interval      = 250 * time.Millisecond
			latency       = 20 * time.Millisecond
		)
		h := newHarness(t, openmetertest.Options{Latency: latency})
		// Entries of 1..4 events, so sink requests straddle entries and an
		// entry is often partly delivered when the consumer dequeues.
		total, largest := 0, 0
		for i := 0; i < entries; i++ {
			n := 1 + i%4
			var recs [][]byte
			for j := 0; j < n; j++ {
				recs = append(recs, event(fmt.Sprintf("e%d-%d", i, j)))
			}
			h.put(recs, nil)
			total += n
			largest = max(largest, n)
		}

		// The crash: from the moment crashed is set, no manifest write lands
		// (not the dequeues while stopping, not Run's final dequeue), as if
		// the process had died with its last dequeue the last one written.
		var crashed atomic.Bool
		h.store.BeforeWrite = func(string) error {
			if crashed.Load() {
				return errors.New("injected: consumer crashed, manifest write lost")
			}
			return nil
		}
		cfg := h.config(func(c *Config) {
			c.SinkBatchSize = sinkBatchSize
			c.SinkConcurrency = concurrency
			c.DequeueInterval = interval
		})
		snk1 := &timedSink{HTTP: h.httpSink("")}
		r1 := start(h.consumerWith(cfg, snk1))
		// Crash once most of the backlog is delivered: 0.7s of the
		// bubble's clock, almost three intervals, at the sink's latency and
		// concurrency.
		crashAfter := total * 7 / 10
		if !h.om.WaitEvents(crashAfter, 3*patience) {
			r1.stop(t)
			t.Fatalf("first consumer delivered %d of %d before the crash point", h.om.Accepted(), crashAfter)
		}
		crashAt := time.Now()
		crashed.Store(true)
		r1.stop(t)
		// A retried request whose answer was lost can duplicate events before
		// the crash too (rare, under load); those are not what the bound is
		// about, so only what the restart re-sends is counted.
		dupsBefore := h.om.Duplicates()
		left := h.queueLen()
		if left == 0 {
			t.Fatalf("the queue is empty after a crash with %d of %d events delivered", h.om.Accepted(), total)
		}

		// What the first consumer saw accepted, and the longest time it went
		// without a sink answer (including up to the crash).
		acc := snk1.acceptances()
		delivered, longestGap := 0, time.Duration(0)
		for i, a := range acc {
			delivered += a.events
			if i > 0 {
				longestGap = max(longestGap, a.at.Sub(acc[i-1].at))
			}
		}
		if len(acc) > 0 && crashAt.After(acc[len(acc)-1].at) {
			longestGap = max(longestGap, crashAt.Sub(acc[len(acc)-1].at))
		}
		margin := longestGap
		windowStart := crashAt.Add(-(interval + margin))
		inWindow := 0
		for _, a := range acc {
			if !a.at.Before(windowStart) {
				inWindow += a.events
			}
		}

		crashed.Store(false)
		r2 := start(h.consumer(cfg, ""))
		defer r2.stop(t)
		eventually(t, "every event delivered", func() bool { return h.om.Distinct() == total })
		eventually(t, "queue drained", func() bool { return h.queueLen() == 0 })

		dups := h.om.Duplicates() - dupsBefore
		bound := inWindow + concurrency*sinkBatchSize + largest
		t.Logf("first consumer: %d of %d events accepted (%d requests), crash left %d entries; "+
			"%d events accepted in the last %v (interval %v + margin %v, longest gap %v); duplicates %d (+%d before the crash), bound %d",
			delivered, total, len(acc), left, inWindow, interval+margin, interval, margin, longestGap, dups, dupsBefore, bound)
		if dups > bound {
			t.Fatalf("a crash redelivered %d events; the bound is %d: %d accepted in the last %v before the crash "+
				"+ %d sink batches of %d + largest entry %d (the first consumer delivered %d in all): "+
				"dequeues are not written once per DequeueInterval while busy, or more than SinkConcurrency batches are delivered past an unfinished one",
				dups, bound, inWindow, interval+margin, concurrency, sinkBatchSize, largest, delivered)
		}
		// Sanity: only what the first consumer delivered (plus its abandoned
		// requests) can come back twice.
		if dups > delivered+concurrency*sinkBatchSize {
			t.Fatalf("%d duplicates but the first consumer delivered only %d events", dups, delivered)
		}
	})
}
