package otlprecord

import (
	"bytes"
	"strings"
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
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bucketq/bucketq/format"
)

func logsReq(n int) *collogspb.ExportLogsServiceRequest {
	sl := &logspb.ScopeLogs{}
	for i := range n {
		sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{
			TimeUnixNano: uint64(i),
			Body:         &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "hello"}},
			Attributes: []*commonpb.KeyValue{
				{Key: "b", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(i)}}},
				{Key: "a", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "x"}}},
			},
		})
	}
	return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{sl}}}}
}

func metricsReq() *colmetricspb.ExportMetricsServiceRequest {
	return &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
		{Name: "g", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{{}, {}}}}},
		{Name: "h", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{DataPoints: []*metricspb.HistogramDataPoint{{}}}}},
		{Name: "s", Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: []*metricspb.SummaryDataPoint{{}}}}},
		{Name: "e", Data: &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{DataPoints: []*metricspb.ExponentialHistogramDataPoint{{}}}}},
		{Name: "sum", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{DataPoints: []*metricspb.NumberDataPoint{{}}}}},
		{Name: "nodata"},
	}}}}}}
}

func tracesReq() *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: "a"}, {Name: "b"}, {Name: "c"}}}}}}}
}

func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    proto.Message
		header format.Header
		items  int
	}{
		{"logs", logsReq(3), LogsHeader, 3},
		{"metrics", metricsReq(), MetricsHeader, 6},
		{"traces", tracesReq(), TracesHeader, 3},
		{"empty logs", &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{}}}, LogsHeader, 0},
		{"empty metrics", &colmetricspb.ExportMetricsServiceRequest{}, MetricsHeader, 0},
		{"empty traces", &coltracepb.ExportTraceServiceRequest{}, TracesHeader, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, h, items, err := Encode(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if h != tc.header || items != tc.items {
				t.Fatalf("header %v items %d, want %v %d", h, items, tc.header, tc.items)
			}
			if h.Encoding != format.EncodingOTLPProtobuf || !h.Known() {
				t.Fatalf("header %v is not a known otlp-protobuf header", h)
			}
			if items == 0 {
				if rec != nil {
					t.Fatalf("empty request stored as %d bytes", len(rec))
				}
				return
			}
			want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(tc.req)
			if !bytes.Equal(rec, want) {
				t.Fatal("record is not the deterministic protobuf of the request")
			}
			// The wire path gives the same record, and re-encoding a
			// record is the identity (a record is its own wire form).
			rec2, h2, items2, err := FromWire(h.Signal, rec)
			if err != nil || !bytes.Equal(rec2, rec) || h2 != h || items2 != items {
				t.Fatalf("FromWire(record) = %d bytes %v %d %v; want the record back", len(rec2), h2, items2, err)
			}
		})
	}
}

func TestEncodeRefusesOtherMessages(t *testing.T) {
	if _, _, _, err := Encode(&logspb.LogRecord{}); err == nil || !strings.Contains(err.Error(), "not an OTLP export request") {
		t.Fatalf("err = %v", err)
	}
	if _, _, _, err := FromWire(format.SignalEvents, nil); err == nil || !strings.Contains(err.Error(), "events") {
		t.Fatalf("events signal: err = %v", err)
	}
}

func TestFromWireBadBody(t *testing.T) {
	_, _, _, err := FromWire(format.SignalTraces, []byte{0x0a, 0xff})
	if err == nil || !strings.Contains(err.Error(), "cannot decode OTLP traces request") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzFromWire: any body either fails with an error or encodes to a record
// that encodes to itself again (so a record re-read and re-written by any
// writer keeps its bytes and its event ids).
func FuzzFromWire(f *testing.F) {
	for _, m := range []proto.Message{logsReq(2), metricsReq(), tracesReq()} {
		b, _ := proto.Marshal(m)
		f.Add(uint8(0), b)
	}
	f.Add(uint8(1), []byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, s uint8, wire []byte) {
		sig := []format.SignalType{format.SignalLogs, format.SignalMetrics, format.SignalTraces}[int(s)%3]
		rec, h, items, err := FromWire(sig, wire)
		if err != nil || items == 0 {
			return
		}
		rec2, h2, items2, err := FromWire(sig, rec)
		if err != nil || !bytes.Equal(rec, rec2) || h != h2 || items != items2 {
			t.Fatalf("re-encoding changed the record: %v", err)
		}
	})
}

// TestEmptySubmessagesAreAbsent: a request whose scope, resource and log
// body are present but empty (as the collector's pdata writes the scope)
// is the same record as one that omits them; an empty array value (a
// oneof member: an empty array, not no value) is kept.
func TestEmptySubmessagesAreAbsent(t *testing.T) {
	req := func(empty bool) *collogspb.ExportLogsServiceRequest {
		lr := &logspb.LogRecord{TimeUnixNano: 1, Attributes: []*commonpb.KeyValue{
			{Key: "subject", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "c"}}},
			{Key: "list", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{}}}},
		}}
		sl := &logspb.ScopeLogs{LogRecords: []*logspb.LogRecord{lr}}
		rl := &logspb.ResourceLogs{ScopeLogs: []*logspb.ScopeLogs{sl}}
		if empty {
			sl.Scope = &commonpb.InstrumentationScope{}
			rl.Resource = &resourcepb.Resource{}
			lr.Body = &commonpb.AnyValue{}
		}
		return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{rl}}
	}
	a, _, _, err := Encode(req(false))
	if err != nil {
		t.Fatal(err)
	}
	b, _, _, err := Encode(req(true))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("empty submessages change the record:\n%x\n%x", a, b)
	}
	back := &collogspb.ExportLogsServiceRequest{}
	if err := proto.Unmarshal(b, back); err != nil {
		t.Fatal(err)
	}
	if av := back.ResourceLogs[0].ScopeLogs[0].LogRecords[0].Attributes[1].Value.GetArrayValue(); av == nil {
		t.Fatal("the empty array value (a oneof member) was dropped")
	}
}

// pruneBySize is pruneEmpty as it was first written, asking proto.Size of
// every subtree: the reference the one-walk version must agree with.
func pruneBySize(m protoreflect.Message) {
	var empty []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := range l.Len() {
				pruneBySize(l.Get(i).Message())
			}
			return true
		}
		sub := v.Message()
		pruneBySize(sub)
		if fd.ContainingOneof() == nil && proto.Size(sub.Interface()) == 0 {
			empty = append(empty, fd)
		}
		return true
	})
	for _, fd := range empty {
		m.Clear(fd)
	}
}

// FuzzPruneMatchesSize: for any request that decodes, pruneEmpty and prune
// (over the generated types) leave the same message as the proto.Size
// reference, and pruneEmpty reports empty exactly when the result encodes
// to nothing.
func FuzzPruneMatchesSize(f *testing.F) {
	for _, m := range []proto.Message{logsReq(2), metricsReq(), tracesReq()} {
		b, _ := proto.Marshal(m)
		f.Add(uint8(0), b)
	}
	// Empty resource, scope and body, nested: the shapes pruning is for.
	f.Add(uint8(0), []byte{0x0a, 0x06, 0x0a, 0x00, 0x12, 0x02, 0x0a, 0x00})
	// Every singular message field of the three requests set but empty,
	// also inside lists, key-value lists and oneof members.
	emptyVal := func() *commonpb.AnyValue { return &commonpb.AnyValue{} }
	kvs := func() []*commonpb.KeyValue {
		return []*commonpb.KeyValue{
			{Key: "e", Value: emptyVal()},
			{Key: "l", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{{Key: "in", Value: emptyVal()}}}}}},
			{Key: "a", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{emptyVal(), {Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{{Key: "x", Value: emptyVal()}}}}}}}}}},
		}
	}
	res := func() *resourcepb.Resource { return &resourcepb.Resource{Attributes: kvs()} }
	scope := func() *commonpb.InstrumentationScope {
		return &commonpb.InstrumentationScope{Attributes: []*commonpb.KeyValue{{Key: "e", Value: emptyVal()}}}
	}
	for _, m := range []proto.Message{
		&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{Resource: &resourcepb.Resource{}, ScopeLogs: []*logspb.ScopeLogs{
			{Scope: &commonpb.InstrumentationScope{}, LogRecords: []*logspb.LogRecord{{Body: emptyVal(), Attributes: kvs()}}},
			{Scope: scope(), LogRecords: []*logspb.LogRecord{{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: kvs()}}}}}},
		}}, {Resource: res()}}},
		&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{Resource: res(), ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{}, Spans: []*tracepb.Span{
			{Name: "s", Status: &tracepb.Status{}, Attributes: kvs(), Events: []*tracepb.Span_Event{{Attributes: kvs()}}, Links: []*tracepb.Span_Link{{Attributes: kvs()}}},
			{Status: &tracepb.Status{Message: "m"}},
		}}}}}},
		&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{Resource: &resourcepb.Resource{}, ScopeMetrics: []*metricspb.ScopeMetrics{{Scope: scope(), Metrics: []*metricspb.Metric{
			{Name: "g", Metadata: kvs(), Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{{Attributes: kvs(), Exemplars: []*metricspb.Exemplar{{FilteredAttributes: kvs()}}}}}}},
			{Name: "s", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{DataPoints: []*metricspb.NumberDataPoint{{Attributes: kvs()}}}}},
			{Name: "h", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{DataPoints: []*metricspb.HistogramDataPoint{{Attributes: kvs(), Exemplars: []*metricspb.Exemplar{{FilteredAttributes: kvs()}}}}}}},
			{Name: "e", Data: &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{DataPoints: []*metricspb.ExponentialHistogramDataPoint{
				{Attributes: kvs(), Positive: &metricspb.ExponentialHistogramDataPoint_Buckets{}, Negative: &metricspb.ExponentialHistogramDataPoint_Buckets{BucketCounts: []uint64{1}}, Exemplars: []*metricspb.Exemplar{{FilteredAttributes: kvs()}}},
			}}}},
			{Name: "q", Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: []*metricspb.SummaryDataPoint{{Attributes: kvs()}}}}},
			{Name: "empty gauge", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{}}},
		}}}}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		sig := map[string]uint8{"logs": 0, "metrics": 1, "traces": 2}
		var k uint8
		switch m.(type) {
		case *colmetricspb.ExportMetricsServiceRequest:
			k = sig["metrics"]
		case *coltracepb.ExportTraceServiceRequest:
			k = sig["traces"]
		}
		f.Add(k, b)
	}
	f.Add(uint8(1), []byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, s uint8, wire []byte) {
		sig := []format.SignalType{format.SignalLogs, format.SignalMetrics, format.SignalTraces}[int(s)%3]
		a, err := NewRequest(sig)
		if err != nil {
			t.Fatal(err)
		}
		if proto.Unmarshal(wire, a) != nil {
			return
		}
		ref, typed := proto.Clone(a), proto.Clone(a)
		pruneBySize(ref.ProtoReflect())
		gotEmpty := pruneEmpty(a.ProtoReflect())
		if !proto.Equal(a, ref) {
			t.Fatalf("pruneEmpty and the proto.Size reference disagree:\n%v\n%v", a, ref)
		}
		if gotEmpty != (proto.Size(a) == 0) {
			t.Fatalf("pruneEmpty says empty=%v, proto.Size is %d", gotEmpty, proto.Size(a))
		}
		prune(typed)
		if !proto.Equal(typed, ref) {
			t.Fatalf("prune (generated types) and the proto.Size reference disagree:\n%v\n%v", typed, ref)
		}
	})
}

func BenchmarkEncodeLogs(b *testing.B) {
	req := logsReq(100)
	wire, _ := proto.Marshal(req)
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		r := &collogspb.ExportLogsServiceRequest{}
		if err := proto.Unmarshal(wire, r); err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := Encode(r); err != nil {
			b.Fatal(err)
		}
	}
}
