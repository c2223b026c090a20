package benchsuite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/manifest"
)

// latencySink is a Go test server that answers every request after a fixed
// latency (a metering API across a network), counting events with a scan
// for "specversion" so that it is not the bottleneck.
type latencySink struct {
	*httptest.Server
	latency time.Duration
	events  atomic.Int64
}

func newLatencySink(latency time.Duration) *latencySink {
	s := &latencySink{latency: latency}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(s.latency)
		s.events.Add(int64(bytes.Count(body, []byte(`"specversion"`))))
		w.WriteHeader(http.StatusNoContent)
	}))
	return s
}

func (s *latencySink) wait(n int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for s.events.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// BenchmarkDeliverLatency: delivery events/s into a sink that answers
// after 1, 10, 50 and 200 ms, one sink request at a time (sink_concurrency
// 1, the consumer before issue 17) against the default (adaptive), in the
// same run: x-old is the ratio. Each mode delivers its own preloaded
// backlog (500-event batches on a directory bucket, 500-event requests),
// from Run until the sink holds every event; the one-at-a-time mode gets a
// smaller backlog at high latency, since its rate is fixed at 500/RTT.
//
// Targets (issue 17): >= 100k events/s at 50 ms and >= 50k at 200 ms with
// the default, and no slower than one at a time at 1 ms.
func BenchmarkDeliverLatency(b *testing.B) {
	for _, lat := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond} {
		b.Run(fmt.Sprintf("latency=%v", lat), func(b *testing.B) {
			oldEvents := deliverEvents
			if lat >= 10*time.Millisecond {
				oldEvents = 40 * eventsPerRequest // 40 round trips
			}
			var oldRes, newRes loadResult
			for it := range b.N {
				oldRes.add(deliverAtLatency(b, lat, 1, oldEvents, it))
				newRes.add(deliverAtLatency(b, lat, 0, deliverEvents, it))
			}
			b.ReportMetric(newRes.eventsPerSec(), "events/s")
			b.ReportMetric(oldRes.eventsPerSec(), "old-events/s")
			b.ReportMetric(newRes.eventsPerSec()/oldRes.eventsPerSec(), "x-old")
		})
	}
}

// deliverAtLatency preloads events (untimed) and times one consumer with
// the given sink_concurrency delivering them into a latencySink.
func deliverAtLatency(b *testing.B, lat time.Duration, concurrency, events, it int) loadResult {
	b.Helper()
	b.StopTimer()
	bkt, store := openFS(b)
	requests := events / eventsPerRequest
	batches := make([][][]byte, requests)
	for r := range batches {
		_, batches[r] = EventBatch(fmt.Sprintf("lat-%d-%d-%d", concurrency, it, r), eventsPerRequest, uint64(it*requests+r))
	}
	preload(b, bkt, store, batches)
	snk := newLatencySink(lat)
	defer snk.Close()
	q := manifest.NewQueue(store, manifestPath, manifest.Options{})
	hs := sink.NewHTTP(snk.URL, "", sink.HTTPOptions{})
	defer hs.Close()
	m := consumer.NewMetrics(nil)
	c, err := consumer.New(bkt, q, convert.NewRegistry(), hs, consumer.Config{DisableGC: true, SinkConcurrency: concurrency}, m, quiet)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	prep()
	b.StartTimer()
	t0 := time.Now()
	go func() { done <- c.Run(ctx) }()
	ok := snk.wait(int64(events), 5*time.Minute)
	el := time.Since(t0)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatalf("consumer: %v", err)
	}
	if !ok {
		b.Fatalf("sink received %d of %d events within 5 minutes", snk.events.Load(), events)
	}
	b.Logf("latency %v concurrency %d: %d events in %v (%.0f/s), limit at the end %v, rtt %.1f ms",
		lat, concurrency, events, el, float64(events)/el.Seconds(), gaugeValue(m.SinkConcurrencyLimit), 1000*gaugeValue(m.SinkRTTSeconds))
	b.StartTimer()
	return loadResult{events: int64(events), elapsed: el}
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return 0
	}
	return m.GetGauge().GetValue()
}
