package producer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketq/bucketq/internal/promx"
	"github.com/bucketq/bucketq/manifest"
)

// Metrics are the producer's Prometheus collectors. Create them with
// NewMetrics and pass them to New and NewQueue; the exported fields let a
// caller read them (tests, benchmarks).
type Metrics struct {
	BatchCreated       prometheus.Counter // batch_created: batches sealed for upload
	BatchSent          prometheus.Counter // batch_sent: batches uploaded and committed
	BatchBytes         prometheus.Histogram
	BatchRecords       prometheus.Histogram
	UploadFailures     prometheus.Counter
	CommitFailures     prometheus.Counter
	Reuploads          prometheus.Counter
	AppendDuration     prometheus.Histogram // append call until durable ack
	Backpressure       prometheus.Counter
	BufferedBytes      prometheus.Gauge
	CommitGroupEntries prometheus.Histogram
	// ManifestWrites and ManifestConflicts are buffer_manifest_writes and
	// buffer_manifest_conflicts with role="producer" (the consumer
	// registers the same metrics with role="consumer").
	ManifestWrites    prometheus.Counter
	ManifestConflicts prometheus.Counter
}

// NewMetrics creates the producer's collectors and registers them with reg
// (nil: not registered). Registering twice on one registry returns the same
// collectors, so NewQueue and New may both be given the same registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		return promx.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
	}
	h := func(name, help string, buckets []float64) prometheus.Histogram {
		return promx.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}))
	}
	return &Metrics{
		BatchCreated:       c("batch_created", "Batches sealed for upload by the producer."),
		BatchSent:          c("batch_sent", "Batches uploaded and committed to the manifest."),
		BatchBytes:         h("producer_batch_bytes", "Size of uploaded batch objects.", prometheus.ExponentialBuckets(1024, 4, 10)),
		BatchRecords:       h("producer_batch_records", "Records per uploaded batch.", prometheus.ExponentialBuckets(1, 4, 10)),
		UploadFailures:     c("producer_upload_failures", "Failed batch uploads (retried)."),
		CommitFailures:     c("producer_commit_failures", "Failed manifest commits (retried)."),
		Reuploads:          c("producer_reuploads", "Batches re-uploaded under a new name because their upload was older than half the GC grace period."),
		AppendDuration:     h("producer_append_duration_seconds", "Time from append until the batch is durable and committed.", promx.LatencyBuckets),
		Backpressure:       c("producer_backpressure", "Appends refused because the memory bound was reached."),
		BufferedBytes:      promx.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "producer_buffered_bytes", Help: "Bytes accepted but not yet committed."})),
		CommitGroupEntries: h("producer_commit_group_entries", "Batches committed per manifest write (group commit).", prometheus.ExponentialBuckets(1, 2, 8)),
		ManifestWrites:     promx.ManifestWrites(reg).WithLabelValues("producer"),
		ManifestConflicts:  promx.ManifestConflicts(reg).WithLabelValues("producer"),
	}
}

// QueueOptions returns manifest queue options whose hooks count the
// producer's manifest writes and conflicts (nil m: not counted). Pass them
// to manifest.NewQueue for the queue given to New.
func QueueOptions(m *Metrics) manifest.Options {
	if m == nil {
		return manifest.Options{}
	}
	return manifest.Options{OnWrite: m.ManifestWrites.Inc, OnConflict: m.ManifestConflicts.Inc}
}
