package benchsuite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/producer"
)

// deliverEvents is how many events one op delivers.
const deliverEvents = 200_000

// sinkServer is a local OpenMeter-compatible endpoint.
type sinkServer interface {
	endpoint() string
	received() int64
	wait(n int64, timeout time.Duration) bool
	close()
}

type omSink struct{ *openmetertest.Server }

func (s omSink) endpoint() string                         { return s.Endpoint }
func (s omSink) received() int64                          { return int64(s.Accepted()) }
func (s omSink) wait(n int64, timeout time.Duration) bool { return s.WaitEvents(int(n), timeout) }
func (s omSink) close()                                   { s.Close() }

type countSink struct{ *CountingSink }

func (s countSink) endpoint() string                         { return s.Endpoint }
func (s countSink) received() int64                          { return s.Events.Load() }
func (s countSink) wait(n int64, timeout time.Duration) bool { return s.WaitEvents(n, timeout) }
func (s countSink) close()                                   { s.Close() }

var sinkKinds = map[string]func() sinkServer{
	// The fake OpenMeter: OpenMeter's documented rules (content types,
	// required CloudEvents attributes, whole batch rejected on one bad
	// event, dedup by (id, source)), a full JSON syntax check, every event
	// kept. The delivery target is measured against this one.
	"openmeter": func() sinkServer { return omSink{openmetertest.New(openmetertest.Options{})} },
	// NOT OpenMeter-compatible: counts events with a brace scan and checks
	// nothing else. Only a floor for the sink's own cost ("sink overhead
	// floor"): what the consumer reaches when the sink costs almost nothing.
	"floor": func() sinkServer { return countSink{NewCountingSink()} },
}

// BenchmarkDeliver: one consumer (consumer.New, default config but GC off)
// delivering deliverEvents preloaded ~250-byte CloudEvents (500 per
// producer record batch, zstd batches as the CLI writes them) from the
// bucket into a local sink. One op = from Run until the sink holds every
// event. Baseline, same op, not timed: the same events posted straight to
// a fresh sink of the same kind with the same sink.HTTP client, 500 per
// request, one request at a time as the consumer sends them. x-direct is
// consumer events/s over direct events/s.
//
// sink=openmeter is the figure for the target (>= 200k events/s into a
// local OpenMeter-compatible sink); sink=floor, a brace-counting sink that
// validates nothing, is only the sink-overhead floor and reports no target.
func BenchmarkDeliver(b *testing.B) {
	for _, c := range []struct {
		bucket bucketCase
		sink   string
	}{
		{bucketCases[0], "openmeter"},
		{bucketCases[1], "openmeter"},
		{bucketCases[0], "floor"},
	} {
		b.Run(fmt.Sprintf("bucket=%s/sink=%s", c.bucket.name, c.sink), func(b *testing.B) {
			deliverBench(b, c.bucket, sinkKinds[c.sink], c.sink == "openmeter")
		})
	}
}

func deliverBench(b *testing.B, bc bucketCase, newSink func() sinkServer, target bool) {
	bkt, store := bc.open(b)
	requests := deliverEvents / eventsPerRequest
	var cons, direct loadResult
	b.ResetTimer()
	b.StopTimer()
	for it := range b.N {
		// Preload (not timed).
		batches := make([][][]byte, requests)
		var bytes int64
		for r := range batches {
			_, batches[r] = EventBatch(fmt.Sprintf("deliver-%d-%d", it, r), eventsPerRequest, uint64(it*requests+r))
			for _, ev := range batches[r] {
				bytes += int64(len(ev))
			}
		}
		if it == 0 {
			b.SetBytes(bytes)
		}
		preload(b, bkt, store, batches)

		// The consumer.
		snk := newSink()
		m := consumer.NewMetrics(nil)
		q := manifest.NewQueue(store, manifestPath, manifest.Options{})
		hs := sink.NewHTTP(snk.endpoint(), "", sink.HTTPOptions{})
		c, err := consumer.New(bkt, q, convert.NewRegistry(), hs, consumer.Config{DisableGC: true}, m, quiet)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		prep()
		b.StartTimer()
		cpu0, t0 := processCPU(), time.Now()
		go func() { done <- c.Run(ctx) }()
		ok := snk.wait(deliverEvents, 3*time.Minute)
		el, cpu := time.Since(t0), processCPU()-cpu0
		b.StopTimer()
		if !ok {
			cancel()
			<-done
			b.Fatalf("sink received %d of %d events within 3 minutes", snk.received(), deliverEvents)
		}
		// Stop only once everything delivered is dequeued (a stop while
		// the last response is in flight leaves it for redelivery).
		left := waitEmpty(q, 30*time.Second)
		cancel()
		if err := <-done; err != nil {
			b.Fatalf("consumer: %v", err)
		}
		if left != 0 {
			b.Fatalf("30s after delivery the manifest still holds %d entries, want 0", left)
		}
		if got := snk.received(); got != deliverEvents {
			b.Fatalf("sink received %d events, want exactly %d", got, deliverEvents)
		}
		snk.close()
		_ = hs.Close()
		cons.add(loadResult{events: deliverEvents, elapsed: el, cpu: cpu})

		// The baseline: the same events straight to the sink.
		snk = newSink()
		hs = sink.NewHTTP(snk.endpoint(), "", sink.HTTPOptions{})
		raws := make([][]json.RawMessage, len(batches))
		for r, evs := range batches {
			raws[r] = make([]json.RawMessage, len(evs))
			for i, ev := range evs {
				raws[r][i] = ev
			}
		}
		prep()
		cpu0, t0 = processCPU(), time.Now()
		for _, evs := range raws {
			if err := hs.Send(context.Background(), evs); err != nil {
				b.Fatalf("direct post: %v", err)
			}
		}
		el, cpu = time.Since(t0), processCPU()-cpu0
		if got := snk.received(); got != deliverEvents {
			b.Fatalf("direct: sink received %d events, want %d", got, deliverEvents)
		}
		snk.close()
		_ = hs.Close()
		direct.add(loadResult{events: deliverEvents, elapsed: el, cpu: cpu})
	}
	b.ReportMetric(cons.eventsPerSec(), "events/s")
	b.ReportMetric(direct.eventsPerSec(), "direct-events/s")
	b.ReportMetric(cons.eventsPerSec()/direct.eventsPerSec(), "x-direct")
	b.ReportMetric(cons.cpuPerEvent(), "cpu-µs/event")
	b.ReportMetric(direct.cpuPerEvent(), "direct-cpu-µs/event")
	b.ReportMetric(cons.cpuPerEvent()/direct.cpuPerEvent(), "cpu-x-direct")
	if target {
		b.ReportMetric(targetDeliverEventsPerSec, "target-events/s")
	}
}

// preload commits batches (one producer record batch of 500 events each)
// through a producer writing zstd batches, 32 appends at a time.
func preload(b *testing.B, bkt objstore.Bucket, store cas.Store, batches [][][]byte) {
	b.Helper()
	m := producer.NewMetrics(nil)
	q := manifest.NewQueue(store, manifestPath, producer.QueueOptions(m))
	p, err := producer.New(bkt, q, producer.Config{Compression: "zstd"}, m, quiet)
	if err != nil {
		b.Fatal(err)
	}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, recs := range batches {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := p.Append(context.Background(), format.EventsHeader, recs); err != nil {
				mu.Lock()
				firstErr = errors.Join(firstErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := errors.Join(firstErr, p.Close(ctx)); err != nil {
		b.Fatalf("preload: %v", err)
	}
}

// waitEmpty waits until the manifest has no entries or timeout passes, and
// returns how many entries it last saw (-1 if it could not be read).
func waitEmpty(q *manifest.Queue, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		n := -1
		if man, err := q.Read(context.Background()); err == nil {
			n = len(man.Entries)
		}
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}
