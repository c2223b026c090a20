package bucketqexporter

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/thanos-io/objstore"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/convert/otlpconv"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/ingest/otlp"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/producer"
)

// TestSameRecordsAsBucketqProduce: the same OTLP requests, sent by a
// collector-style client (pdata's OTLP/gRPC client, as the collector's
// otlp exporter sends them) to the OTLP/gRPC receiver of `bucketq produce`
// (ingest/otlp on a producer), and pushed through this exporter, give
// byte-identical records under identical headers; `bucketq consume`'s
// consumer then delivers the same CloudEvents with the same ids from both
// buckets, so a bucket fed by both at once cannot tell them apart.
func TestSameRecordsAsBucketqProduce(t *testing.T) {
	ctx := context.Background()
	ld, md, td := testLogs(5, "customer-1"), testMetrics("customer-2"), testTraces("customer-3")

	// bucketq produce: a producer with its OTLP/gRPC receiver.
	prodDir := t.TempDir()
	pbkt, pstore, err := bucket.OpenDir(prodDir)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := producer.New(pbkt, manifest.NewQueue(pstore, producer.DefaultManifestPath, manifest.Options{}), producer.Config{}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close(ctx)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	otlp.RegisterGRPC(gs, prod, nil, slog.New(slog.DiscardHandler))
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := plogotlp.NewGRPCClient(conn).Export(ctx, plogotlp.NewExportRequestFromLogs(ld)); err != nil {
		t.Fatal(err)
	}
	if _, err := pmetricotlp.NewGRPCClient(conn).Export(ctx, pmetricotlp.NewExportRequestFromMetrics(md)); err != nil {
		t.Fatal(err)
	}
	if _, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td)); err != nil {
		t.Fatal(err)
	}

	// This exporter.
	cfg := dirConfig(t)
	s := startAll(t, cfg)
	if err := s.logs.ConsumeLogs(ctx, ld); err != nil {
		t.Fatal(err)
	}
	if err := s.metrics.ConsumeMetrics(ctx, md); err != nil {
		t.Fatal(err)
	}
	if err := s.traces.ConsumeTraces(ctx, td); err != nil {
		t.Fatal(err)
	}
	ebkt, estore, err := bucket.OpenDir(cfg.BucketDir)
	if err != nil {
		t.Fatal(err)
	}

	fromProduce := readQueue(t, pbkt, pstore, producer.DefaultManifestPath)
	fromExporter := readQueue(t, ebkt, estore, cfg.ManifestPath)
	if len(fromProduce) != 3 || len(fromExporter) != 3 {
		t.Fatalf("records: produce %d, exporter %d; want 3 each", len(fromProduce), len(fromExporter))
	}
	for i := range fromProduce {
		p, e := fromProduce[i], fromExporter[i]
		if p.header != e.header {
			t.Errorf("record %d: header %v from produce, %v from the exporter", i, p.header, e.header)
		}
		if string(p.rec) != string(e.rec) {
			t.Errorf("record %d (%v): %d bytes from produce, %d from the exporter, not identical", i, p.header, len(p.rec), len(e.rec))
		}
	}

	// bucketq consume on each bucket: the same events, the same ids.
	want := deliver(t, pbkt, pstore, producer.DefaultManifestPath, 11)
	got := deliver(t, ebkt, estore, cfg.ManifestPath, 11)
	if len(got) != len(want) {
		t.Fatalf("events: %d from the exporter's bucket, %d from produce's", len(got), len(want))
	}
	types := map[string]int{}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %+v from the exporter's bucket, %+v from produce's", i, got[i], want[i])
		}
		types[got[i].Type+"/"+got[i].Subject]++
	}
	wantTypes := map[string]int{"otel.log/customer-1": 5, "cpu_seconds/customer-2": 2, "latency/customer-2": 1, "otel.span/customer-3": 3}
	for k, n := range wantTypes {
		if types[k] != n {
			t.Errorf("%d events %s, want %d (all: %v)", types[k], k, n, types)
		}
	}
}

type event struct {
	ID, Source, Type, Subject string
}

// deliver runs the consumer (`bucketq consume`'s, default OTLP mapping) on
// the queue into an HTTP sink until n events arrived; it returns them
// sorted by id.
func deliver(t *testing.T, bkt objstore.Bucket, store cas.Store, manifestPath string, n int) []event {
	t.Helper()
	var (
		mu  sync.Mutex
		evs []event
		all = make(chan struct{})
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var batch []event
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		evs = append(evs, batch...)
		if len(evs) >= n {
			select {
			case <-all:
			default:
				close(all)
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	convs, err := otlpconv.Compile(otlpconv.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg := convert.NewRegistry()
	convs.Register(reg)
	c, err := consumer.New(bkt, manifest.NewQueue(store, manifestPath, manifest.Options{}), reg,
		sink.NewHTTP(srv.URL, "", sink.HTTPOptions{}), consumer.Config{PollInterval: 10 * time.Millisecond}, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-all:
	case err := <-done:
		t.Fatalf("consumer stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("only %d of %d events delivered in 30s", len(evs), n)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(evs, func(i, j int) bool { return evs[i].ID < evs[j].ID })
	return evs
}
