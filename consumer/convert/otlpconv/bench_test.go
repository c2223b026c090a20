package otlpconv

import (
	"fmt"
	"sort"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/benchpair"
)

// BenchmarkConvert measures the conversion of one 200-item OTLP record
// (Registry.Convert: protobuf decode, CEL mapping, JSON encoding) against a
// baseline measured in the same loop: a bare proto.Unmarshal of the same
// bytes into the same request type, which every converter must do anyway.
// Conversion and baseline alternate in each iteration (alternating which
// goes first) on one locked OS thread; the garbage collector runs between
// iterations, not inside them (the allocation is reported in B/op,
// allocs/op and allocs/event). Reported:
//
//	events/s          events converted per second of wall time
//	ns/op, MB/s       conversion of the record (MB/s: protobuf record bytes)
//	cpu-ns/op         conversion, CPU time of the locked thread
//	unmarshal-cpu-ns/op  the baseline, same clock
//	x-unmarshal       cpu-ns/op ÷ unmarshal-cpu-ns/op (the ratio to quote)
//
//	go test ./consumer/convert/otlpconv -run '^$' -bench Convert -benchmem
func BenchmarkConvert(b *testing.B) {
	inputs := benchInputs(b)
	names := make([]string, 0, len(inputs))
	for name := range inputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		in := inputs[name]
		b.Run(name, func(b *testing.B) {
			reg := registry(b, in.cfg)
			rec := record(in.sig, in.data)
			evs, err := reg.Convert(rec)
			if err != nil || len(evs) != in.events {
				b.Fatalf("%d events (want %d), %v", len(evs), in.events, err)
			}
			convert := func() {
				if _, err := reg.Convert(rec); err != nil {
					b.Fatal(err)
				}
			}
			unmarshal := func() {
				if err := proto.Unmarshal(in.data, in.msg()); err != nil {
					b.Fatal(err)
				}
			}
			pairBench(b, len(in.data), len(evs), convert, unmarshal)
		})
	}
}

// pairBench times conv and baseline alternately (internal/benchpair) and
// reports conv's figures, the baseline's CPU time and the ratio.
func pairBench(b *testing.B, recordBytes, events int, conv, baseline func()) {
	b.Helper()
	r := benchpair.Run(b, recordBytes, conv, baseline)
	n := float64(r.N)
	b.ReportMetric(float64(r.Wall.Nanoseconds())/n, "ns/op")
	b.ReportMetric(float64(recordBytes)*n/r.Wall.Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(events)*n/r.Wall.Seconds(), "events/s")
	b.ReportMetric(r.AllocBytes, "B/op")
	b.ReportMetric(r.Allocs, "allocs/op")
	b.ReportMetric(r.Allocs/float64(events), "allocs/event")
	b.ReportMetric(float64(r.CPU.Nanoseconds())/n, "cpu-ns/op")
	b.ReportMetric(float64(r.BaseCPU.Nanoseconds())/n, "unmarshal-cpu-ns/op")
	if x := r.Ratio(); x > 0 {
		b.ReportMetric(x, "x-unmarshal")
	}
}

type benchInput struct {
	sig    format.SignalType
	data   []byte
	msg    func() proto.Message
	cfg    Config
	events int
}

// benchInputs are 200-item requests of a realistic shape: logs and spans
// with a handful of attributes, a monotonic sum and a 10-bucket histogram.
func benchInputs(b *testing.B) map[string]benchInput {
	const n = 200
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "api-gateway"), kv("host.name", "ip-10-0-0-1")}}
	var lrs []*logspb.LogRecord
	var dps []*metricspb.NumberDataPoint
	var hps []*metricspb.HistogramDataPoint
	var spans []*tracepb.Span
	for i := 0; i < n; i++ {
		subject := fmt.Sprintf("customer-%d", i%17)
		t0 := uint64(1718000000000000000 + i*1000)
		lrs = append(lrs, &logspb.LogRecord{TimeUnixNano: t0, SeverityText: "INFO",
			Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "GET /api/v1/things 200"}},
			Attributes: []*commonpb.KeyValue{kv("subject", subject), kv("time", "2024-06-10T06:13:30.5Z"),
				kv("method", "GET"), kv("path", "/api/v1/things"), kv("region", "us-east-1"), kv("zone", "us-east-1a"), kv("duration", 87+i)}})
		dps = append(dps, &metricspb.NumberDataPoint{TimeUnixNano: t0, StartTimeUnixNano: 1718000000000000000,
			Value: &metricspb.NumberDataPoint_AsInt{AsInt: int64(i)}, Attributes: []*commonpb.KeyValue{kv("subject", subject), kv("model", "small")}})
		sum, lo, hi := float64(i)*12.5, 0.5, float64(i)+3
		hps = append(hps, &metricspb.HistogramDataPoint{TimeUnixNano: t0, StartTimeUnixNano: 1718000000000000000,
			Count: uint64(10 + i), Sum: &sum, Min: &lo, Max: &hi,
			BucketCounts:   []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, uint64(i)},
			ExplicitBounds: []float64{5, 10, 25, 50, 75, 100, 250, 500, 750, 1000},
			Attributes:     []*commonpb.KeyValue{kv("subject", subject), kv("http.route", "/api/v1/things")}})
		kind := tracepb.Span_SPAN_KIND_SERVER
		spans = append(spans, &tracepb.Span{TraceId: []byte("0123456789abcdef"), SpanId: []byte{1, 2, 3, 4, 5, 6, 7, byte(i)},
			ParentSpanId: []byte{8, 7, 6, 5, 4, 3, 2, 1}, Name: "GET /api/v1/things", Kind: kind,
			StartTimeUnixNano: t0, EndTimeUnixNano: t0 + 87_500_000,
			Attributes: []*commonpb.KeyValue{kv("subject", subject), kv("http.request.method", "GET"), kv("http.route", "/api/v1/things"),
				kv("http.response.status_code", 200), kv("server.address", "api.example.com")},
			Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}})
	}
	scope := &commonpb.InstrumentationScope{Name: "net/http", Version: "1.2.3"}
	marshal := func(m proto.Message) []byte {
		out, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		return out
	}
	logs := marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{Resource: res, ScopeLogs: []*logspb.ScopeLogs{{Scope: scope, LogRecords: lrs}}}}})
	sums := marshal(&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{Resource: res, ScopeMetrics: []*metricspb.ScopeMetrics{{Scope: scope, Metrics: []*metricspb.Metric{
		{Name: "tokens", Unit: "{token}", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{AggregationTemporality: 1, IsMonotonic: true, DataPoints: dps}}}}}}}}})
	hists := marshal(&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{Resource: res, ScopeMetrics: []*metricspb.ScopeMetrics{{Scope: scope, Metrics: []*metricspb.Metric{
		{Name: "http.server.request.duration", Unit: "ms", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{AggregationTemporality: 1, DataPoints: hps}}}}}}}}})
	traces := marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{Scope: scope, Spans: spans}}}}})
	newLogs := func() proto.Message { return &collogspb.ExportLogsServiceRequest{} }
	newMetrics := func() proto.Message { return &colmetricspb.ExportMetricsServiceRequest{} }
	newTraces := func() proto.Message { return &coltracepb.ExportTraceServiceRequest{} }
	return map[string]benchInput{
		"logs-default":      {format.SignalLogs, logs, newLogs, Config{}, n},
		"logs-openmeter":    {format.SignalLogs, logs, newLogs, loadConfig(b, "openmeter-api-calls.yaml"), n},
		"metrics-sum":       {format.SignalMetrics, sums, newMetrics, Config{}, n},
		"metrics-histogram": {format.SignalMetrics, hists, newMetrics, Config{}, n},
		"traces-default":    {format.SignalTraces, traces, newTraces, Config{}, n},
		"traces-api-calls":  {format.SignalTraces, traces, newTraces, loadConfig(b, "traces-api-calls.yaml"), n},
	}
}
