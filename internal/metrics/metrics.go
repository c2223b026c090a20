// Package metrics defines every Prometheus metric bucketq exports, in one
// place, so names stay exactly those of the design docs and each process
// registers them once.
package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds all bucketq collectors. A nil *Metrics is not valid; use New
// (with prometheus.NewRegistry() in tests).
type Metrics struct {
	// Consumer side (names from the opendata buffer consumer).
	BatchesCollected    prometheus.Counter
	EntriesCollected    prometheus.Counter
	BytesCollected      prometheus.Counter
	Acks                prometheus.Counter
	ConsumerLagSeconds  prometheus.Gauge
	QueueLength         prometheus.Gauge
	FetchDuration       prometheus.Histogram
	GCFilesDeleted      prometheus.Counter
	GCFilesFailed       prometheus.Counter
	GCDuration          prometheus.Histogram
	EntriesSkipped      *prometheus.CounterVec // label reason
	BatchesCorrupt      *prometheus.CounterVec // label reason (missing, corrupt)
	ManifestWrites      *prometheus.CounterVec // label role (producer, consumer)
	ManifestConflicts   *prometheus.CounterVec // label role
	DeadLetterWrites    prometheus.Counter
	DeadLetterFailures  prometheus.Counter
	EventsConverted     *prometheus.CounterVec // label signal
	ConsumerEpoch       prometheus.Gauge
	ConsumerLastDequeue prometheus.Gauge
	// PointsSkippedNoValue counts OTLP metric data points skipped by
	// design (no recorded value, NaN or infinite number): not dead letters,
	// so not in EntriesSkipped. Its value is read from the source set with
	// SetPointsSkippedNoValueSource (0 until then).
	PointsSkippedNoValue prometheus.CounterFunc
	pointsNoValue        atomic.Pointer[func() uint64]

	// Producer side.
	BatchCreated       prometheus.Counter // batches sealed for upload
	BatchSent          prometheus.Counter // batches uploaded and committed
	BatchBytes         prometheus.Histogram
	BatchRecords       prometheus.Histogram
	UploadFailures     prometheus.Counter
	CommitFailures     prometheus.Counter
	Reuploads          prometheus.Counter
	AppendDuration     prometheus.Histogram // append call until durable ack
	Backpressure       prometheus.Counter
	BufferedBytes      prometheus.Gauge
	CommitGroupEntries prometheus.Histogram

	// Sink.
	SinkEvents   *prometheus.CounterVec // label result: sent, retried, dead_lettered, held
	SinkRequests *prometheus.CounterVec // label status: HTTP code, or "error"
	SinkDuration prometheus.Histogram
	// SinkBreakerOpen is 1 while the consumer holds an event because the
	// sink refuses every event (the max_consecutive_poison breaker), else 0.
	SinkBreakerOpen prometheus.Gauge
	// Sink request concurrency (sink_concurrency): the limit on requests
	// in flight (adaptive or fixed), the requests in flight, the mean
	// round trip of the last window and its moving minimum.
	SinkConcurrencyLimit prometheus.Gauge
	SinkRequestsInFlight prometheus.Gauge
	SinkRTTSeconds       prometheus.Gauge
	SinkRTTMinSeconds    prometheus.Gauge

	// Ingest front doors.
	IngestRequests *prometheus.CounterVec // labels front (http-events, otlp-http, otlp-grpc), code
	IngestEvents   *prometheus.CounterVec // label front
}

// New creates the collectors and registers them with reg.
func New(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	h := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	}
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	lat := prometheus.ExponentialBuckets(0.001, 2, 16) // 1ms .. ~33s
	m := &Metrics{
		BatchesCollected:    c("buffer_batches_collected", "Batches fetched from object store."),
		EntriesCollected:    c("buffer_entries_collected", "Entries (records) across collected batches."),
		BytesCollected:      c("buffer_bytes_collected", "Bytes read from object store."),
		Acks:                c("buffer_acks", "Batch acks (dequeues) processed."),
		ConsumerLagSeconds:  g("buffer_consumer_lag_seconds", "Wall clock minus the ingestion time of the oldest undelivered batch."),
		QueueLength:         g("buffer_queue_length", "Entries currently in the manifest queue."),
		FetchDuration:       h("buffer_fetch_duration_seconds", "Per-batch fetch latency from object store.", lat),
		GCFilesDeleted:      c("buffer_gc_files_deleted", "Batch files cleaned by GC."),
		GCFilesFailed:       c("buffer_gc_files_failed", "Failed GC file deletions."),
		GCDuration:          h("buffer_gc_duration_seconds", "GC cycle wall time.", lat),
		EntriesSkipped:      cv("buffer_entries_skipped", "Dead-lettered instead of delivered, by the dead letter's reason: poison_event (events), convert_error and unknown_signal (records), batch_missing and batch_corrupt (manifest entries).", "reason"),
		BatchesCorrupt:      cv("buffer_batches_unreadable", "Referenced batches that were missing or corrupt, by reason.", "reason"),
		ManifestWrites:      cv("buffer_manifest_writes", "Manifest write attempts.", "role"),
		ManifestConflicts:   cv("buffer_manifest_conflicts", "Manifest CAS conflicts.", "role"),
		DeadLetterWrites:    c("buffer_dead_letter_writes", "Dead-letter objects written."),
		DeadLetterFailures:  c("buffer_dead_letter_failures", "Failed dead-letter writes (retried)."),
		EventsConverted:     cv("buffer_events_converted", "CloudEvents produced by conversion or pass-through, by signal.", "signal"),
		ConsumerEpoch:       g("buffer_consumer_epoch", "Epoch held by this consumer."),
		ConsumerLastDequeue: g("buffer_consumer_last_dequeued_sequence", "Highest sequence dequeued by this consumer."),

		BatchCreated:       c("batch_created", "Batches sealed for upload by the producer."),
		BatchSent:          c("batch_sent", "Batches uploaded and committed to the manifest."),
		BatchBytes:         h("producer_batch_bytes", "Size of uploaded batch objects.", prometheus.ExponentialBuckets(1024, 4, 10)),
		BatchRecords:       h("producer_batch_records", "Records per uploaded batch.", prometheus.ExponentialBuckets(1, 4, 10)),
		UploadFailures:     c("producer_upload_failures", "Failed batch uploads (retried)."),
		CommitFailures:     c("producer_commit_failures", "Failed manifest commits (retried)."),
		Reuploads:          c("producer_reuploads", "Batches re-uploaded under a new name because their upload was older than half the GC grace period."),
		AppendDuration:     h("producer_append_duration_seconds", "Time from append until the batch is durable and committed.", lat),
		Backpressure:       c("producer_backpressure", "Appends refused because the memory bound was reached."),
		BufferedBytes:      g("producer_buffered_bytes", "Bytes accepted but not yet committed."),
		CommitGroupEntries: h("producer_commit_group_entries", "Batches committed per manifest write (group commit).", prometheus.ExponentialBuckets(1, 2, 8)),

		SinkEvents:           cv("sink_events", "Events handled by the sink, by result (sent, retried, dead_lettered).", "result"),
		SinkRequests:         cv("sink_requests", "Sink requests by HTTP status (or error).", "status"),
		SinkDuration:         h("sink_request_duration_seconds", "Sink request latency.", lat),
		SinkBreakerOpen:      g("sink_breaker_open", "1 while the consumer holds an event because the sink refuses every event (the max_consecutive_poison breaker is open), else 0."),
		SinkConcurrencyLimit: g("sink_concurrency_limit", "Sink requests the consumer may have in flight: the adaptive limit, or sink_concurrency when fixed."),
		SinkRequestsInFlight: g("sink_requests_in_flight", "Sink requests (batches being delivered, retries and bisection included) in flight."),
		SinkRTTSeconds:       g("sink_rtt_seconds", "Mean round trip of the sink's answered requests over the adaptive limiter's last window (the last request's when fixed)."),
		SinkRTTMinSeconds:    g("sink_rtt_min_seconds", "Moving minimum of the sink's round trip that the adaptive limiter compares sink_rtt_seconds with."),

		IngestRequests: cv("ingest_requests", "Ingest requests by front door and response code.", "front", "code"),
		IngestEvents:   cv("ingest_events", "Events or OTLP records accepted, by front door.", "front"),
	}
	m.PointsSkippedNoValue = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "buffer_points_skipped_no_value",
		Help: "OTLP metric data points skipped by design, giving no event: no recorded value (NoRecordedValue flag), or a NaN or infinite sum or gauge number. Not dead-lettered; counted again on redelivery.",
	}, func() float64 {
		if f := m.pointsNoValue.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	reg.MustRegister(
		m.BatchesCollected, m.EntriesCollected, m.BytesCollected, m.Acks, m.ConsumerLagSeconds,
		m.QueueLength, m.FetchDuration, m.GCFilesDeleted, m.GCFilesFailed, m.GCDuration,
		m.EntriesSkipped, m.BatchesCorrupt, m.ManifestWrites, m.ManifestConflicts,
		m.DeadLetterWrites, m.DeadLetterFailures, m.EventsConverted, m.ConsumerEpoch, m.ConsumerLastDequeue,
		m.BatchCreated, m.BatchSent, m.BatchBytes, m.BatchRecords, m.UploadFailures, m.CommitFailures,
		m.Reuploads, m.AppendDuration, m.Backpressure, m.BufferedBytes, m.CommitGroupEntries,
		m.SinkEvents, m.SinkRequests, m.SinkDuration, m.IngestRequests, m.IngestEvents,
		m.PointsSkippedNoValue, m.SinkBreakerOpen,
		m.SinkConcurrencyLimit, m.SinkRequestsInFlight, m.SinkRTTSeconds, m.SinkRTTMinSeconds,
	)
	return m
}

// SetPointsSkippedNoValueSource makes buffer_points_skipped_no_value report
// f(), a count that only grows, such as (*otlpconv.Converters).NoValuePoints.
// A nil f reports 0 again.
func (m *Metrics) SetPointsSkippedNoValueSource(f func() uint64) {
	if f == nil {
		m.pointsNoValue.Store(nil)
		return
	}
	m.pointsNoValue.Store(&f)
}

// NewUnregistered returns metrics registered with a throwaway registry, for
// tests and library users who do not export metrics.
func NewUnregistered() *Metrics { return New(prometheus.NewRegistry()) }
