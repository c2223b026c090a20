package otele2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/thanos-io/objstore"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/convert/otlpconv"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/otlp"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

const manifestPath = "ingest/manifest"

// conversion is the mapping under test: logs use the OpenMeter api-calls
// style config, metrics and traces the defaults.
var conversion = otlpconv.Config{Logs: otlpconv.Signal{Mapping: otlpconv.Mapping{
	Type:   `"api-calls"`,
	Source: `"otlp-log"`,
	Data:   map[string]string{"method": "attributes.method", "duration_ms": "attributes.duration", "via": "resource.via"},
}}}

func TestSDKExportersToOpenMeter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// Producer over a filesystem bucket and an in-memory manifest store,
	// OTLP receivers on loopback.
	st := startProducer(t, log)
	bkt, store, pm, prod := st.bkt, st.store, st.m, st.prod

	// Real SDK exporters, both transports for every signal.
	want := exportEverything(ctx, t, st.grpcAddr, st.httpAddr)
	if err := prod.Close(ctx); err != nil {
		t.Fatalf("producer close: %v", err)
	}
	for _, front := range []string{otlp.FrontGRPC, otlp.FrontHTTP} {
		if got := counter(t, pm.Events.WithLabelValues(front)); got == 0 {
			t.Errorf("ingest_events{%s} = 0", front)
		}
	}

	// Keep the committed manifest to replay it later.
	snapshot, _, err := store.Read(ctx, manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Decode(snapshot)
	if err != nil || len(m.Entries) == 0 {
		t.Fatalf("manifest: %d entries, %v", len(m.Entries), err)
	}
	kinds := map[format.SignalType]bool{}
	for _, e := range m.Entries {
		for _, md := range e.Metadata {
			h, _, err := format.ParseHeader(md.Payload)
			if err != nil {
				t.Fatal(err)
			}
			kinds[h.Signal] = true
			if h.Encoding != format.EncodingOTLPProtobuf {
				t.Errorf("entry %d: encoding %v", e.Sequence, h.Encoding)
			}
		}
	}
	if len(kinds) != 3 {
		t.Errorf("manifest holds signals %v, want logs, metrics and traces", kinds)
	}

	// Consumer with the OTLP converters, delivering to a fake OpenMeter.
	reg := convert.NewRegistry()
	if err := otlpconv.Register(reg, conversion); err != nil {
		t.Fatal(err)
	}
	om := openmetertest.New(openmetertest.Options{})
	defer om.Close()
	first := consume(ctx, t, bkt, store, reg, om, len(want), log)
	checkEvents(t, first, want)

	// Replay the same batches from the snapshot with a new consumer: every
	// event must come again with the same id, so OpenMeter dedups all.
	replayStore := memstore.New()
	replayStore.Put(manifestPath, snapshot)
	second := consume(ctx, t, bkt, replayStore, reg, om, 2*len(want), log)[len(first):]
	if len(second) != len(first) {
		t.Fatalf("replay delivered %d events, first run %d", len(second), len(first))
	}
	firstIDs, secondIDs := idsOf(first), idsOf(second)
	for i := range firstIDs {
		if firstIDs[i] != secondIDs[i] {
			t.Errorf("replayed id %d: %s, first run %s", i, secondIDs[i], firstIDs[i])
		}
	}
	if om.Distinct() != len(first) || om.Duplicates() != len(first) {
		t.Errorf("OpenMeter saw %d distinct and %d duplicates, want %d each", om.Distinct(), om.Duplicates(), len(first))
	}
}

// consume runs a consumer until the fake holds total events, then stops it
// and returns every event the fake accepted so far.
func consume(ctx context.Context, t *testing.T, bkt objstore.Bucket, store *memstore.Store, reg *convert.Registry, om *openmetertest.Server, total int, log *slog.Logger) []openmetertest.Event {
	t.Helper()
	snk, err := sink.FromURL(om.Endpoint, "", log)
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close()
	cm := consumer.NewMetrics(nil)
	c, err := consumer.New(bkt, manifest.NewQueue(store, manifestPath, manifest.Options{}), reg, snk,
		consumer.Config{PollInterval: 20 * time.Millisecond, DisableGC: true, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, cm, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	ok := om.WaitEvents(total, 30*time.Second)
	stop()
	if err := <-done; err != nil {
		t.Errorf("consumer run: %v", err)
	}
	if !ok {
		t.Fatalf("fake OpenMeter has %d events, want %d (dead-letter writes: %v)", len(om.Events()), total, deadLetters(t, cm))
	}
	return om.Events()
}

func deadLetters(t *testing.T, m *consumer.Metrics) float64 {
	return counter(t, m.DeadLetterWrites)
}

func idsOf(evs []openmetertest.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	sort.Strings(out)
	return out
}

// wantEvent is what one exported item must become.
type wantEvent struct {
	typ, source, subject string
	data                 map[string]any // fields that must be present with these values
}

func (w wantEvent) key() string { return w.typ + "|" + w.source + "|" + w.subject }

func exportEverything(ctx context.Context, t *testing.T, grpcAddr, httpAddr string) []wantEvent {
	var want []wantEvent
	for _, via := range []string{"grpc", "http"} {
		res := resource.NewSchemaless(attribute.String("service.name", "e2e-"+via), attribute.String("via", via))

		// Logs: two API calls per transport.
		var lexp sdklog.Exporter
		var err error
		if via == "grpc" {
			lexp, err = otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(grpcAddr), otlploggrpc.WithInsecure())
		} else {
			lexp, err = otlploghttp.New(ctx, otlploghttp.WithEndpoint(httpAddr), otlploghttp.WithInsecure(), otlploghttp.WithCompression(otlploghttp.GzipCompression))
		}
		if err != nil {
			t.Fatal(err)
		}
		lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(lexp)))
		logger := lp.Logger("e2e")
		for i := 0; i < 2; i++ {
			var r otellog.Record
			r.SetTimestamp(time.Now())
			r.SetBody(attribute.StringValue("api call"))
			subject := fmt.Sprintf("log-%s-%d", via, i)
			r.AddAttributes(attribute.String("subject", subject), attribute.String("method", "GET"), attribute.Int("duration", 10+i))
			logger.Emit(ctx, r)
			want = append(want, wantEvent{"api-calls", "otlp-log", subject, map[string]any{"method": "GET", "duration_ms": float64(10 + i), "via": via}})
		}
		if err := lp.Shutdown(ctx); err != nil {
			t.Fatalf("logs %s: %v", via, err)
		}

		// Metrics: a counter with two subjects and a histogram, exported
		// once by Shutdown.
		var mexp sdkmetric.Exporter
		if via == "grpc" {
			mexp, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(grpcAddr), otlpmetricgrpc.WithInsecure())
		} else {
			mexp, err = otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(httpAddr), otlpmetrichttp.WithInsecure(), otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
		}
		if err != nil {
			t.Fatal(err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(time.Hour))))
		meter := mp.Meter("e2e")
		tokens, _ := meter.Int64Counter("e2e.tokens")
		latency, _ := meter.Float64Histogram("e2e.latency", metric.WithExplicitBucketBoundaries(1, 10))
		for i, subject := range []string{"metric-" + via + "-a", "metric-" + via + "-b"} {
			tokens.Add(ctx, int64(100*(i+1)), metric.WithAttributes(attribute.String("subject", subject)))
			want = append(want, wantEvent{"e2e.tokens", "e2e-" + via, subject, map[string]any{"value": float64(100 * (i + 1)), "kind": "sum", "temporality": "cumulative"}})
		}
		latency.Record(ctx, 5, metric.WithAttributes(attribute.String("customer.id", "metric-"+via+"-h")))
		latency.Record(ctx, 50, metric.WithAttributes(attribute.String("customer.id", "metric-"+via+"-h")))
		want = append(want, wantEvent{"e2e.latency", "e2e-" + via, "metric-" + via + "-h", map[string]any{"count": 2.0, "sum": 55.0, "kind": "histogram"}})
		if err := mp.Shutdown(ctx); err != nil {
			t.Fatalf("metrics %s: %v", via, err)
		}

		// Traces: one span per transport.
		var texp sdktrace.SpanExporter
		if via == "grpc" {
			texp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure())
		} else {
			texp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(httpAddr), otlptracehttp.WithInsecure())
		}
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(texp))
		start := time.Now()
		_, span := tp.Tracer("e2e").Start(ctx, "GET /things", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("subject", "span-"+via)))
		span.End(trace.WithTimestamp(start.Add(1500 * time.Microsecond)))
		want = append(want, wantEvent{"otel.span", "e2e-" + via, "span-" + via, map[string]any{"duration_ms": 1.5, "kind": "server", "name": "GET /things"}})
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatalf("traces %s: %v", via, err)
		}
	}
	return want
}

func checkEvents(t *testing.T, got []openmetertest.Event, want []wantEvent) {
	t.Helper()
	byKey := map[string][]openmetertest.Event{}
	for _, e := range got {
		k := e.Type + "|" + e.Source + "|" + e.Subject
		byKey[k] = append(byKey[k], e)
	}
	for _, w := range want {
		evs := byKey[w.key()]
		if len(evs) != 1 {
			t.Errorf("%s: %d events, want 1", w.key(), len(evs))
			continue
		}
		var data map[string]any
		if err := json.Unmarshal(evs[0].Data, &data); err != nil {
			t.Errorf("%s: data %s: %v", w.key(), evs[0].Data, err)
			continue
		}
		for k, v := range w.data {
			if data[k] != v {
				t.Errorf("%s: data.%s = %v, want %v (data %s)", w.key(), k, data[k], v, evs[0].Data)
			}
		}
		if evs[0].Time == "" {
			t.Errorf("%s: no time", w.key())
		}
	}
	if len(got) != len(want) {
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Errorf("%d events, want %d: %s", len(got), len(want), strings.Join(keys, ", "))
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// testWriter sends slog output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
