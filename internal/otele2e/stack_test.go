package otele2e

import (
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
	"google.golang.org/grpc"

	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/ingest/otlp"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
	"github.com/bucketq/bucketq/producer"
)

// producerStack is a real producer over a filesystem bucket and an
// in-memory manifest store, with both OTLP receivers on loopback; the
// servers stop when the test ends.
type producerStack struct {
	bkt                objstore.Bucket
	store              *memstore.Store
	m                  *ingestmetrics.Metrics
	prod               *producer.Producer
	grpcAddr, httpAddr string
}

func startProducer(t *testing.T, log *slog.Logger) *producerStack {
	t.Helper()
	bkt, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &producerStack{bkt: bkt, store: memstore.New(), m: ingestmetrics.New(nil)}
	s.prod, err = producer.New(bkt, manifest.NewQueue(s.store, manifestPath, manifest.Options{}),
		producer.Config{FlushInterval: 20 * time.Millisecond, Compression: "zstd"}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	otlp.RegisterGRPC(gs, s.prod, s.m, log)
	go func() { _ = gs.Serve(grpcLis) }()
	t.Cleanup(gs.Stop)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: otlp.NewHTTPHandler(s.prod, otlp.HTTPConfig{}, s.m, log)}
	go func() { _ = hs.Serve(httpLis) }()
	t.Cleanup(func() { _ = hs.Close() })
	s.grpcAddr, s.httpAddr = grpcLis.Addr().String(), httpLis.Addr().String()
	return s
}
