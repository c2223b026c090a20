package otlpconv

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/interpreter"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/format"
)

// Converters are the compiled converters of the three signals.
type Converters struct {
	Logs, Metrics, Traces convert.Converter
}

// Compile compiles every expression of cfg once. An error names the
// signal, the field and the expression.
func Compile(cfg Config) (*Converters, error) {
	logs, err := compileSignal("logs", cfg.Logs, DefaultLogType)
	if err != nil {
		return nil, err
	}
	mets, err := compileSignal("metrics", cfg.Metrics, DefaultMetricType)
	if err != nil {
		return nil, err
	}
	spans, err := compileSignal("traces", cfg.Traces, DefaultSpanType)
	if err != nil {
		return nil, err
	}
	return &Converters{Logs: &logsConverter{logs}, Metrics: &metricsConverter{mets}, Traces: &tracesConverter{spans}}, nil
}

// Register compiles cfg and registers the logs, metrics and traces
// converters for the otlp-protobuf encoding. Nothing is registered when an
// expression does not compile.
func Register(reg *convert.Registry, cfg Config) error {
	c, err := Compile(cfg)
	if err != nil {
		return err
	}
	reg.Register(format.SignalLogs, format.EncodingOTLPProtobuf, c.Logs)
	reg.Register(format.SignalMetrics, format.EncodingOTLPProtobuf, c.Metrics)
	reg.Register(format.SignalTraces, format.EncodingOTLPProtobuf, c.Traces)
	return nil
}

// activation resolves CEL variables: per-item ones first, then those
// shared by every item of a scope.
type activation struct {
	outer, inner map[string]any
}

func (a *activation) ResolveName(name string) (any, bool) {
	if v, ok := a.inner[name]; ok {
		return v, true
	}
	v, ok := a.outer[name]
	return v, ok
}

func (a *activation) Parent() interpreter.Activation { return nil }

// walker carries the record being converted.
type walker struct {
	rec    convert.Record
	ingest time.Time
	item   int
	out    []json.RawMessage
}

func newWalker(rec convert.Record) *walker {
	return &walker{rec: rec, ingest: time.UnixMilli(rec.IngestionTimeMs).UTC()}
}

func (w *walker) fail(err error) error {
	return fmt.Errorf("record %d of %s (%s): %w", w.rec.Index, w.rec.Location, w.rec.Header.Signal, err)
}

func (w *walker) outer(resource map[string]any, scope *commonpb.InstrumentationScope) map[string]any {
	return map[string]any{
		"resource": resource,
		"scope": map[string]any{
			"name": scope.GetName(), "version": scope.GetVersion(),
			"attributes": attrs(scope.GetAttributes()),
		},
		"ingestion_time": w.ingest,
		"location":       w.rec.Location,
		"record_index":   int64(w.rec.Index),
	}
}

// emit maps one item and advances the item counter (filtered items count
// too, so ids do not depend on the filter).
func (w *walker) emit(cs *compiledSignal, outer, inner map[string]any, pos string, t time.Time, data func() (map[string]any, error)) error {
	idx := w.item
	w.item++
	inner["item_index"] = int64(idx)
	inner["time"] = t
	it := &item{act: &activation{outer: outer, inner: inner}, pos: pos,
		idName: idName(w.rec.Location, w.rec.Index, idx), defaultTime: t, defaultData: data}
	ev, ok, err := cs.event(it)
	if err != nil {
		return w.fail(err)
	}
	if ok {
		w.out = append(w.out, ev)
	}
	return nil
}

// itemTime is the first non-zero of the nanosecond times, else the
// ingestion time.
func (w *walker) itemTime(ns ...uint64) time.Time {
	for _, n := range ns {
		if n != 0 {
			return time.Unix(0, int64(n)).UTC()
		}
	}
	return w.ingest
}

func nsTime(n uint64) time.Time {
	if n == 0 {
		return time.Unix(0, 0).UTC()
	}
	return time.Unix(0, int64(n)).UTC()
}

// ---- logs ----

type logsConverter struct{ cs *compiledSignal }

func (c *logsConverter) Convert(rec convert.Record) ([]json.RawMessage, error) {
	w := newWalker(rec)
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(rec.Data, &req); err != nil {
		return nil, w.fail(fmt.Errorf("cannot decode OTLP ExportLogsServiceRequest: %w", err))
	}
	for ri, rl := range req.GetResourceLogs() {
		res := attrs(rl.GetResource().GetAttributes())
		for si, sl := range rl.GetScopeLogs() {
			outer := w.outer(res, sl.GetScope())
			for li, lr := range sl.GetLogRecords() {
				body := anyValue(lr.GetBody())
				a := attrs(lr.GetAttributes())
				traceID, spanID := hex.EncodeToString(lr.GetTraceId()), hex.EncodeToString(lr.GetSpanId())
				inner := map[string]any{
					"attributes":      a,
					"body":            body,
					"severity_text":   lr.GetSeverityText(),
					"severity_number": int64(lr.GetSeverityNumber()),
					"observed_time":   nsTime(lr.GetObservedTimeUnixNano()),
					"event_name":      lr.GetEventName(),
					"trace_id":        traceID,
					"span_id":         spanID,
					"flags":           int64(lr.GetFlags()),
				}
				data := func() (map[string]any, error) {
					d := map[string]any{"attributes": a}
					putIf(d, "body", body, body != nil)
					putIf(d, "severity_text", lr.GetSeverityText(), lr.GetSeverityText() != "")
					putIf(d, "severity_number", int64(lr.GetSeverityNumber()), lr.GetSeverityNumber() != 0)
					putIf(d, "event_name", lr.GetEventName(), lr.GetEventName() != "")
					putIf(d, "trace_id", traceID, traceID != "")
					putIf(d, "span_id", spanID, spanID != "")
					return d, nil
				}
				pos := fmt.Sprintf("resource %d scope %d log record %d", ri, si, li)
				if err := w.emit(c.cs, outer, inner, pos, w.itemTime(lr.GetTimeUnixNano(), lr.GetObservedTimeUnixNano()), data); err != nil {
					return nil, err
				}
			}
		}
	}
	return w.out, nil
}

// ---- metrics ----

type metricsConverter struct{ cs *compiledSignal }

func temporality(t metricspb.AggregationTemporality) string {
	switch t {
	case metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA:
		return "delta"
	case metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE:
		return "cumulative"
	}
	return "unspecified"
}

// point is one data point made uniform across metric kinds.
type point struct {
	kind, temporality string
	monotonic         bool
	value, sum        float64
	count             int64
	start, time       uint64
	flags             uint32
	attrs             []*commonpb.KeyValue
	fields            map[string]any // kind-specific fields (the `point` variable)
}

func numberPoint(dp *metricspb.NumberDataPoint) (float64, any) {
	switch v := dp.GetValue().(type) {
	case *metricspb.NumberDataPoint_AsInt:
		return float64(v.AsInt), v.AsInt
	case *metricspb.NumberDataPoint_AsDouble:
		return v.AsDouble, v.AsDouble
	}
	return 0, nil
}

func floats(f []float64) []any {
	out := make([]any, len(f))
	for i, v := range f {
		out[i] = v
	}
	return out
}

func ints(u []uint64) []any {
	out := make([]any, len(u))
	for i, v := range u {
		out[i] = int64(v)
	}
	return out
}

func optFloat(m map[string]any, k string, f *float64) {
	if f != nil {
		m[k] = *f
	}
}

func points(m *metricspb.Metric) []point {
	var ps []point
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		for _, dp := range d.Gauge.GetDataPoints() {
			v, native := numberPoint(dp)
			ps = append(ps, point{kind: "gauge", value: v, start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(),
				flags: dp.GetFlags(), attrs: dp.GetAttributes(), fields: map[string]any{"value": native}})
		}
	case *metricspb.Metric_Sum:
		for _, dp := range d.Sum.GetDataPoints() {
			v, native := numberPoint(dp)
			ps = append(ps, point{kind: "sum", temporality: temporality(d.Sum.GetAggregationTemporality()), monotonic: d.Sum.GetIsMonotonic(),
				value: v, start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(), flags: dp.GetFlags(), attrs: dp.GetAttributes(),
				fields: map[string]any{"value": native}})
		}
	case *metricspb.Metric_Histogram:
		for _, dp := range d.Histogram.GetDataPoints() {
			f := map[string]any{"count": int64(dp.GetCount()), "bucket_counts": ints(dp.GetBucketCounts()), "explicit_bounds": floats(dp.GetExplicitBounds())}
			optFloat(f, "sum", dp.Sum)
			optFloat(f, "min", dp.Min)
			optFloat(f, "max", dp.Max)
			ps = append(ps, point{kind: "histogram", temporality: temporality(d.Histogram.GetAggregationTemporality()),
				value: dp.GetSum(), sum: dp.GetSum(), count: int64(dp.GetCount()), start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(),
				flags: dp.GetFlags(), attrs: dp.GetAttributes(), fields: f})
		}
	case *metricspb.Metric_ExponentialHistogram:
		for _, dp := range d.ExponentialHistogram.GetDataPoints() {
			buckets := func(b *metricspb.ExponentialHistogramDataPoint_Buckets) map[string]any {
				return map[string]any{"offset": int64(b.GetOffset()), "bucket_counts": ints(b.GetBucketCounts())}
			}
			f := map[string]any{"count": int64(dp.GetCount()), "scale": int64(dp.GetScale()), "zero_count": int64(dp.GetZeroCount()),
				"zero_threshold": dp.GetZeroThreshold(), "positive": buckets(dp.GetPositive()), "negative": buckets(dp.GetNegative())}
			optFloat(f, "sum", dp.Sum)
			optFloat(f, "min", dp.Min)
			optFloat(f, "max", dp.Max)
			ps = append(ps, point{kind: "exponential_histogram", temporality: temporality(d.ExponentialHistogram.GetAggregationTemporality()),
				value: dp.GetSum(), sum: dp.GetSum(), count: int64(dp.GetCount()), start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(),
				flags: dp.GetFlags(), attrs: dp.GetAttributes(), fields: f})
		}
	case *metricspb.Metric_Summary:
		for _, dp := range d.Summary.GetDataPoints() {
			qs := make([]any, 0, len(dp.GetQuantileValues()))
			for _, q := range dp.GetQuantileValues() {
				qs = append(qs, map[string]any{"quantile": q.GetQuantile(), "value": q.GetValue()})
			}
			f := map[string]any{"count": int64(dp.GetCount()), "sum": dp.GetSum(), "quantile_values": qs}
			ps = append(ps, point{kind: "summary", value: dp.GetSum(), sum: dp.GetSum(), count: int64(dp.GetCount()),
				start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(), flags: dp.GetFlags(), attrs: dp.GetAttributes(), fields: f})
		}
	}
	return ps
}

func (c *metricsConverter) Convert(rec convert.Record) ([]json.RawMessage, error) {
	w := newWalker(rec)
	var req colmetricspb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(rec.Data, &req); err != nil {
		return nil, w.fail(fmt.Errorf("cannot decode OTLP ExportMetricsServiceRequest: %w", err))
	}
	for ri, rm := range req.GetResourceMetrics() {
		res := attrs(rm.GetResource().GetAttributes())
		for si, sm := range rm.GetScopeMetrics() {
			outer := w.outer(res, sm.GetScope())
			for mi, m := range sm.GetMetrics() {
				for pi, p := range points(m) {
					a := attrs(p.attrs)
					inner := map[string]any{
						"attributes":  a,
						"name":        m.GetName(),
						"description": m.GetDescription(),
						"unit":        m.GetUnit(),
						"kind":        p.kind,
						"temporality": p.temporality,
						"monotonic":   p.monotonic,
						"value":       p.value,
						"count":       p.count,
						"sum":         p.sum,
						"start_time":  nsTime(p.start),
						"end_time":    nsTime(p.time),
						"point":       p.fields,
						"flags":       int64(p.flags),
					}
					data := func() (map[string]any, error) {
						d := map[string]any{"name": m.GetName(), "kind": p.kind, "attributes": a}
						for k, v := range p.fields {
							d[k] = v
						}
						putIf(d, "unit", m.GetUnit(), m.GetUnit() != "")
						putIf(d, "temporality", p.temporality, p.temporality != "")
						putIf(d, "monotonic", p.monotonic, p.kind == "sum")
						putIf(d, "start_time", formatTime(nsTime(p.start)), p.start != 0)
						putIf(d, "end_time", formatTime(nsTime(p.time)), p.time != 0)
						return d, nil
					}
					pos := fmt.Sprintf("resource %d scope %d metric %d (%q) %s data point %d", ri, si, mi, m.GetName(), p.kind, pi)
					if err := w.emit(c.cs, outer, inner, pos, w.itemTime(p.time), data); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	return w.out, nil
}

// ---- traces ----

type tracesConverter struct{ cs *compiledSignal }

func spanKind(k tracepb.Span_SpanKind) string {
	s := strings.TrimPrefix(k.String(), "SPAN_KIND_")
	if _, ok := tracepb.Span_SpanKind_name[int32(k)]; !ok {
		return "unspecified"
	}
	return strings.ToLower(s)
}

func statusCode(c tracepb.Status_StatusCode) string {
	switch c {
	case tracepb.Status_STATUS_CODE_OK:
		return "ok"
	case tracepb.Status_STATUS_CODE_ERROR:
		return "error"
	}
	return "unset"
}

func (c *tracesConverter) Convert(rec convert.Record) ([]json.RawMessage, error) {
	w := newWalker(rec)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(rec.Data, &req); err != nil {
		return nil, w.fail(fmt.Errorf("cannot decode OTLP ExportTraceServiceRequest: %w", err))
	}
	for ri, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for si, ss := range rs.GetScopeSpans() {
			outer := w.outer(res, ss.GetScope())
			for xi, sp := range ss.GetSpans() {
				pos := fmt.Sprintf("resource %d scope %d span %d (%q)", ri, si, xi, sp.GetName())
				start, end := sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano()
				if end < start {
					return nil, w.fail(fmt.Errorf("%s: end time %d is before start time %d", pos, end, start))
				}
				dur := time.Duration(end - start)
				a := attrs(sp.GetAttributes())
				traceID, spanID, parent := hex.EncodeToString(sp.GetTraceId()), hex.EncodeToString(sp.GetSpanId()), hex.EncodeToString(sp.GetParentSpanId())
				kind, code := spanKind(sp.GetKind()), statusCode(sp.GetStatus().GetCode())
				durMs := float64(dur) / float64(time.Millisecond)
				inner := map[string]any{
					"attributes":     a,
					"name":           sp.GetName(),
					"kind":           kind,
					"trace_id":       traceID,
					"span_id":        spanID,
					"parent_span_id": parent,
					"trace_state":    sp.GetTraceState(),
					"start_time":     nsTime(start),
					"end_time":       nsTime(end),
					"duration":       dur,
					"duration_ms":    durMs,
					"status_code":    code,
					"status_message": sp.GetStatus().GetMessage(),
					"flags":          int64(sp.GetFlags()),
				}
				data := func() (map[string]any, error) {
					d := map[string]any{"name": sp.GetName(), "kind": kind, "duration_ms": durMs, "status_code": code,
						"trace_id": traceID, "span_id": spanID, "start_time": formatTime(nsTime(start)), "end_time": formatTime(nsTime(end)),
						"attributes": a}
					putIf(d, "parent_span_id", parent, parent != "")
					putIf(d, "status_message", sp.GetStatus().GetMessage(), sp.GetStatus().GetMessage() != "")
					return d, nil
				}
				if err := w.emit(c.cs, outer, inner, pos, w.itemTime(start), data); err != nil {
					return nil, err
				}
			}
		}
	}
	return w.out, nil
}

// ---- values ----

func putIf(m map[string]any, k string, v any, ok bool) {
	if ok {
		m[k] = v
	}
}

// attrs turns OTLP attributes into a map (later duplicates win, as in the
// OTel SDKs).
func attrs(kvs []*commonpb.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyValue(kv.GetValue())
	}
	return m
}

// anyValue turns an OTLP AnyValue into string, bool, int64, float64,
// []byte, []any, map[string]any or nil.
func anyValue(v *commonpb.AnyValue) any {
	switch t := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return t.StringValue
	case *commonpb.AnyValue_BoolValue:
		return t.BoolValue
	case *commonpb.AnyValue_IntValue:
		return t.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return t.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return t.BytesValue
	case *commonpb.AnyValue_ArrayValue:
		vs := t.ArrayValue.GetValues()
		out := make([]any, len(vs))
		for i, e := range vs {
			out[i] = anyValue(e)
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		return attrs(t.KvlistValue.GetValues())
	}
	return nil
}
