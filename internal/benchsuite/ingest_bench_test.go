package benchsuite

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/httpevents"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/ingest/otlp"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/producer"
)

// Targets from the issue, reported beside the figures.
const (
	targetIngestEventsPerSec  = 300_000
	targetIngestPeakRSSMiB    = 300
	targetDeliverEventsPerSec = 200_000
)

// discardAppender acknowledges at once and keeps nothing: the baseline
// that leaves only the front door's own cost (HTTP, validation).
type discardAppender struct{}

func (discardAppender) Append(context.Context, format.Header, [][]byte) error { return nil }

// ingestSpec is one front door under load.
type ingestSpec struct {
	path, ctype    string
	bodies         [][]byte
	eventsPerBody  int // events (or log records) per request
	recordsPerBody int // producer records per request
	front          func(app producer.Appender, m *ingestmetrics.Metrics) http.Handler
}

type ingestCase struct {
	bucket  bucketCase
	comp    format.Compression
	clients int
}

// The clients=16 cases show the closed-loop bound: 16 x 500 events in
// flight, each waiting for a 250 ms flush, cannot exceed ~32k events/s
// whatever the producer's speed (Little's law). clients=256 keeps enough
// events in flight for 4 MiB batches to seal by size.
var ingestCases = []ingestCase{
	{bucketCases[0], format.CompressionZstd, 256},
	{bucketCases[0], format.CompressionNone, 256},
	{bucketCases[0], format.CompressionZstd, 16},
	{bucketCases[1], format.CompressionZstd, 256},
	{bucketCases[1], format.CompressionZstd, 16},
}

// requestsPerRound keeps every client busy for several requests.
func requestsPerRound(clients int) int { return max(160, 6*clients) }

// BenchmarkIngestHTTPEvents: 500-event OpenMeter batch requests of ~250-byte
// CloudEvents from concurrent clients into httpevents + producer with
// durable acks (204 only after upload and manifest commit). One op is one
// round of requestsPerRound requests against the durable server; each op
// also runs the same round against the same handler over an Appender that
// discards (not timed), alternating which goes first. x-discard is the
// durable events/s over the baseline's: the durability cost.
func BenchmarkIngestHTTPEvents(b *testing.B) {
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i], _ = EventBatch(fmt.Sprintf("ingest-%d", i), eventsPerRequest, uint64(i))
	}
	spec := ingestSpec{
		path: "/api/v1/events", ctype: "application/cloudevents-batch+json",
		bodies: bodies, eventsPerBody: eventsPerRequest, recordsPerBody: eventsPerRequest,
		front: func(app producer.Appender, m *ingestmetrics.Metrics) http.Handler {
			return httpevents.NewHandler(app, httpevents.Config{}, m, quiet)
		},
	}
	for _, c := range ingestCases {
		b.Run(fmt.Sprintf("bucket=%s/compression=%s/clients=%d", c.bucket.name, c.comp, c.clients), func(b *testing.B) {
			ingestBench(b, c, spec)
		})
	}
}

// BenchmarkIngestOTLPLogs: OTLP/HTTP protobuf logs requests of 500 log
// records into the OTLP receiver + producer (one record per request), with
// the same discard baseline.
func BenchmarkIngestOTLPLogs(b *testing.B) {
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = OTLPLogsRequest(eventsPerRequest, uint64(i))
	}
	spec := ingestSpec{
		path: "/v1/logs", ctype: otlp.ContentTypeProtobuf,
		bodies: bodies, eventsPerBody: eventsPerRequest, recordsPerBody: 1,
		front: func(app producer.Appender, m *ingestmetrics.Metrics) http.Handler {
			return otlp.NewHTTPHandler(app, otlp.HTTPConfig{}, m, quiet)
		},
	}
	for _, c := range []ingestCase{ingestCases[0], ingestCases[3]} {
		b.Run(fmt.Sprintf("bucket=%s/compression=%s/clients=%d", c.bucket.name, c.comp, c.clients), func(b *testing.B) {
			ingestBench(b, c, spec)
		})
	}
}

func ingestBench(b *testing.B, c ingestCase, spec ingestSpec) {
	rawBkt, rawStore := c.bucket.open(b)
	bkt := &CountingBucket{Bucket: rawBkt}
	store := &CountingStore{Store: rawStore}
	m := producer.NewMetrics(nil)
	q := manifest.NewQueue(store, manifestPath, producer.QueueOptions(m))
	p, err := producer.New(bkt, q, producer.Config{Compression: c.comp.String(), PipelineDepth: producer.AutoPipelineDepth(c.bucket.objectStore)}, m, quiet)
	if err != nil {
		b.Fatal(err)
	}
	durable := httptest.NewServer(mux(spec.path, spec.front(p, ingestmetrics.New(nil))))
	defer durable.Close()
	discard := httptest.NewServer(mux(spec.path, spec.front(discardAppender{}, ingestmetrics.New(nil))))
	defer discard.Close()
	client := newClient(c.clients)
	defer client.CloseIdleConnections()

	requests := requestsPerRound(c.clients)
	var roundBytes int64
	for i := range requests {
		roundBytes += int64(len(spec.bodies[i%len(spec.bodies)]))
	}
	b.SetBytes(roundBytes)

	var dur, base loadResult
	var durPeak, basePeak int64
	var lat []time.Duration
	b.ResetTimer()
	b.StopTimer()
	for i := range b.N {
		for phase := range 2 {
			if (phase+i)%2 == 0 {
				r := drive(b, true, client, durable.URL+spec.path, spec.ctype, spec.bodies, spec.eventsPerBody, c.clients, requests)
				dur.add(r)
				durPeak = max(durPeak, r.peakRSS)
				lat = append(lat, r.ackLatency...)
			} else {
				r := drive(b, false, client, discard.URL+spec.path, spec.ctype, spec.bodies, spec.eventsPerBody, c.clients, requests)
				base.add(r)
				basePeak = max(basePeak, r.peakRSS)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	// Every acknowledged record is in a committed batch.
	if got, want := histSum(b, m.BatchRecords), float64(dur.requests)*float64(spec.recordsPerBody); got != want {
		b.Fatalf("producer committed %v records, %v were acknowledged", got, want)
	}

	b.ReportMetric(dur.eventsPerSec(), "events/s")
	b.ReportMetric(base.eventsPerSec(), "discard-events/s")
	b.ReportMetric(dur.eventsPerSec()/base.eventsPerSec(), "x-discard")
	b.ReportMetric(dur.cpuPerEvent(), "cpu-µs/event")
	b.ReportMetric(base.cpuPerEvent(), "discard-cpu-µs/event")
	b.ReportMetric(dur.cpuPerEvent()/base.cpuPerEvent(), "cpu-x-discard")
	if durPeak > 0 {
		b.ReportMetric(float64(durPeak)/mib, "peak-RSS-MiB")
		b.ReportMetric(float64(basePeak)/mib, "discard-peak-RSS-MiB")
	}
	slices.Sort(lat)
	b.ReportMetric(Quantile(lat, 0.50).Seconds()*1000, "ack-p50-ms")
	b.ReportMetric(Quantile(lat, 0.99).Seconds()*1000, "ack-p99-ms")
	perM := 1e6 / float64(dur.events)
	b.ReportMetric(float64(bkt.Uploads.Load())*perM, "objects/1M-events")
	b.ReportMetric(float64(store.Writes.Load())*perM, "CAS-writes/1M-events")
	b.ReportMetric(targetIngestEventsPerSec, "target-events/s")
}

func (r *loadResult) add(o loadResult) {
	r.requests += o.requests
	r.events += o.events
	r.bytes += o.bytes
	r.elapsed += o.elapsed
	r.cpu += o.cpu
}

func mux(path string, h http.Handler) http.Handler {
	mx := http.NewServeMux()
	mx.Handle(path, h)
	return mx
}
