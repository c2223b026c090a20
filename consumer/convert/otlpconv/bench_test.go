package otlpconv

import (
	"fmt"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/format"
)

// benchInputs are 200-item requests of a realistic shape.
func benchInputs(b *testing.B) map[string]struct {
	sig  format.SignalType
	data []byte
	msg  func() proto.Message
	cfg  Config
} {
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "api-gateway"), kv("host.name", "ip-10-0-0-1")}}
	var lrs []*logspb.LogRecord
	var dps []*metricspb.NumberDataPoint
	for i := 0; i < 200; i++ {
		lrs = append(lrs, &logspb.LogRecord{TimeUnixNano: uint64(1718000000000000000 + i), SeverityText: "INFO",
			Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "GET /api/v1/things 200"}},
			Attributes: []*commonpb.KeyValue{kv("subject", fmt.Sprintf("customer-%d", i%17)), kv("time", "2024-06-10T06:13:30.5Z"),
				kv("method", "GET"), kv("path", "/api/v1/things"), kv("region", "us-east-1"), kv("zone", "us-east-1a"), kv("duration", 87+i)}})
		dps = append(dps, &metricspb.NumberDataPoint{TimeUnixNano: uint64(1718000000000000000 + i), StartTimeUnixNano: 1718000000000000000,
			Value: &metricspb.NumberDataPoint_AsInt{AsInt: int64(i)}, Attributes: []*commonpb.KeyValue{kv("subject", fmt.Sprintf("customer-%d", i%17)), kv("model", "small")}})
	}
	logs, _ := proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{Resource: res, ScopeLogs: []*logspb.ScopeLogs{{LogRecords: lrs}}}}})
	mets, _ := proto.Marshal(&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{Resource: res, ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
		{Name: "tokens", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{AggregationTemporality: 1, IsMonotonic: true, DataPoints: dps}}}}}}}}})
	return map[string]struct {
		sig  format.SignalType
		data []byte
		msg  func() proto.Message
		cfg  Config
	}{
		"logs-default":   {format.SignalLogs, logs, func() proto.Message { return &collogspb.ExportLogsServiceRequest{} }, Config{}},
		"logs-openmeter": {format.SignalLogs, logs, func() proto.Message { return &collogspb.ExportLogsServiceRequest{} }, loadConfig(b, "openmeter-api-calls.yaml")},
		"metrics-sum":    {format.SignalMetrics, mets, func() proto.Message { return &colmetricspb.ExportMetricsServiceRequest{} }, Config{}},
	}
}

// BenchmarkConvert reports conversion throughput (events/s) and how many
// times slower it is than a bare proto.Unmarshal of the same record
// (x_unmarshal), measured over the same b.N.
func BenchmarkConvert(b *testing.B) {
	for name, in := range benchInputs(b) {
		b.Run(name, func(b *testing.B) {
			reg := registry(b, in.cfg)
			rec := record(in.sig, in.data)
			evs, err := reg.Convert(rec)
			if err != nil || len(evs) != 200 {
				b.Fatalf("%d events, %v", len(evs), err)
			}
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if _, err := reg.Convert(rec); err != nil {
					b.Fatal(err)
				}
			}
			conv := time.Since(start)
			b.StopTimer()
			start = time.Now()
			for i := 0; i < b.N; i++ {
				if err := proto.Unmarshal(in.data, in.msg()); err != nil {
					b.Fatal(err)
				}
			}
			unm := time.Since(start)
			b.ReportMetric(float64(len(evs))*float64(b.N)/conv.Seconds(), "events/s")
			b.ReportMetric(conv.Seconds()/unm.Seconds(), "x_unmarshal")
		})
	}
}
