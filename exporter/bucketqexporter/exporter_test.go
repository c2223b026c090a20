package bucketqexporter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/otlprecord"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/producer"
)

type exporterQueueConfig = exporterhelper.QueueBatchConfig

// wantRecord is the record the OTLP receivers of `bucketq produce` store
// for the request whose pdata protobuf is wire.
func wantRecord(t *testing.T, sig format.SignalType, wire []byte) stored {
	t.Helper()
	rec, h, _, err := otlprecord.FromWire(sig, wire)
	if err != nil {
		t.Fatal(err)
	}
	return stored{h, rec}
}

// TestPushIsDurableOnReturn: for each signal, an export that returned nil
// is in the manifest at that moment (no flush, no shutdown), stored as
// otlprecord's record under the signal's header; with the default
// sending_queue (wait_for_result) as with the queue disabled.
func TestPushIsDurableOnReturn(t *testing.T) {
	for _, queue := range []string{"default queue", "no queue"} {
		t.Run(queue, func(t *testing.T) {
			cfg := dirConfig(t)
			if queue == "no queue" {
				noQueue(cfg)
			}
			cfg.FlushInterval = time.Hour // only group commit seals: no timer helps
			s := startAll(t, cfg)
			ctx := context.Background()
			bkt, store, err := bucket.OpenDir(cfg.BucketDir)
			if err != nil {
				t.Fatal(err)
			}

			ld, md, td := testLogs(5, "customer-1"), testMetrics("customer-2"), testTraces("customer-3")
			lw, _ := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
			mw, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
			tw, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
			var want []stored
			for _, step := range []struct {
				name string
				push func() error
				want stored
			}{
				{"logs", func() error { return s.logs.ConsumeLogs(ctx, ld) }, wantRecord(t, format.SignalLogs, lw)},
				{"metrics", func() error { return s.metrics.ConsumeMetrics(ctx, md) }, wantRecord(t, format.SignalMetrics, mw)},
				{"traces", func() error { return s.traces.ConsumeTraces(ctx, td) }, wantRecord(t, format.SignalTraces, tw)},
			} {
				if err := step.push(); err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
				want = append(want, step.want)
				got := readQueue(t, bkt, store, cfg.ManifestPath)
				if len(got) != len(want) {
					t.Fatalf("after %s returned: %d records in the manifest, want %d", step.name, len(got), len(want))
				}
				for i := range want {
					if got[i].header != want[i].header || string(got[i].rec) != string(want[i].rec) {
						t.Fatalf("record %d: header %v (%d bytes), want %v (%d bytes)", i, got[i].header, len(got[i].rec), want[i].header, len(want[i].rec))
					}
				}
			}
		})
	}
}

// TestEmptyRequestIsNotStored: as the receivers, an export with no item
// succeeds and writes nothing.
func TestEmptyRequestIsNotStored(t *testing.T) {
	cfg := dirConfig(t)
	s := startAll(t, cfg)
	ld := plog.NewLogs()
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	if err := s.logs.ConsumeLogs(context.Background(), ld); err != nil {
		t.Fatal(err)
	}
	bkt, store, _ := bucket.OpenDir(cfg.BucketDir)
	if got := readQueue(t, bkt, store, cfg.ManifestPath); len(got) != 0 {
		t.Fatalf("%d records stored", len(got))
	}
}

// TestSignalsShareOneProducer: the three exporters of one configuration
// share one producer (one writer of the manifest); shutting down one does
// not stop the others, and the last shutdown closes it.
func TestSignalsShareOneProducer(t *testing.T) {
	cfg := dirConfig(t)
	s := startAll(t, cfg)
	sharedMu.Lock()
	sp := shared[cfg]
	refs := 0
	if sp != nil {
		refs = sp.refs
	}
	sharedMu.Unlock()
	if refs != 3 {
		t.Fatalf("shared producer refs = %d, want 3", refs)
	}
	ctx := context.Background()
	if err := s.shutdown(s.logs); err != nil {
		t.Fatal(err)
	}
	if err := s.traces.ConsumeTraces(ctx, testTraces("c")); err != nil {
		t.Fatalf("traces after the logs exporter shut down: %v", err)
	}
	if err := s.shutdown(s.metrics); err != nil {
		t.Fatal(err)
	}
	if err := s.shutdown(s.traces); err != nil {
		t.Fatal(err)
	}
	sharedMu.Lock()
	_, left := shared[cfg]
	sharedMu.Unlock()
	if left {
		t.Fatal("producer still shared after the last shutdown")
	}
}

// TestShutdownFlushes: an export waiting on an open batch (flush interval
// and cost cap of an hour) is committed by Shutdown and returns nil.
func TestShutdownFlushes(t *testing.T) {
	cfg := noQueue(dirConfig(t))
	cfg.FlushInterval = time.Hour
	cfg.MinSealInterval = "1h"
	ctx := context.Background()
	exp, err := NewFactory().CreateLogs(ctx, settings(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	sharedMu.Lock()
	m := shared[cfg].m
	sharedMu.Unlock()
	done := make(chan error, 1)
	go func() { done <- exp.ConsumeLogs(ctx, testLogs(3, "c")) }()
	// Wait until the records are in the open batch.
	for testutil.ToFloat64(m.BufferedBytes) == 0 {
		select {
		case err := <-done:
			t.Fatalf("export returned before shutdown: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := exp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("export waiting at shutdown: %v", err)
	}
	bkt, store, _ := bucket.OpenDir(cfg.BucketDir)
	if got := readQueue(t, bkt, store, cfg.ManifestPath); len(got) != 1 {
		t.Fatalf("%d records after shutdown, want 1", len(got))
	}
}

// TestErrorsRetryableOrPermanent: what the collector retries and what it
// drops.
func TestErrorsRetryableOrPermanent(t *testing.T) {
	ctx := context.Background()
	t.Run("request larger than max_buffered_bytes is permanent", func(t *testing.T) {
		cfg := noQueue(dirConfig(t))
		cfg.RetryConfig.Enabled = false
		cfg.MaxBufferedBytes = 200
		s := startAll(t, cfg)
		err := s.logs.ConsumeLogs(ctx, testLogs(50, "c"))
		if err == nil || !consumererror.IsPermanent(err) || !strings.Contains(err.Error(), "max_buffered_bytes") {
			t.Fatalf("err = %v (permanent %v)", err, consumererror.IsPermanent(err))
		}
	})
	t.Run("damaged manifest is retryable and says so", func(t *testing.T) {
		cfg := noQueue(dirConfig(t))
		cfg.RetryConfig.Enabled = false
		if err := os.MkdirAll(filepath.Dir(filepath.Join(cfg.BucketDir, cfg.ManifestPath)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg.BucketDir, cfg.ManifestPath), []byte("not a manifest, not at all"), 0o644); err != nil {
			t.Fatal(err)
		}
		s := startAll(t, cfg)
		err := s.logs.ConsumeLogs(ctx, testLogs(1, "c"))
		var ce *manifest.CorruptError
		if err == nil || consumererror.IsPermanent(err) || !errors.As(err, &ce) || !strings.Contains(err.Error(), "bucketq repair manifest") {
			t.Fatalf("err = %v (permanent %v)", err, consumererror.IsPermanent(err))
		}
	})
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"backpressure", fmt.Errorf("%w (1 byte)", producer.ErrBackpressure)},
		{"closed", producer.ErrClosed},
		{"commit timeout", fmt.Errorf("producer: batch x not committed within 2m: %w", context.DeadlineExceeded)},
		{"store failure", errors.New("upload: 503 SlowDown")},
		{"corrupt", &manifest.CorruptError{Err: errors.New("bad footer"), Detail: "x"}},
	} {
		t.Run(tc.name+" is retryable", func(t *testing.T) {
			got := classify(tc.err)
			if got == nil || consumererror.IsPermanent(got) || !errors.Is(got, tc.err) {
				t.Fatalf("classify(%v) = %v", tc.err, got)
			}
		})
	}
	if classify(nil) != nil {
		t.Fatal("classify(nil) != nil")
	}
}

// TestStartErrors: a missing bucket directory fails the start naming the
// key, unless create_bucket_dir.
func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	cfg := dirConfig(t)
	cfg.BucketDir = filepath.Join(cfg.BucketDir, "typo")
	exp, err := NewFactory().CreateLogs(ctx, settings(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = exp.Start(ctx, componenttest.NewNopHost())
	if err == nil || !strings.Contains(err.Error(), "bucket_dir") || !strings.Contains(err.Error(), "create_bucket_dir") {
		t.Fatalf("start on a missing directory: %v", err)
	}
	_ = exp.Shutdown(ctx)

	cfg.CreateBucketDir = true
	s := startAll(t, cfg)
	if err := s.logs.ConsumeLogs(ctx, testLogs(1, "c")); err != nil {
		t.Fatal(err)
	}
}

// TestPushS3: the three signals on the real S3 test server (versitygw):
// durable in the manifest on return.
func TestPushS3(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.ObjectStore = s3BucketYAML(t)
	s := startAll(t, cfg)
	ctx := context.Background()
	if err := s.logs.ConsumeLogs(ctx, testLogs(10, "c")); err != nil {
		t.Fatal(err)
	}
	if err := s.metrics.ConsumeMetrics(ctx, testMetrics("c")); err != nil {
		t.Fatal(err)
	}
	if err := s.traces.ConsumeTraces(ctx, testTraces("c")); err != nil {
		t.Fatal(err)
	}
	y, _ := cfg.objectStoreYAML()
	bkt, store, err := bucket.Open(ctx, y, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	got := readQueue(t, bkt, store, cfg.ManifestPath)
	if len(got) != 3 {
		t.Fatalf("%d records on S3, want 3", len(got))
	}
	for i, sig := range []format.SignalType{format.SignalLogs, format.SignalMetrics, format.SignalTraces} {
		if got[i].header.Signal != sig {
			t.Errorf("record %d: %v, want %v", i, got[i].header, sig)
		}
	}
}

// TestUnreachableBucket: an S3 endpoint nobody listens on. The start
// either fails naming the bucket or succeeds; an export then returns a
// retryable error (never success, never a panic) once its attempt's
// timeout passes, and shutdown without a deadline still returns (bounded
// by timeout) with an error.
func TestUnreachableBucket(t *testing.T) {
	ctx := context.Background()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	cfg := noQueue(createDefaultConfig().(*Config))
	cfg.ObjectStore = map[string]any{"type": "S3", "config": map[string]any{
		"bucket": "usage", "endpoint": addr, "insecure": true, "access_key": "a", "secret_key": "b", "region": "us-east-1"}}
	cfg.RetryConfig.Enabled = false
	cfg.TimeoutConfig.Timeout = 2 * time.Second
	exp, err := NewFactory().CreateLogs(ctx, settings(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
		if !strings.Contains(err.Error(), "object_store") && !strings.Contains(err.Error(), addr) {
			t.Fatalf("start error does not name the bucket: %v", err)
		}
		_ = exp.Shutdown(ctx)
		return
	}
	err = exp.ConsumeLogs(ctx, testLogs(1, "c"))
	if err == nil || consumererror.IsPermanent(err) {
		t.Fatalf("export to an unreachable bucket: %v (permanent %v), want a retryable error", err, err != nil && consumererror.IsPermanent(err))
	}
	t.Logf("export error: %v", err)
	// The collector's shutdown context has no deadline: the exporter
	// bounds its wait by timeout and reports what it gave up on.
	if err := exp.Shutdown(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown with an unreachable bucket: %v, want the timeout's deadline error", err)
	}
}
