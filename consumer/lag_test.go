package consumer

import (
	"net"
	"net/http"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
)

// TestLagGrowsWhileSinkFails: while the sink refuses or cannot be reached,
// the consumer retries forever and buffer_consumer_lag_seconds keeps
// growing with the (bubble's) clock instead of freezing at the value it
// had when delivery stalled; once the sink recovers the lag drops to 0.
func TestLagGrowsWhileSinkFails(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// setup makes the sink fail and returns it, and a func that
		// makes it work again (nil: it stays down).
		setup func(h *harness) (snk *sink.HTTP, recover func())
	}{
		{"503", func(h *harness) (*sink.HTTP, func()) {
			h.om.FailNext(-1, 503, "")
			return h.httpSink(""), h.om.ClearFaults
		}},
		{"connection refused", func(h *harness) (*sink.HTTP, func()) {
			refused := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
			})}
			return sink.NewHTTP(h.om.Endpoint, "", sink.HTTPOptions{Client: refused}), nil
		}},
		{"401", func(h *harness) (*sink.HTTP, func()) {
			return h.httpSink("wrong"), nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				opts := openmetertest.Options{}
				if tc.name == "401" {
					opts.Token = "right"
				}
				h := newHarness(t, opts)
				want := h.events(1, 2) // ingested a minute before now
				snk, recover := tc.setup(h)
				c := h.consumerWith(h.config(nil), newRecordingSink(snk))
				r := start(c)
				defer r.stop(t)

				retried := h.m.SinkEvents.WithLabelValues("retried")
				eventuallyValue(t, "a failed sink request", func() float64 { return value(retried) }, func(v float64) bool { return v >= 1 })
				lag := func() float64 { return value(h.m.ConsumerLagSeconds) }
				first := eventuallyValue(t, "a lag of a minute", lag, func(v float64) bool { return v >= 59 })
				for step := 1; step <= 3; step++ {
					time.Sleep(5 * time.Second)
					prev := first
					first = eventuallyValue(t, "the lag to grow with the clock while the sink fails", lag, func(v float64) bool { return v >= prev+4.9 })
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
				eventuallyValue(t, "lag 0 after delivery", lag, func(v float64) bool { return v == 0 })
			})
		})
	}
}
