package bucketqexporter

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/thanos-io/objstore"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/otlp"
	"github.com/bucketq/bucketq/ingest/otlprecord"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/producer"
)

// recordOverhead is what the batch encoding adds to a record (its length),
// counted against max_buffered_bytes by the producer.
const recordOverhead = 4

// bqExporter is one signal's exporter. The logs, metrics and traces
// exporters of one configured `bucketq` exporter share one producer (one
// group commit, one writer of the manifest), opened by the first Start and
// flushed and closed by the last Shutdown.
type bqExporter struct {
	cfg *Config
	log *zap.Logger
	// meters is the collector's MeterProvider for this exporter; the
	// exporter that opens the shared producer bridges its metrics there.
	meters metric.MeterProvider

	mu   sync.Mutex
	prod *sharedProducer
}

func newExporter(cfg *Config, set exporter.Settings) *bqExporter {
	return &bqExporter{cfg: cfg, log: set.Logger, meters: set.MeterProvider}
}

// sharedProducer is the producer of one exporter configuration.
type sharedProducer struct {
	refs int
	bkt  objstore.Bucket
	prod *producer.Producer
	m    *producer.Metrics
	// telemetry is the callback registration reporting m to the
	// collector's telemetry, made once per shared producer and
	// unregistered by the last shutdown (nil: nothing bridged).
	telemetry metric.Registration
}

var (
	sharedMu sync.Mutex
	// shared is keyed by the configuration: the collector passes the same
	// *Config to the create function of every signal of one component,
	// as contrib's sharedcomponent keys its map.
	shared = map[*Config]*sharedProducer{}
)

func (e *bqExporter) start(ctx context.Context, _ component.Host) error {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sp := shared[e.cfg]; sp != nil {
		sp.refs++
		e.setProducer(sp)
		return nil
	}
	sp, err := openProducer(ctx, e.cfg, e.log, e.meters)
	if err != nil {
		return err
	}
	sp.refs = 1
	shared[e.cfg] = sp
	e.setProducer(sp)
	return nil
}

func (e *bqExporter) setProducer(sp *sharedProducer) {
	e.mu.Lock()
	e.prod = sp
	e.mu.Unlock()
}

func (e *bqExporter) producer() *producer.Producer {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.prod == nil {
		return nil
	}
	return e.prod.prod
}

// openProducer opens the bucket and the manifest store and starts a
// producer on them, its metrics bridged to meters (nil: not reported).
func openProducer(ctx context.Context, cfg *Config, log *zap.Logger, meters metric.MeterProvider) (_ *sharedProducer, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	slogger := newSlogLogger(log)
	var bkt objstore.Bucket
	dirKey, dir := "bucket_dir", cfg.BucketDir
	var osYAML []byte
	if cfg.ObjectStore != nil {
		if osYAML, err = cfg.objectStoreYAML(); err != nil {
			return nil, fmt.Errorf("object_store: %w", err)
		}
		dirKey, dir = "object_store", bucket.FilesystemDirectory(osYAML)
	}
	if dir != "" && !cfg.CreateBucketDir {
		if err := bucket.CheckDir(dir); err != nil {
			return nil, fmt.Errorf("%s: %w (create it, or set create_bucket_dir: true)", dirKey, err)
		}
	}
	var meter metric.Meter
	if meters != nil {
		meter = producerMeter(meters)
	}
	// The metrics are on a private registry the bridge reports; the queue
	// options count the manifest writes and conflicts into m, so they are
	// on it too (buffer_manifest_*{role="producer"}).
	m, tel, err := bridgeMetrics(meter)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && tel != nil {
			_ = tel.Unregister()
		}
	}()
	var q *manifest.Queue
	opts := producer.QueueOptions(m)
	opts.Version = uint16(cfg.FormatVersion)
	if osYAML != nil {
		b, s, err := bucket.Open(ctx, osYAML, slogger)
		if err != nil {
			return nil, fmt.Errorf("object_store: %w", err)
		}
		bkt, q = b, manifest.NewQueue(s, cfg.ManifestPath, opts)
	} else {
		b, s, err := bucket.OpenDir(cfg.BucketDir)
		if err != nil {
			return nil, fmt.Errorf("bucket_dir: %w", err)
		}
		bkt, q = b, manifest.NewQueue(s, cfg.ManifestPath, opts)
	}
	prod, err := producer.New(bkt, q, cfg.producerConfig(), m, slogger)
	if err != nil {
		bkt.Close()
		return nil, err
	}
	if qc := cfg.QueueConfig; qc.HasValue() {
		if c := qc.Get(); c.StorageID != nil || !c.WaitForResult {
			log.Warn("sending_queue.wait_for_result is false or a persistent queue (storage) is set: " +
				"the collector answers its clients when a request is queued, before its batch is durable in the bucket")
		}
	}
	log.Info("bucketq exporter started", zap.String("manifest_path", cfg.ManifestPath), zap.String("data_prefix", cfg.DataPrefix))
	return &sharedProducer{bkt: bkt, prod: prod, m: m, telemetry: tel}, nil
}

// shutdown releases the shared producer; the last user seals the open
// batch, waits (within ctx) for every upload and commit, and closes the
// bucket. exporterhelper calls it after draining its sending queue.
func (e *bqExporter) shutdown(ctx context.Context) error {
	e.mu.Lock()
	sp := e.prod
	e.prod = nil
	e.mu.Unlock()
	if sp == nil {
		return nil // never started
	}
	sharedMu.Lock()
	sp.refs--
	last := sp.refs == 0
	if last && shared[e.cfg] == sp {
		delete(shared, e.cfg)
	}
	sharedMu.Unlock()
	if !last {
		return nil
	}
	// The collector shuts components down without a deadline: bound the
	// wait for uploads and commits by one export attempt's timeout, so an
	// unreachable bucket cannot hang the collector's exit. What is still
	// uncommitted then was never acknowledged (wait_for_result), so the
	// clients retry it.
	if _, ok := ctx.Deadline(); !ok {
		d := e.cfg.TimeoutConfig.Timeout
		if d <= 0 {
			d = DefaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	sp.prod.Drain()
	err := sp.prod.Close(ctx)
	if cerr := sp.bkt.Close(); cerr != nil && err == nil {
		err = cerr
	}
	// Report the producer until it is closed, then stop: a later producer
	// of this configuration (a collector reload) registers its own.
	if sp.telemetry != nil {
		if uerr := sp.telemetry.Unregister(); uerr != nil && err == nil {
			err = uerr
		}
	}
	return err
}

func (e *bqExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	wire, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		return consumererror.NewPermanent(fmt.Errorf("bucketq: marshal logs: %w", err))
	}
	return e.push(ctx, format.SignalLogs, wire)
}

func (e *bqExporter) pushMetrics(ctx context.Context, md pmetric.Metrics) error {
	wire, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		return consumererror.NewPermanent(fmt.Errorf("bucketq: marshal metrics: %w", err))
	}
	return e.push(ctx, format.SignalMetrics, wire)
}

func (e *bqExporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	wire, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return consumererror.NewPermanent(fmt.Errorf("bucketq: marshal traces: %w", err))
	}
	return e.push(ctx, format.SignalTraces, wire)
}

// push stores one export request as one record, with the encoding the OTLP
// receivers of `bucketq produce` use (otlprecord), and returns once its
// batch is durable and committed to the manifest.
func (e *bqExporter) push(ctx context.Context, sig format.SignalType, wire []byte) error {
	prod := e.producer()
	if prod == nil {
		return errors.New("bucketq: exporter not started or already shut down")
	}
	rec, h, items, err := otlprecord.FromWire(sig, wire)
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	if items == 0 {
		return nil // nothing to store, as the receivers do
	}
	if size := int64(len(rec)) + recordOverhead; size > e.cfg.MaxBufferedBytes {
		return consumererror.NewPermanent(fmt.Errorf("bucketq: a %s request of %d bytes (%d items) can never fit max_buffered_bytes (%d)", sig, size, items, e.cfg.MaxBufferedBytes))
	}
	return classify(prod.Append(ctx, h, [][]byte{rec}))
}

// classify maps a producer error onto the collector's retry semantics.
//
// Everything the producer returns is retryable: the records are fine and
// the destination is (for now) not. A full memory bound (ErrBackpressure)
// clears with the next commit and is retried after otlp's backpressure
// delay; a shutdown (ErrClosed), an upload or commit that failed within the
// producer's own retries (network, 5xx, credentials), a timeout, and a
// damaged manifest (*manifest.CorruptError: the producer fails it at once,
// and `bucketq repair manifest` mends it) are retried with
// retry_on_failure's backoff until max_elapsed_time, so an operator's fix
// within that time loses nothing — `bucketq produce` answers all of these
// 503/429, which OTLP clients retry, for the same reason. Only what can
// never be stored (undecodable data, a request larger than
// max_buffered_bytes) is permanent, and push returns that itself.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, producer.ErrBackpressure):
		return exporterhelper.NewThrottleRetry(err, otlp.BackpressureRetryDelay)
	}
	var ce *manifest.CorruptError
	if errors.As(err, &ce) {
		return fmt.Errorf("bucketq: the manifest is damaged; run `bucketq repair manifest` (retrying): %w", err)
	}
	return err
}
