package otele2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/convert/otlpconv"
	"github.com/bucketq/bucketq/ingest/otlp"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
)

// TestRetriedExportIsDeduplicated: a client that retries an export whose
// first attempt was in fact stored gets the request stored again, in
// another batch. The same request sent three times through the real
// receivers (OTLP/HTTP protobuf, OTLP/HTTP JSON, gRPC) and delivered by a
// real consumer gives every item the same id each time, so the metering
// API keeps one event per item and drops the copies; a different request
// (another time) is not merged with it.
func TestRetriedExportIsDeduplicated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	st := startProducer(t, log)
	bkt, store, prod := st.bkt, st.store, st.prod

	req := func(base uint64) *collogspb.ExportLogsServiceRequest {
		lr := func(ns uint64, subject string) *logspb.LogRecord {
			return &logspb.LogRecord{TimeUnixNano: ns, Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "api call"}},
				Attributes: []*commonpb.KeyValue{
					{Key: "subject", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: subject}}},
					{Key: "method", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "GET"}}},
					{Key: "duration", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 12}}},
				}}
		}
		return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
				{Key: "via", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "retry"}}}}},
			ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{lr(base, "acme"), lr(base+1, "acme")}}},
		}}}
	}
	first := req(1_700_000_000_000_000_000)
	// The first attempt and two retries of it, each answered only after
	// it is committed, so each lands in a batch of its own.
	postHTTP(ctx, t, st.httpAddr, otlp.ContentTypeProtobuf, first)
	postHTTP(ctx, t, st.httpAddr, otlp.ContentTypeJSON, first)
	conn, err := grpc.NewClient(st.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := collogspb.NewLogsServiceClient(conn).Export(ctx, first); err != nil {
		t.Fatalf("gRPC export: %v", err)
	}
	// Another export with the same items one millisecond later: other usage.
	postHTTP(ctx, t, st.httpAddr, otlp.ContentTypeProtobuf, req(1_700_000_000_001_000_000))
	if err := prod.Close(ctx); err != nil {
		t.Fatalf("producer close: %v", err)
	}
	mb, _, err := store.Read(ctx, manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Decode(mb)
	if err != nil {
		t.Fatal(err)
	}
	locations := map[string]bool{}
	for _, e := range m.Entries {
		locations[e.Location] = true
	}
	if len(locations) < 2 {
		t.Fatalf("the 4 exports landed in %d batch(es); the test needs the copies stored in different batches", len(locations))
	}

	reg := convert.NewRegistry()
	if err := otlpconv.Register(reg, conversion); err != nil {
		t.Fatal(err)
	}
	om := openmetertest.New(openmetertest.Options{})
	defer om.Close()
	evs := consume(ctx, t, bkt, store, reg, om, 8, log)
	if len(evs) != 8 {
		t.Fatalf("delivered %d events, want 8 (2 items x 4 exports)", len(evs))
	}
	// 2 items of the retried request + 2 of the other one; the two
	// retries' 4 events are duplicates.
	if om.Distinct() != 4 || om.Duplicates() != 4 {
		t.Errorf("OpenMeter saw %d distinct and %d duplicate events, want 4 and 4", om.Distinct(), om.Duplicates())
	}
	count := map[string]int{}
	for _, ev := range evs {
		count[ev.ID]++
	}
	three := 0
	for _, n := range count {
		if n == 3 {
			three++
		}
	}
	if len(count) != 4 || three != 2 {
		t.Errorf("copies by id %v, want 4 ids: each item of the retried request 3 times, each of the other once", count)
	}
}

func postHTTP(ctx context.Context, t *testing.T, addr, ct string, req proto.Message) {
	t.Helper()
	var body []byte
	var err error
	if ct == otlp.ContentTypeJSON {
		body, err = protojson.Marshal(req)
	} else {
		body, err = proto.Marshal(req)
	}
	if err != nil {
		t.Fatal(err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://%s/v1/logs", addr), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/logs (%s): %s", ct, resp.Status)
	}
}
