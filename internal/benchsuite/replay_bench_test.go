package benchsuite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/replay"
)

// replayEvents is the backlog each round delivers, then replays.
const replayEvents = 100_000

// BenchmarkReplay: replay's rate against the consumer's, side by side in
// one round (issue 12: replay reaches >= 80 % of the consumer's delivery
// rate). Each round preloads replayEvents (500-event batches) on the
// bucket, times a consumer with the journal on delivering them into the
// fake OpenMeter (internal/openmetertest) answering after the latency, then
// times `replay` of the whole sequence range into a second fake with the
// same latency. Both use sink_concurrency adaptive (the default) and
// 500-event requests. x-consume is replay's rate over the consumer's.
func BenchmarkReplay(b *testing.B) {
	for _, bc := range bucketCases {
		for _, lat := range []time.Duration{10 * time.Millisecond, 50 * time.Millisecond} {
			b.Run(fmt.Sprintf("bucket=%s/latency=%v", bc.name, lat), func(b *testing.B) {
				var cons, rep loadResult
				for it := range b.N {
					c, r := consumeThenReplay(b, bc, lat, it)
					cons.add(c)
					rep.add(r)
				}
				b.ReportMetric(rep.eventsPerSec(), "events/s")
				b.ReportMetric(cons.eventsPerSec(), "consume-events/s")
				b.ReportMetric(rep.eventsPerSec()/cons.eventsPerSec(), "x-consume")
			})
		}
	}
}

func consumeThenReplay(b *testing.B, bc bucketCase, lat time.Duration, it int) (cons, rep loadResult) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	bkt, store := bc.open(b)
	requests := replayEvents / eventsPerRequest
	batches := make([][][]byte, requests)
	for r := range batches {
		_, batches[r] = EventBatch(fmt.Sprintf("replay-%d-%d", it, r), eventsPerRequest, uint64(it*requests+r))
	}
	preload(b, bkt, store, batches)
	j, err := journal.New(bkt, journal.Config{Retention: 24 * time.Hour}, nil)
	if err != nil {
		b.Fatal(err)
	}

	cons = consumeJournaled(b, bkt, store, j, lat)
	// The first fake's events are garbage now (not a live heap that the
	// replay's garbage collections would have to mark).
	prep()

	om2 := openmetertest.New(openmetertest.Options{Latency: lat})
	defer om2.Close()
	hs2 := sink.NewHTTP(om2.Endpoint, "", sink.HTTPOptions{})
	defer hs2.Close()
	m := consumer.NewMetrics(nil)
	cfg := replay.Config{Bucket: bkt, JournalPrefix: journal.DefaultPrefix, Converter: convert.NewRegistry(), Sink: hs2,
		BatchSize: eventsPerRequest, Metrics: m}
	var planned time.Duration
	var t1 time.Time
	cfg.Progress = func(p replay.Progress) {
		if planned == 0 {
			planned = time.Since(t1)
		}
	}
	prep()
	b.StartTimer()
	t0 := time.Now()
	t1 = t0
	sum, err := replay.Run(context.Background(), cfg, replay.Selection{BySeq: true})
	el := time.Since(t0)
	b.StopTimer()
	if err != nil || !sum.OK() {
		b.Fatalf("replay: %v %+v", err, sum)
	}
	if sum.EventsSent != replayEvents || om2.Accepted() != replayEvents {
		b.Fatalf("replay sent %d, the sink accepted %d, want %d", sum.EventsSent, om2.Accepted(), replayEvents)
	}
	rep = loadResult{events: replayEvents, elapsed: el}
	b.Logf("%s latency %v: consume %.0f events/s, replay %.0f events/s (limit at the end %v, plan %v)",
		bc.name, lat, cons.eventsPerSec(), rep.eventsPerSec(), gaugeValue(m.SinkConcurrencyLimit), planned)
	return cons, rep
}

// consumeJournaled times a consumer with journal j delivering the preloaded
// backlog into a fake OpenMeter, and waits (untimed) until it is dequeued.
func consumeJournaled(b *testing.B, bkt objstore.Bucket, store cas.Store, j *journal.Journal, lat time.Duration) loadResult {
	om := openmetertest.New(openmetertest.Options{Latency: lat})
	defer om.Close()
	hs := sink.NewHTTP(om.Endpoint, "", sink.HTTPOptions{})
	defer hs.Close()
	q := manifest.NewQueue(store, manifestPath, manifest.Options{})
	c, err := consumer.New(bkt, q, convert.NewRegistry(), hs, consumer.Config{DisableGC: true, Journal: j}, consumer.NewMetrics(nil), quiet)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	prep()
	b.StartTimer()
	t0 := time.Now()
	go func() { done <- c.Run(ctx) }()
	ok := om.WaitEvents(replayEvents, 5*time.Minute)
	el := time.Since(t0)
	b.StopTimer()
	if !ok {
		cancel()
		b.Fatalf("consumer delivered %d of %d events within 5 minutes", om.Accepted(), replayEvents)
	}
	// Untimed: let the last dequeue (and its journal segment) land.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		m, err := q.Read(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if len(m.Entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("consumer left %d entries", len(m.Entries))
		}
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatalf("consumer: %v", err)
	}
	return loadResult{events: replayEvents, elapsed: el}
}
