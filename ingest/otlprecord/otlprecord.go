// Package otlprecord is the one encoding of an OTLP export request as a
// bucketq record. Every writer of OTLP records calls it — the OTLP receivers
// of `bucketq produce` (ingest/otlp) and the OpenTelemetry Collector exporter
// (exporter/bucketqexporter) — so the same request is stored as the same
// bytes under the same metadata header, whichever way it came, and the
// consumer derives the same event ids from it (RFC 0006).
//
// A record is one Export{Logs,Metrics,Trace}ServiceRequest marshalled as
// binary OTLP protobuf with deterministic field order; its metadata header
// is signal 1 metrics / 2 logs / 3 traces, encoding 1 (otlp-protobuf), as
// the opendata OTLP exporter writes them (RFC 0003).
package otlprecord

import (
	"fmt"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bucketq/bucketq/format"
)

// Headers of the three OTLP signals' records.
var (
	LogsHeader    = format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf)
	MetricsHeader = format.NewHeader(format.SignalMetrics, format.EncodingOTLPProtobuf)
	TracesHeader  = format.NewHeader(format.SignalTraces, format.EncodingOTLPProtobuf)
)

// Encode returns the record that stores req (an *Export{Logs,Metrics,
// Trace}ServiceRequest), the metadata header it goes under, and the number
// of items (log records, data points, spans) it holds. A request with no
// item is not stored by its callers (the OTLP specification lets receivers
// ignore empty envelopes): Encode returns a nil record and 0 for it.
//
// The encoding is deterministic: a retried export must store the same
// bytes, since the ids of the events converted from it derive from them.
// It is also canonical about empty submessages: an empty singular message
// field outside a oneof (a `scope {}`, `resource {}`, `status {}`) is
// stored as absent, which protobuf and OTLP treat alike. The collector's
// pdata always writes `scope {}` where an SDK may omit the scope, so
// without this the same request would be two records with different ids
// depending on whether it passed through a collector. Encode clears such
// fields of req in place.
func Encode(req proto.Message) (rec []byte, h format.Header, items int, err error) {
	switch r := req.(type) {
	case *collogspb.ExportLogsServiceRequest:
		h, items = LogsHeader, CountLogRecords(r)
	case *colmetricspb.ExportMetricsServiceRequest:
		h, items = MetricsHeader, CountDataPoints(r)
	case *coltracepb.ExportTraceServiceRequest:
		h, items = TracesHeader, CountSpans(r)
	default:
		return nil, format.Header{}, 0, fmt.Errorf("otlprecord: %T is not an OTLP export request", req)
	}
	if items == 0 {
		return nil, h, 0, nil
	}
	prune(req)
	rec, err = proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, h, items, fmt.Errorf("otlprecord: marshal %s request: %w", h.Signal, err)
	}
	return rec, h, items, nil
}

// pruneEmpty clears, depth first, every set singular message field of m
// outside a oneof that encodes to nothing. Oneof members (an empty
// ArrayValue is an empty array, an empty Gauge a gauge) and list elements
// are kept. It reports whether m itself encodes to nothing afterwards: no
// populated field left and no unknown fields. That is what proto.Size(m) ==
// 0 says, decided bottom-up in one walk. Encode uses prune, the same walk
// over the generated types (1.7× faster encoding of a logs request,
// BenchmarkEncodeLogs); pruneEmpty, by reflection, is its fallback for any
// other message and, with the proto.Size version in the tests, what
// FuzzPruneMatchesSize checks prune against.
func pruneEmpty(m protoreflect.Message) bool {
	var empty []protoreflect.FieldDescriptor // cleared after Range, not during it
	kept := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
			kept = true
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				pruneEmpty(l.Get(i).Message())
			}
			kept = true
		case pruneEmpty(v.Message()) && fd.ContainingOneof() == nil:
			empty = append(empty, fd)
		default:
			kept = true
		}
		return true
	})
	for _, fd := range empty {
		m.Clear(fd)
	}
	return !kept && len(m.GetUnknown()) == 0
}

// NewRequest returns an empty export request of signal s (metrics, logs or
// traces), to unmarshal into.
func NewRequest(s format.SignalType) (proto.Message, error) {
	switch s {
	case format.SignalLogs:
		return &collogspb.ExportLogsServiceRequest{}, nil
	case format.SignalMetrics:
		return &colmetricspb.ExportMetricsServiceRequest{}, nil
	case format.SignalTraces:
		return &coltracepb.ExportTraceServiceRequest{}, nil
	}
	return nil, fmt.Errorf("otlprecord: signal %s is not an OTLP signal", s)
}

// FromWire decodes the binary protobuf of an export request of signal s —
// as a client sends it, or as the collector's pdata marshals it — and
// Encodes it. A body that does not decode is an error that names the signal.
func FromWire(s format.SignalType, wire []byte) (rec []byte, h format.Header, items int, err error) {
	req, err := NewRequest(s)
	if err != nil {
		return nil, format.Header{}, 0, err
	}
	if err := proto.Unmarshal(wire, req); err != nil {
		return nil, format.Header{}, 0, fmt.Errorf("otlprecord: cannot decode OTLP %s request: %w", s, err)
	}
	return Encode(req)
}

// CountLogRecords returns the number of log records in a request.
func CountLogRecords(req *collogspb.ExportLogsServiceRequest) int {
	n := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			n += len(sl.GetLogRecords())
		}
	}
	return n
}

// CountSpans returns the number of spans in a request.
func CountSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

// CountDataPoints returns the number of data points in a request, over
// every metric kind.
func CountDataPoints(req *colmetricspb.ExportMetricsServiceRequest) int {
	n := 0
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				n += dataPoints(m)
			}
		}
	}
	return n
}

func dataPoints(m *metricspb.Metric) int {
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		return len(d.Gauge.GetDataPoints())
	case *metricspb.Metric_Sum:
		return len(d.Sum.GetDataPoints())
	case *metricspb.Metric_Histogram:
		return len(d.Histogram.GetDataPoints())
	case *metricspb.Metric_ExponentialHistogram:
		return len(d.ExponentialHistogram.GetDataPoints())
	case *metricspb.Metric_Summary:
		return len(d.Summary.GetDataPoints())
	}
	return 0
}
