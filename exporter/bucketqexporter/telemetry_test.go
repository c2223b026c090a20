package bucketqexporter

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/producer"

	"github.com/bucketq/bucketq/exporter/bucketqexporter/internal/metadata"
)

// telemetrySettings are exporter settings whose MeterProvider is tt's SDK.
func telemetrySettings(t *testing.T) (exporter.Settings, *componenttest.Telemetry) {
	t.Helper()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tt.Shutdown(context.Background()) })
	set := settings()
	set.TelemetrySettings = tt.NewTelemetrySettings()
	return set, tt
}

// sharedMetrics is the producer metrics of cfg's shared producer.
func sharedMetrics(t *testing.T, cfg *Config) *producer.Metrics {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	sp := shared[cfg]
	if sp == nil {
		t.Fatal("no shared producer")
	}
	return sp.m
}

// sumValue is the value of the bridged counter or gauge name with attrs
// (found false: no such metric or data point).
func sumValue(t *testing.T, tt *componenttest.Telemetry, name string, attrs ...attribute.KeyValue) (float64, bool) {
	t.Helper()
	m, err := tt.GetMetric(name)
	if err != nil {
		return 0, false
	}
	want := attribute.NewSet(attrs...)
	var dps []metricdata.DataPoint[float64]
	switch d := m.Data.(type) {
	case metricdata.Sum[float64]:
		if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
			t.Fatalf("%s: a counter must be a cumulative monotonic sum: %+v", name, d)
		}
		dps = d.DataPoints
	case metricdata.Gauge[float64]:
		dps = d.DataPoints
	default:
		t.Fatalf("%s: %T, want a float64 sum or gauge", name, m.Data)
	}
	for _, dp := range dps {
		if dp.Attributes.Equals(&want) {
			return dp.Value, true
		}
	}
	return 0, false
}

func mustSum(t *testing.T, tt *componenttest.Telemetry, name string, attrs ...attribute.KeyValue) float64 {
	t.Helper()
	v, ok := sumValue(t, tt, name, attrs...)
	if !ok {
		t.Fatalf("metric %s%v not reported to the collector's telemetry", name, attrs)
	}
	return v
}

// histogram is the one data point of the bridged histogram name.
func histogram(t *testing.T, tt *componenttest.Telemetry, name string) (metricdata.Metrics, metricdata.HistogramDataPoint[float64]) {
	t.Helper()
	m, err := tt.GetMetric(name)
	if err != nil {
		t.Fatalf("histogram %s not reported to the collector's telemetry: %v", name, err)
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok || len(h.DataPoints) != 1 {
		t.Fatalf("%s: %T %+v, want a float64 histogram with one data point", name, m.Data, m.Data)
	}
	return m, h.DataPoints[0]
}

// promHistogram is what the producer's Prometheus histogram h holds.
func promHistogram(t *testing.T, h prometheus.Histogram) *dto.Histogram {
	t.Helper()
	var pm dto.Metric
	if err := h.Write(&pm); err != nil {
		t.Fatal(err)
	}
	return pm.GetHistogram()
}

// sameDistribution fails t unless the OTel data point dp holds exactly
// the Prometheus histogram ph: count, sum, bounds and bucket counts.
func sameDistribution(t *testing.T, name string, dp metricdata.HistogramDataPoint[float64], ph *dto.Histogram) {
	t.Helper()
	if dp.Count != ph.GetSampleCount() || dp.Sum != ph.GetSampleSum() {
		t.Errorf("%s: count %d sum %v, the producer saw count %d sum %v", name, dp.Count, dp.Sum, ph.GetSampleCount(), ph.GetSampleSum())
	}
	var bounds []float64
	var cum uint64
	for i, b := range ph.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
		if i < len(dp.BucketCounts) {
			cum += dp.BucketCounts[i]
		}
		if cum != b.GetCumulativeCount() {
			t.Errorf("%s: %d observations up to %v, the producer saw %d", name, cum, b.GetUpperBound(), b.GetCumulativeCount())
		}
	}
	if !slices.Equal(dp.Bounds, bounds) {
		t.Errorf("%s: bounds %v, the producer's buckets are %v", name, dp.Bounds, bounds)
	}
}

// batchFiles are the batch objects under the data prefix of a directory
// bucket.
func batchFiles(t *testing.T, cfg *Config) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(cfg.BucketDir, filepath.FromSlash(cfg.DataPrefix), "*.batch"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestProducerMetricsInCollectorTelemetry: the producer's metrics reach
// the MeterProvider the collector gives the exporter, with the values the
// producer counted and the batches in the bucket, once (three exporters
// share the producer), and they stop being reported after the last
// shutdown.
func TestProducerMetricsInCollectorTelemetry(t *testing.T) {
	set, tt := telemetrySettings(t)
	cfg := dirConfig(t)
	s := startAllWith(t, cfg, set)
	ctx := context.Background()
	m := sharedMetrics(t, cfg)

	appends := 0
	for _, push := range []func() error{
		func() error { return s.logs.ConsumeLogs(ctx, testLogs(5, "customer-1")) },
		func() error { return s.metrics.ConsumeMetrics(ctx, testMetrics("customer-2")) },
		func() error { return s.traces.ConsumeTraces(ctx, testTraces("customer-3")) },
		func() error { return s.logs.ConsumeLogs(ctx, testLogs(2, "customer-4")) },
	} {
		if err := push(); err != nil {
			t.Fatal(err)
		}
		appends++
	}

	bkt, store, err := bucket.OpenDir(cfg.BucketDir)
	if err != nil {
		t.Fatal(err)
	}
	man, err := manifest.NewQueue(store, cfg.ManifestPath, manifest.Options{}).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(readQueue(t, bkt, store, cfg.ManifestPath)); got != appends {
		t.Fatalf("%d records in the queue, want %d", got, appends)
	}
	entries, files := len(man.Entries), len(batchFiles(t, cfg))
	if entries == 0 || files != entries {
		t.Fatalf("%d manifest entries, %d batch files", entries, files)
	}

	// Counters: what the bucket holds, and what the producer counted.
	if got := mustSum(t, tt, "otelcol_bucketq_batch_sent"); got != float64(entries) {
		t.Errorf("batch_sent = %v, want %d (the manifest's entries and the bucket's batch files)", got, entries)
	}
	if got := mustSum(t, tt, "otelcol_bucketq_batch_created"); got != float64(entries) {
		t.Errorf("batch_created = %v, want %d", got, entries)
	}
	role := attribute.String("role", "producer")
	writes := mustSum(t, tt, "otelcol_bucketq_buffer_manifest_writes", role)
	if writes < 1 || writes != testutil.ToFloat64(m.ManifestWrites) {
		t.Errorf("buffer_manifest_writes{role=producer} = %v, the producer counted %v", writes, testutil.ToFloat64(m.ManifestWrites))
	}
	if got := mustSum(t, tt, "otelcol_bucketq_buffer_manifest_conflicts", role); got != 0 {
		t.Errorf("buffer_manifest_conflicts = %v with one writer", got)
	}
	for _, name := range []string{"producer_upload_failures", "producer_commit_failures", "producer_reuploads", "producer_backpressure"} {
		if got := mustSum(t, tt, "otelcol_bucketq_"+name); got != 0 {
			t.Errorf("%s = %v on a healthy directory bucket", name, got)
		}
	}
	// The gauge: everything accepted is committed.
	if got := mustSum(t, tt, "otelcol_bucketq_producer_buffered_bytes"); got != 0 {
		t.Errorf("producer_buffered_bytes = %v after every export returned", got)
	}

	// Histograms: one append-duration observation per export, one
	// batch observation per batch sent, the producer's distribution.
	md, dp := histogram(t, tt, "otelcol_bucketq_producer_append_duration_seconds")
	if dp.Count != uint64(appends) || dp.Sum <= 0 {
		t.Errorf("append_duration: count %d sum %v, want %d appends", dp.Count, dp.Sum, appends)
	}
	if md.Unit != "s" || md.Description != "Time from append until the batch is durable and committed." {
		t.Errorf("append_duration: unit %q, description %q", md.Unit, md.Description)
	}
	sameDistribution(t, "append_duration", dp, promHistogram(t, m.AppendDuration))
	_, dp = histogram(t, tt, "otelcol_bucketq_producer_batch_records")
	if dp.Count != uint64(entries) || dp.Sum != float64(appends) {
		t.Errorf("batch_records: count %d sum %v, want %d batches of %d records in all", dp.Count, dp.Sum, entries, appends)
	}
	md, dp = histogram(t, tt, "otelcol_bucketq_producer_batch_bytes")
	var size int64
	for _, f := range batchFiles(t, cfg) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	if dp.Count != uint64(entries) || dp.Sum != float64(size) || md.Unit != "By" {
		t.Errorf("batch_bytes: count %d sum %v unit %q, want %d batches of %d bytes", dp.Count, dp.Sum, md.Unit, entries, size)
	}
	_, dp = histogram(t, tt, "otelcol_bucketq_producer_commit_group_entries")
	if dp.Sum != float64(entries) || dp.Count != uint64(writes) {
		t.Errorf("commit_group_entries: count %d sum %v, want %v writes committing %d batches", dp.Count, dp.Sum, writes, entries)
	}

	// After the last shutdown the callback is unregistered: the
	// observable instruments report nothing more.
	if err := s.shutdown(s.logs); err != nil {
		t.Fatal(err)
	}
	if err := s.shutdown(s.metrics); err != nil {
		t.Fatal(err)
	}
	if _, ok := sumValue(t, tt, "otelcol_bucketq_batch_sent"); !ok {
		t.Fatal("batch_sent no longer reported while the traces exporter still uses the producer")
	}
	if err := s.shutdown(s.traces); err != nil {
		t.Fatal(err)
	}
	if v, ok := sumValue(t, tt, "otelcol_bucketq_batch_sent"); ok {
		t.Errorf("batch_sent = %v still reported after the last shutdown", v)
	}
}

// TestUploadFailuresReported: failing uploads (the data prefix is a file,
// so no batch object can be written under it) move the bridged failures
// counter while the export waits; once the bucket is mended the export
// succeeds.
func TestUploadFailuresReported(t *testing.T) {
	set, tt := telemetrySettings(t)
	cfg := noQueue(dirConfig(t))
	blocker := filepath.Join(cfg.BucketDir, filepath.FromSlash(cfg.DataPrefix))
	if err := os.MkdirAll(filepath.Dir(blocker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startAllWith(t, cfg, set)
	t.Cleanup(func() { os.Remove(blocker) }) // before the shutdowns, should the test fail
	m := sharedMetrics(t, cfg)
	done := make(chan error, 1)
	go func() { done <- s.logs.ConsumeLogs(context.Background(), testLogs(1, "c")) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if v, ok := sumValue(t, tt, "otelcol_bucketq_producer_upload_failures"); ok && v > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("export returned while every upload fails: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload failures not reported (the producer counted %v)", testutil.ToFloat64(m.UploadFailures))
		}
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("export after the bucket was mended: %v", err)
	}
	if got, want := mustSum(t, tt, "otelcol_bucketq_producer_upload_failures"), testutil.ToFloat64(m.UploadFailures); got != want || got == 0 {
		t.Errorf("upload_failures = %v, the producer counted %v", got, want)
	}
	if got := mustSum(t, tt, "otelcol_bucketq_batch_sent"); got != 1 {
		t.Errorf("batch_sent = %v, want 1", got)
	}
}

// countingProvider counts the callbacks registered and unregistered on
// its meters of this component's scope (exporterhelper registers its own
// on its scope), and the attributes the exporter asked it to drop.
type countingProvider struct {
	metric.MeterProvider
	registered, unregistered *atomic.Int32
	dropped                  *[]string
}

func (p countingProvider) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	if name != metadata.ScopeName {
		return p.MeterProvider.Meter(name, opts...)
	}
	return countingMeter{p.MeterProvider.Meter(name, opts...), p}
}

func (p countingProvider) DropInjectedAttributes(attrs ...string) metric.MeterProvider {
	*p.dropped = append(*p.dropped, attrs...)
	return p
}

type countingMeter struct {
	metric.Meter
	p countingProvider
}

func (m countingMeter) RegisterCallback(f metric.Callback, insts ...metric.Observable) (metric.Registration, error) {
	r, err := m.Meter.RegisterCallback(f, insts...)
	if err != nil {
		return nil, err
	}
	m.p.registered.Add(1)
	return countingRegistration{r, m.p}, nil
}

type countingRegistration struct {
	metric.Registration
	p countingProvider
}

func (r countingRegistration) Unregister() error {
	r.p.unregistered.Add(1)
	return r.Registration.Unregister()
}

// TestTelemetryRegisteredOncePerSharedProducer: the three exporters of
// one configuration register one callback, on a meter without the signal
// of the exporter that happened to start first; it is unregistered by the
// last shutdown only, and a new producer of the configuration (a
// collector reload) registers anew.
func TestTelemetryRegisteredOncePerSharedProducer(t *testing.T) {
	set, _ := telemetrySettings(t)
	cp := countingProvider{set.MeterProvider, new(atomic.Int32), new(atomic.Int32), new([]string)}
	set.MeterProvider = cp
	cfg := dirConfig(t)
	s := startAllWith(t, cfg, set)
	if r, u := cp.registered.Load(), cp.unregistered.Load(); r != 1 || u != 0 {
		t.Fatalf("after three starts: %d callbacks registered, %d unregistered; want 1, 0", r, u)
	}
	if !slices.Equal(*cp.dropped, []string{signalKey}) {
		t.Errorf("attributes dropped from the producer's meter: %v, want [%s]", *cp.dropped, signalKey)
	}
	if err := s.shutdown(s.logs); err != nil {
		t.Fatal(err)
	}
	if err := s.shutdown(s.metrics); err != nil {
		t.Fatal(err)
	}
	if u := cp.unregistered.Load(); u != 0 {
		t.Fatalf("callback unregistered while the traces exporter still uses the producer")
	}
	if err := s.shutdown(s.traces); err != nil {
		t.Fatal(err)
	}
	if u := cp.unregistered.Load(); u != 1 {
		t.Fatalf("%d callbacks unregistered after the last shutdown, want 1", u)
	}
	startAllWith(t, cfg, set)
	if r := cp.registered.Load(); r != 2 {
		t.Fatalf("%d callbacks registered after a restart, want 2", r)
	}
}

// TestBridgeCoversEveryProducerMetric: every metric producer.NewMetrics
// registers is reported (a new producer metric of a type the bridge
// cannot carry fails here, not silently), named otelcol_bucketq_ + its
// Prometheus name, with its help as description and a unit.
func TestBridgeCoversEveryProducerMetric(t *testing.T) {
	set, tt := telemetrySettings(t)
	cfg := dirConfig(t)
	s := startAllWith(t, cfg, set)
	// One export observes every histogram (they are synchronous: reported
	// once recorded).
	if err := s.logs.ConsumeLogs(context.Background(), testLogs(1, "c")); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	producer.NewMetrics(reg)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) < 13 {
		t.Fatalf("%d producer metric families, expected at least 13", len(fams))
	}
	for _, f := range fams {
		name := telemetryPrefix + f.GetName()
		m, err := tt.GetMetric(name)
		if err != nil {
			t.Errorf("%s: %v", f.GetName(), err)
			continue
		}
		if m.Description != f.GetHelp() || m.Unit == "" {
			t.Errorf("%s: description %q, unit %q; help %q", name, m.Description, m.Unit, f.GetHelp())
		}
		want := map[dto.MetricType]string{
			dto.MetricType_COUNTER:   "metricdata.Sum[float64]",
			dto.MetricType_GAUGE:     "metricdata.Gauge[float64]",
			dto.MetricType_HISTOGRAM: "metricdata.Histogram[float64]",
		}[f.GetType()]
		if got := fmt.Sprintf("%T", m.Data); got != want {
			t.Errorf("%s: %s, want %s for a Prometheus %s", name, got, want, f.GetType())
		}
	}
}

// TestDocumentedMetricsAreReported: metadata.yaml's telemetry section and
// the README's metric table name exactly the metrics the exporter
// reports, with their type, description, unit, attributes and buckets.
func TestDocumentedMetricsAreReported(t *testing.T) {
	set, tt := telemetrySettings(t)
	s := startAllWith(t, dirConfig(t), set)
	if err := s.logs.ConsumeLogs(context.Background(), testLogs(1, "c")); err != nil {
		t.Fatal(err) // observes the histograms
	}
	var rm metricdata.ResourceMetrics
	if err := tt.Reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	reported := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name == metadata.ScopeName {
			for _, m := range sm.Metrics {
				reported[m.Name] = m
			}
		}
	}
	if len(reported) == 0 {
		t.Fatal("no metric reported under the exporter's scope")
	}

	var md struct {
		Telemetry struct {
			Metrics map[string]struct {
				Description string   `yaml:"description"`
				Unit        string   `yaml:"unit"`
				Attributes  []string `yaml:"attributes"`
				Sum         *struct {
					Monotonic bool `yaml:"monotonic"`
					Async     bool `yaml:"async"`
				} `yaml:"sum"`
				Gauge *struct {
					Async bool `yaml:"async"`
				} `yaml:"gauge"`
				Histogram *struct {
					Bounds []float64 `yaml:"bucket_boundaries"`
				} `yaml:"histogram"`
			} `yaml:"metrics"`
		} `yaml:"telemetry"`
	}
	b, err := os.ReadFile("metadata.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &md); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readmeType := map[string]string{} // README row: metric -> first word of its type
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) > 3 && strings.HasPrefix(strings.TrimSpace(cells[1]), "`"+telemetryPrefix) {
			readmeType[strings.Trim(strings.TrimSpace(cells[1]), "`")] = strings.Fields(cells[2])[0]
		}
	}

	for key, doc := range md.Telemetry.Metrics {
		name := "otelcol_" + key
		m, ok := reported[name]
		if !ok {
			t.Errorf("metadata.yaml: %s is not reported", name)
			continue
		}
		delete(reported, name)
		if m.Description != doc.Description || m.Unit != doc.Unit {
			t.Errorf("%s: reported %q (%s), metadata.yaml %q (%s)", name, m.Description, m.Unit, doc.Description, doc.Unit)
		}
		var kind string
		var attrs []attribute.Set
		switch d := m.Data.(type) {
		case metricdata.Sum[float64]:
			kind = "counter"
			if doc.Sum == nil || !doc.Sum.Monotonic || !doc.Sum.Async {
				t.Errorf("%s: metadata.yaml does not say sum, monotonic, async", name)
			}
			for _, dp := range d.DataPoints {
				attrs = append(attrs, dp.Attributes)
			}
		case metricdata.Gauge[float64]:
			kind = "gauge"
			if doc.Gauge == nil || !doc.Gauge.Async {
				t.Errorf("%s: metadata.yaml does not say gauge, async", name)
			}
			for _, dp := range d.DataPoints {
				attrs = append(attrs, dp.Attributes)
			}
		case metricdata.Histogram[float64]:
			kind = "histogram"
			if doc.Histogram == nil || len(d.DataPoints) == 0 {
				t.Errorf("%s: metadata.yaml does not say histogram", name)
				break
			}
			got := d.DataPoints[0].Bounds
			if len(got) != len(doc.Histogram.Bounds) {
				t.Errorf("%s: bounds %v, metadata.yaml %v", name, got, doc.Histogram.Bounds)
			}
			for i := range min(len(got), len(doc.Histogram.Bounds)) {
				if math.Abs(got[i]-doc.Histogram.Bounds[i]) > 1e-9*got[i] {
					t.Errorf("%s: bound %d is %v, metadata.yaml %v", name, i, got[i], doc.Histogram.Bounds[i])
				}
			}
			for _, dp := range d.DataPoints {
				attrs = append(attrs, dp.Attributes)
			}
		default:
			t.Errorf("%s: %T", name, m.Data)
		}
		for _, a := range attrs {
			var keys []string
			for _, kv := range a.ToSlice() {
				keys = append(keys, string(kv.Key))
			}
			if !slices.Equal(keys, doc.Attributes) {
				t.Errorf("%s: attributes %v, metadata.yaml %v", name, keys, doc.Attributes)
			}
		}
		if got, ok := readmeType[name]; !ok {
			t.Errorf("README: no row for %s", name)
		} else if strings.TrimSuffix(got, ",") != kind {
			t.Errorf("README: %s is a %s, the row says %q", name, kind, got)
		}
		delete(readmeType, name)
	}
	for name := range reported {
		t.Errorf("%s is reported but not in metadata.yaml's telemetry section", name)
	}
	for name := range readmeType {
		t.Errorf("README row %s names no reported metric", name)
	}
}
