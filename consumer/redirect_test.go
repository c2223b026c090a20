package consumer

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
)

// TestRedirectHoldsTheQueue: a sink endpoint that answers a redirect (an
// http->https hop, a moved API) holds the queue like a 401: the request is
// retried every AuthRetryInterval with an error log naming the status and
// the Location, the redirect target is never requested (a followed
// 301/302/303 would be a GET without the events, and its 2xx would empty
// the queue), nothing is dequeued and nothing is dead-lettered.
func TestRedirectHoldsTheQueue(t *testing.T) {
	t.Parallel()
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				peer := openmetertest.NewRedirector(status)
				redirected, final := &peer.Redirected, &peer.Final

				h := newHarness(t, openmetertest.Options{})
				h.events(2, 3)
				var logs syncBuffer
				snk := sink.NewHTTP(openmetertest.InMemoryURL+"/api/v1/events", "secret", sink.HTTPOptions{Client: openmetertest.HandlerClient(peer)})
				c, err := New(h.bkt, h.q, convert.NewRegistry(), snk, h.config(nil), h.m, slog.New(slog.NewTextHandler(&logs, nil)))
				if err != nil {
					t.Fatal(err)
				}
				r := start(c)
				// Wait on the consumer's count, not the server's: the server sees
				// a request before the consumer has counted its answer.
				eventually(t, "three redirected requests counted (or a request to the target, or an empty queue)", func() bool {
					return value(h.m.SinkRequests.WithLabelValues(strconv.Itoa(status))) >= 3 || final.Load() > 0 || h.queueLen() == 0
				})
				if n := redirected.Load(); n < 3 {
					t.Fatalf("the sink saw %d redirected requests, want at least 3", n)
				}
				r.stop(t)

				if n := final.Load(); n != 0 {
					t.Fatalf("the redirect target was requested %d times", n)
				}
				if n := h.queueLen(); n != 2 {
					t.Fatalf("queue %d after redirects, want 2 (nothing dequeued)", n)
				}
				if dls := h.deadLetters(); len(dls) != 0 {
					t.Fatalf("dead letters %v", dls)
				}
				if v := value(h.m.SinkEvents.WithLabelValues("sent")); v != 0 {
					t.Fatalf("sink_events{sent} %v, want 0", v)
				}
				if v := value(h.m.SinkRequests.WithLabelValues(strconv.Itoa(status))); v < 3 {
					t.Fatalf("sink_requests{status=%d} %v, want at least 3", status, v)
				}
				out := logs.String()
				if !strings.Contains(out, "SINK REFUSES REQUESTS") || !strings.Contains(out, "status="+strconv.Itoa(status)) ||
					!strings.Contains(out, "redirect_location=/final/api/v1/events") {
					t.Fatalf("the error log does not name the status and Location:\n%s", out)
				}
			})
		})
	}
}
