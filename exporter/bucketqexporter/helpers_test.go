package bucketqexporter

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/thanos-io/objstore"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"

	"github.com/bucketq/bucketq/exporter/bucketqexporter/internal/metadata"
)

// dirConfig is a valid config on a fresh directory bucket, with the queue
// as the factory makes it.
func dirConfig(t *testing.T) *Config {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.BucketDir = t.TempDir()
	return cfg
}

// noQueue disables the sending queue (the push runs in the caller).
func noQueue(cfg *Config) *Config {
	cfg.QueueConfig = configoptional.None[exporterQueueConfig]()
	return cfg
}

func settings() exporter.Settings { return exportertest.NewNopSettings(metadata.Type) }

// started is a started exporter of each signal on cfg, shut down at the
// end of the test.
type started struct {
	logs    exporter.Logs
	metrics exporter.Metrics
	traces  exporter.Traces
	stopped map[component.Component]bool
}

// shutdown shuts c down once (exporterhelper panics on a second Shutdown).
func (s *started) shutdown(c component.Component) error {
	if s.stopped[c] {
		return nil
	}
	s.stopped[c] = true
	return c.Shutdown(context.Background())
}

func startAll(t *testing.T, cfg *Config) *started {
	t.Helper()
	return startAllWith(t, cfg, settings())
}

// startAllWith is startAll with the settings set (its telemetry).
func startAllWith(t *testing.T, cfg *Config, set exporter.Settings) *started {
	t.Helper()
	ctx := context.Background()
	f := NewFactory()
	s := &started{stopped: map[component.Component]bool{}}
	var err error
	if s.logs, err = f.CreateLogs(ctx, set, cfg); err != nil {
		t.Fatal(err)
	}
	if s.metrics, err = f.CreateMetrics(ctx, set, cfg); err != nil {
		t.Fatal(err)
	}
	if s.traces, err = f.CreateTraces(ctx, set, cfg); err != nil {
		t.Fatal(err)
	}
	for _, c := range []component.Component{s.logs, s.metrics, s.traces} {
		if err := c.Start(ctx, componenttest.NewNopHost()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.shutdown(c); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
	return s
}

// stored is one record as the consumer reads it.
type stored struct {
	header format.Header
	rec    []byte
}

// readQueue returns every record of the queue at manifestPath, in
// manifest order, with its header.
func readQueue(t *testing.T, bkt objstore.Bucket, store cas.Store, manifestPath string) []stored {
	t.Helper()
	ctx := context.Background()
	m, err := manifest.NewQueue(store, manifestPath, manifest.Options{}).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for _, e := range m.Entries {
		rc, err := bkt.Get(ctx, e.Location)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		b, err := format.DecodeBatch(data)
		if err != nil {
			t.Fatalf("%s: %v", e.Location, err)
		}
		for i, md := range e.Metadata {
			h, _, err := format.ParseHeader(md.Payload)
			if err != nil {
				t.Fatal(err)
			}
			end := len(b.Records)
			if i+1 < len(e.Metadata) {
				end = int(e.Metadata[i+1].StartIndex)
			}
			for _, r := range b.Records[md.StartIndex:end] {
				out = append(out, stored{h, r})
			}
		}
	}
	return out
}

// Test telemetry: every item carries a `subject` attribute, so the
// consumer's default mapping turns each into an event.

func testLogs(n int, subject string) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "checkout")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("test")
	for i := range n {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(1700000000, int64(i))))
		lr.Body().SetStr("api call")
		lr.Attributes().PutStr("subject", subject)
		lr.Attributes().PutInt("tokens", int64(i))
	}
	return ld
}

func testMetrics(subject string) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "checkout")
	sm := rm.ScopeMetrics().AppendEmpty()
	g := sm.Metrics().AppendEmpty()
	g.SetName("cpu_seconds")
	sum := g.SetEmptySum()
	for i := range 2 {
		dp := sum.DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(1700000000, int64(i))))
		dp.SetDoubleValue(1.5 + float64(i))
		dp.Attributes().PutStr("subject", subject)
	}
	h := sm.Metrics().AppendEmpty()
	h.SetName("latency")
	hdp := h.SetEmptyHistogram().DataPoints().AppendEmpty()
	hdp.SetTimestamp(pcommon.NewTimestampFromTime(time.Unix(1700000001, 0)))
	hdp.SetCount(3)
	hdp.SetSum(0.6)
	hdp.ExplicitBounds().FromRaw([]float64{0.1, 1})
	hdp.BucketCounts().FromRaw([]uint64{1, 2, 0})
	hdp.Attributes().PutStr("subject", subject)
	return md
}

func testTraces(subject string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	ss := rs.ScopeSpans().AppendEmpty()
	for i := range 3 {
		sp := ss.Spans().AppendEmpty()
		sp.SetName("GET /v1/things")
		sp.SetTraceID(pcommon.TraceID{1, 2, 3, byte(i)})
		sp.SetSpanID(pcommon.SpanID{4, 5, byte(i)})
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(time.Unix(1700000000, 0)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(time.Unix(1700000000, int64(i+1)*1000)))
		sp.Attributes().PutStr("subject", subject)
	}
	return td
}

// s3BucketYAML is the objstore YAML of the S3 test server (the env vars
// scripts/services/s3.sh writes, as the root module's internal/storetest
// reads them) with a prefix unique to t; it skips t without a server, or
// fails it when CI=true.
func s3BucketYAML(t *testing.T) map[string]any {
	t.Helper()
	env := map[string]string{}
	for _, k := range []string{"BUCKETQ_TEST_S3_ENDPOINT", "BUCKETQ_TEST_S3_ACCESS_KEY", "BUCKETQ_TEST_S3_SECRET_KEY", "BUCKETQ_TEST_S3_BUCKET"} {
		if env[k] = os.Getenv(k); env[k] == "" {
			msg := "S3 test server not configured (" + k + " unset); run `make test`"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return map[string]any{
		"type": "S3",
		"config": map[string]any{
			"bucket":             env["BUCKETQ_TEST_S3_BUCKET"],
			"endpoint":           env["BUCKETQ_TEST_S3_ENDPOINT"],
			"access_key":         env["BUCKETQ_TEST_S3_ACCESS_KEY"],
			"secret_key":         env["BUCKETQ_TEST_S3_SECRET_KEY"],
			"insecure":           true,
			"region":             "us-east-1",
			"bucket_lookup_type": "path",
		},
		"prefix": "bucketq-test/exporter-" + time.Now().Format("150405.000000000"),
	}
}
