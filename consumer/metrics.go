package consumer

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketq/bucketq/internal/promx"
	"github.com/bucketq/bucketq/manifest"
)

// Metrics are the consumer's Prometheus collectors: delivery, GC, dead
// letters, conversion and the sink. Create them with NewMetrics and pass
// them to New and QueueOptions; the exported fields let a caller read them.
type Metrics struct {
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
	DeadLetterWrites    prometheus.Counter
	DeadLetterFailures  prometheus.Counter
	EventsConverted     *prometheus.CounterVec // label signal
	ConsumerEpoch       prometheus.Gauge
	ConsumerLastDequeue prometheus.Gauge
	// ManifestWrites and ManifestConflicts are buffer_manifest_writes and
	// buffer_manifest_conflicts with role="consumer".
	ManifestWrites    prometheus.Counter
	ManifestConflicts prometheus.Counter
	// PointsSkippedNoValue counts OTLP metric data points skipped by
	// design (no recorded value, NaN or infinite number): not dead letters,
	// so not in EntriesSkipped. Its value is read from the source set with
	// SetPointsSkippedNoValueSource (0 until then).
	PointsSkippedNoValue prometheus.CounterFunc
	pointsNoValue        atomic.Pointer[func() uint64]

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
}

// NewMetrics creates the consumer's collectors and registers them with reg
// (nil: not registered). A collector already registered under the same name
// (by an earlier call, or buffer_manifest_writes by a producer in the same
// process) is reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		return promx.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
	}
	g := func(name, help string) prometheus.Gauge {
		return promx.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
	}
	h := func(name, help string) prometheus.Histogram {
		return promx.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: promx.LatencyBuckets}))
	}
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return promx.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
	}
	m := &Metrics{
		BatchesCollected:    c("buffer_batches_collected", "Batches fetched from object store."),
		EntriesCollected:    c("buffer_entries_collected", "Entries (records) across collected batches."),
		BytesCollected:      c("buffer_bytes_collected", "Bytes read from object store."),
		Acks:                c("buffer_acks", "Batch acks (dequeues) processed."),
		ConsumerLagSeconds:  g("buffer_consumer_lag_seconds", "Wall clock minus the ingestion time of the oldest undelivered batch."),
		QueueLength:         g("buffer_queue_length", "Entries currently in the manifest queue."),
		FetchDuration:       h("buffer_fetch_duration_seconds", "Per-batch fetch latency from object store."),
		GCFilesDeleted:      c("buffer_gc_files_deleted", "Batch files cleaned by GC."),
		GCFilesFailed:       c("buffer_gc_files_failed", "Failed GC file deletions."),
		GCDuration:          h("buffer_gc_duration_seconds", "GC cycle wall time."),
		EntriesSkipped:      cv("buffer_entries_skipped", "Dead-lettered instead of delivered, by the dead letter's reason: poison_event (events), convert_error and unknown_signal (records), batch_missing and batch_corrupt (manifest entries).", "reason"),
		BatchesCorrupt:      cv("buffer_batches_unreadable", "Referenced batches that were missing or corrupt, by reason.", "reason"),
		DeadLetterWrites:    c("buffer_dead_letter_writes", "Dead-letter objects written."),
		DeadLetterFailures:  c("buffer_dead_letter_failures", "Failed dead-letter writes (retried)."),
		EventsConverted:     cv("buffer_events_converted", "CloudEvents produced by conversion or pass-through, by signal.", "signal"),
		ConsumerEpoch:       g("buffer_consumer_epoch", "Epoch held by this consumer."),
		ConsumerLastDequeue: g("buffer_consumer_last_dequeued_sequence", "Highest sequence dequeued by this consumer."),
		ManifestWrites:      promx.ManifestWrites(reg).WithLabelValues("consumer"),
		ManifestConflicts:   promx.ManifestConflicts(reg).WithLabelValues("consumer"),

		SinkEvents:           cv("sink_events", "Events handled by the sink, by result (sent, retried, dead_lettered).", "result"),
		SinkRequests:         cv("sink_requests", "Sink requests by HTTP status (or error).", "status"),
		SinkDuration:         h("sink_request_duration_seconds", "Sink request latency."),
		SinkBreakerOpen:      g("sink_breaker_open", "1 while the consumer holds an event because the sink refuses every event (the max_consecutive_poison breaker is open), else 0."),
		SinkConcurrencyLimit: g("sink_concurrency_limit", "Sink requests the consumer may have in flight: the adaptive limit, or sink_concurrency when fixed."),
		SinkRequestsInFlight: g("sink_requests_in_flight", "Sink requests (batches being delivered, retries and bisection included) in flight."),
		SinkRTTSeconds:       g("sink_rtt_seconds", "Mean round trip of the sink's answered requests over the adaptive limiter's last window (the last request's when fixed)."),
		SinkRTTMinSeconds:    g("sink_rtt_min_seconds", "Moving minimum of the sink's round trip that the adaptive limiter compares sink_rtt_seconds with."),
	}
	m.PointsSkippedNoValue = promx.Register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "buffer_points_skipped_no_value",
		Help: "OTLP metric data points skipped by design, giving no event: no recorded value (NoRecordedValue flag), or a NaN or infinite sum or gauge number. Not dead-lettered; counted again on redelivery.",
	}, func() float64 {
		if f := m.pointsNoValue.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	}))
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

// QueueOptions returns manifest queue options whose hooks count the
// consumer's manifest writes and conflicts (nil m: not counted).
func QueueOptions(m *Metrics) manifest.Options {
	if m == nil {
		return manifest.Options{}
	}
	return manifest.Options{OnWrite: m.ManifestWrites.Inc, OnConflict: m.ManifestConflicts.Inc}
}
