package consumer

import (
	"net"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/openmetertest"
)

// TestLagGrowsWhileSinkFails: while the sink refuses or cannot be reached,
// the consumer retries forever and buffer_consumer_lag_seconds keeps
// growing with the (injected) clock instead of freezing at the value it
// had when delivery stalled; once the sink recovers the lag drops to 0.
func TestLagGrowsWhileSinkFails(t *testing.T) {
	cases := []struct {
		name string
		// setup makes the sink fail and returns the sink's endpoint and
		// token, and a func that makes it work again (nil: it stays down).
		setup func(t *testing.T, h *harness) (endpoint, token string, recover func())
	}{
		{"503", func(t *testing.T, h *harness) (string, string, func()) {
			h.om.FailNext(-1, 503, "")
			return h.om.Endpoint, "", h.om.ClearFaults
		}},
		{"connection refused", func(t *testing.T, h *harness) (string, string, func()) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			return "http://" + addr + "/api/v1/events", "", nil
		}},
		{"401", func(t *testing.T, h *harness) (string, string, func()) {
			return h.om.Endpoint, "wrong", nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := openmetertest.Options{}
			if tc.name == "401" {
				opts.Token = "right"
			}
			h := newHarness(t, opts)
			want := h.events(1, 2) // ingested a minute before now
			endpoint, token, recover := tc.setup(t, h)
			clock := &fakeClock{t: time.Now()}
			c := h.consumerWith(h.config(nil), newRecordingSink(endpoint, token, patience))
			c.now = clock.Now
			r := start(c)
			defer r.stop(t)

			retried := h.m.SinkEvents.WithLabelValues("retried")
			waitForValue(t, "a failed sink request", func() float64 { return value(retried) }, func(v float64) bool { return v >= 1 })
			lag := func() float64 { return value(h.m.ConsumerLagSeconds) }
			first := waitForValue(t, "a lag of a minute", lag, func(v float64) bool { return v >= 59 })
			for step := 1; step <= 3; step++ {
				clock.Add(5 * time.Second)
				prev := first
				first = waitForValue(t, "the lag to grow with the clock while the sink fails", lag, func(v float64) bool { return v >= prev+4.9 })
			}
			if len(h.om.Events()) != 0 || h.queueLen() != 1 {
				t.Fatalf("events %d queue %d while the sink fails", len(h.om.Events()), h.queueLen())
			}
			if recover == nil {
				return
			}
			recover()
			if !h.om.WaitEvents(len(want), patience) {
				t.Fatal("not delivered after the sink recovered")
			}
			waitForValue(t, "lag 0 after delivery", lag, func(v float64) bool { return v == 0 })
		})
	}
}
