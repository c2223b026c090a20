package benchsuite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/ingest/httpevents"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/producer"
)

// End-to-end latency load: a moderate fixed rate, open loop.
const (
	latencyRate     = 20_000 // events/s
	latencyDuration = 5 * time.Second
	// The target: p99 within flush_interval (250ms) +
	// poll_interval (1s) + 250ms, with both at their defaults.
	latencyTargetP99 = producer.DefaultFlushInterval + time.Second + 250*time.Millisecond
)

// arrivals records when each request's events were accepted by the sink.
type arrivals struct {
	mu   sync.Mutex
	sent map[string]time.Time // request id prefix -> POST start
	lat  []time.Duration      // per event: sink acceptance - POST start
	bad  int                  // events whose request is unknown
}

func (a *arrivals) expect(prefix string, t time.Time) {
	a.mu.Lock()
	a.sent[prefix] = t
	a.mu.Unlock()
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.lat) + a.bad
}

// timedSink wraps the HTTP sink and records, for every event, the time its
// Send returned success, against its request's POST start.
type timedSink struct {
	sink.Sink
	a *arrivals
}

var idKey = []byte(`"id":"`)

func (s *timedSink) Send(ctx context.Context, evs []json.RawMessage) error {
	if err := s.Sink.Send(ctx, evs); err != nil {
		return err
	}
	now := time.Now()
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	for _, ev := range evs {
		prefix := ""
		if i := bytes.Index(ev, idKey); i >= 0 {
			id := ev[i+len(idKey):]
			if j := bytes.IndexByte(id, '"'); j >= 0 {
				id = id[:j]
				if k := bytes.LastIndexByte(id, '-'); k >= 0 {
					prefix = string(id[:k])
				}
			}
		}
		t, ok := s.a.sent[prefix]
		if !ok || t.IsZero() {
			s.a.bad++
			continue
		}
		s.a.lat = append(s.a.lat, now.Sub(t))
	}
	return nil
}

// BenchmarkEndToEndLatency: httpevents + producer (zstd, flush_interval
// 250ms) and a consumer (poll_interval 1s) in one process, with the fake
// OpenMeter as sink. Clients post 500-event requests open loop at
// latencyRate events/s for latencyDuration; latency is, per event, from
// its request's POST to the sink accepting it. One op = one such run
// until every event arrived. Baseline of the same run: the ack latency
// (POST to 204, i.e. durable in the bucket and the manifest).
func BenchmarkEndToEndLatency(b *testing.B) {
	for _, bc := range bucketCases {
		b.Run("bucket="+bc.name, func(b *testing.B) { latencyBench(b, bc) })
	}
}

func latencyBench(b *testing.B, bc bucketCase) {
	bkt, store := bc.open(b)
	m := producer.NewMetrics(nil)
	p, err := producer.New(bkt, manifest.NewQueue(store, manifestPath, producer.QueueOptions(m)),
		producer.Config{Compression: "zstd", PipelineDepth: producer.AutoPipelineDepth(bc.objectStore)}, m, quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = p.Close(context.Background()) }()
	front := httptest.NewServer(mux("/api/v1/events", httpevents.NewHandler(p, httpevents.Config{}, nil, quiet)))
	defer front.Close()

	om := openmetertest.New(openmetertest.Options{})
	defer om.Close()
	a := &arrivals{sent: map[string]time.Time{}}
	snk := &timedSink{Sink: sink.NewHTTP(om.Endpoint, "", sink.HTTPOptions{}), a: a}
	c, err := consumer.New(bkt, manifest.NewQueue(store, manifestPath, manifest.Options{}), convert.NewRegistry(), snk,
		consumer.Config{DisableGC: true}, nil, quiet)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("consumer: %v", err)
		}
	}()

	client := newClient(64)
	defer client.CloseIdleConnections()
	requests := int(latencyRate * latencyDuration.Seconds() / eventsPerRequest)
	interval := time.Duration(float64(time.Second) * eventsPerRequest / latencyRate)
	var acks []time.Duration
	var ackMu sync.Mutex
	b.ResetTimer()
	for it := range b.N {
		b.StopTimer()
		bodies := make([][]byte, requests)
		for r := range bodies {
			bodies[r], _ = EventBatch(fmt.Sprintf("lat-%d-%d", it, r), eventsPerRequest, uint64(r))
		}
		want := a.count() + requests*eventsPerRequest
		prep()
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, requests)
		for r, body := range bodies {
			if d := time.Until(start.Add(time.Duration(r) * interval)); d > 0 {
				time.Sleep(d)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				a.expect(fmt.Sprintf("lat-%d-%d", it, r), t0)
				if err := post(client, front.URL+"/api/v1/events", "application/cloudevents-batch+json", body); err != nil {
					errs <- err
					return
				}
				ackMu.Lock()
				acks = append(acks, time.Since(t0))
				ackMu.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatalf("POST: %v", err)
		}
		deadline := time.Now().Add(time.Minute)
		for a.count() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		b.StopTimer()
		if got := a.count(); got < want {
			b.Fatalf("the sink accepted %d of %d events within a minute of the last ack", got, want)
		}
	}
	a.mu.Lock()
	lat, bad := slices.Clone(a.lat), a.bad
	a.mu.Unlock()
	if bad > 0 {
		b.Fatalf("%d events arrived that no request of this run sent", bad)
	}
	slices.Sort(lat)
	slices.Sort(acks)
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 }
	b.ReportMetric(ms(Quantile(lat, 0.50)), "e2e-p50-ms")
	b.ReportMetric(ms(Quantile(lat, 0.99)), "e2e-p99-ms")
	b.ReportMetric(ms(Quantile(lat, 1)), "e2e-max-ms")
	b.ReportMetric(ms(Quantile(acks, 0.50)), "ack-p50-ms")
	b.ReportMetric(ms(Quantile(acks, 0.99)), "ack-p99-ms")
	b.ReportMetric(ms(latencyTargetP99), "target-p99-ms")
	b.ReportMetric(float64(Quantile(lat, 0.99))/float64(latencyTargetP99), "p99-x-target")
	b.ReportMetric(latencyRate, "rate-events/s")
}
