package otlpconv

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/interpreter"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/format"
)

// Converters are the compiled converters of the three signals.
type Converters struct {
	Logs, Metrics, Traces convert.Converter

	noValue atomic.Uint64
}

// NoValuePoints returns how many metric data points the metrics converter
// skipped because they carry no value (the NoRecordedValue flag, or a sum
// or gauge number that is NaN or infinite), over every Convert call. A
// record converted twice (redelivery) counts its points twice.
func (c *Converters) NoValuePoints() uint64 { return c.noValue.Load() }

// Register registers the converters for the otlp-protobuf encoding.
func (c *Converters) Register(reg *convert.Registry) {
	reg.Register(format.SignalLogs, format.EncodingOTLPProtobuf, c.Logs)
	reg.Register(format.SignalMetrics, format.EncodingOTLPProtobuf, c.Metrics)
	reg.Register(format.SignalTraces, format.EncodingOTLPProtobuf, c.Traces)
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
	c := &Converters{Logs: &logsConverter{logs}, Traces: &tracesConverter{spans}}
	c.Metrics = &metricsConverter{cs: mets, noValue: &c.noValue}
	return c, nil
}

// Register compiles cfg and registers the logs, metrics and traces
// converters for the otlp-protobuf encoding. Nothing is registered when an
// expression does not compile.
func Register(reg *convert.Registry, cfg Config) error {
	c, err := Compile(cfg)
	if err != nil {
		return err
	}
	c.Register(reg)
	return nil
}

// outerVars are the CEL variables shared by every item of a scope.
type outerVars struct {
	resource    map[string]any
	scope       map[string]any
	ingest      time.Time
	location    string
	recordIndex int64
}

// itemVars resolves the signal-specific variables of the current item.
type itemVars interface {
	resolve(name string) (any, bool)
}

// activation resolves CEL variables without building a map per item: the
// walker reuses one activation and points it at each item in turn.
type activation struct {
	outer     *outerVars
	itemIndex int64
	time      time.Time
	vars      itemVars
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "item_index":
		return a.itemIndex, true
	case "time":
		return a.time, true
	case "resource":
		return a.outer.resource, true
	case "scope":
		return a.outer.scope, true
	case "ingestion_time":
		return a.outer.ingest, true
	case "location":
		return a.outer.location, true
	case "record_index":
		return a.outer.recordIndex, true
	}
	return a.vars.resolve(name)
}

func (a *activation) Parent() interpreter.Activation { return nil }

// position names an item in errors ("resource 0 scope 1 log record 5");
// it is formatted only when an error needs it.
type position struct {
	what           string // "log record", "span", "data point"
	ri, si, mi, ii int
	name, kind     string // metric or span name, metric kind
}

func (p *position) String() string {
	switch p.what {
	case "data point":
		return fmt.Sprintf("resource %d scope %d metric %d (%q) %s data point %d", p.ri, p.si, p.mi, p.name, p.kind, p.ii)
	case "span":
		return fmt.Sprintf("resource %d scope %d span %d (%q)", p.ri, p.si, p.ii, p.name)
	}
	return fmt.Sprintf("resource %d scope %d log record %d", p.ri, p.si, p.ii)
}

// walker carries the record being converted. The events are appended to
// buf back to back; out holds capacity-limited slices of it and items the
// item index of each. An item that cannot be converted is recorded in
// failed and the walk goes on.
type walker struct {
	cs     *compiledSignal
	rec    convert.Record
	ingest time.Time
	item   int
	out    []json.RawMessage
	items  []int
	failed []convert.ItemError
	buf    []byte
	name   []byte // scratch for the derived id's name
	// idPrefix is the id namespace and "<sha256 of rec.Data>/", computed
	// on the first derived id and shared by the record's items.
	idPrefix []byte
	data     []field // scratch for the default data
	act      activation
	pos      position
}

func newWalker(cs *compiledSignal, rec convert.Record) *walker {
	return &walker{cs: cs, rec: rec, ingest: time.UnixMilli(rec.IngestionTimeMs).UTC(), buf: make([]byte, 0, 4096)}
}

func (w *walker) fail(err error) error {
	return fmt.Errorf("record %d of %s (%s): %w", w.rec.Index, w.rec.Location, w.rec.Header.Signal, err)
}

func (w *walker) outer(resource map[string]any, scope *commonpb.InstrumentationScope) *outerVars {
	return &outerVars{
		resource: resource,
		scope: map[string]any{
			"name": scope.GetName(), "version": scope.GetVersion(),
			"attributes": attrs(scope.GetAttributes()),
		},
		ingest:      w.ingest,
		location:    w.rec.Location,
		recordIndex: int64(w.rec.Index),
	}
}

// failItem records the current item (index idx, at w.pos) as failed.
func (w *walker) failItem(idx int, err error) {
	w.failed = append(w.failed, convert.ItemError{Item: idx, Position: w.pos.String(), Err: err})
}

// all is the all-or-nothing result (Convert) of a walk: the events, or the
// first failed item's error (or err, when the record could not be read).
func all(w *walker, err error) ([]json.RawMessage, error) {
	if err != nil {
		return nil, err
	}
	if len(w.failed) > 0 {
		f := w.failed[0]
		return nil, w.fail(fmt.Errorf("%s: %w", f.Position, f.Err))
	}
	return w.out, nil
}

// events is the item-by-item result (ConvertItems) of a walk.
func events(w *walker, err error) ([]convert.Event, []convert.ItemError, error) {
	if err != nil {
		return nil, nil, err
	}
	evs := make([]convert.Event, len(w.out))
	for i, ev := range w.out {
		evs[i] = convert.Event{Item: w.items[i], JSON: ev}
	}
	return evs, w.failed, nil
}

// skip advances the item counter for an item that gives no event, so that
// later ids do not depend on it.
func (w *walker) skip() { w.item++ }

// emit maps the item w.act and w.pos describe and advances the item
// counter (filtered and failed items count too, so ids do not depend on the
// filter or on other items failing). data appends the built-in default
// data fields to its argument. An item that cannot be mapped is recorded
// in w.failed.
func (w *walker) emit(t time.Time, data func([]field) []field) {
	idx := w.item
	w.item++
	w.act.itemIndex = int64(idx)
	w.act.time = t
	start := len(w.buf)
	ok, err := w.event(idx, t, data)
	if err != nil {
		w.buf = w.buf[:start]
		w.failItem(idx, err)
		return
	}
	if ok {
		end := len(w.buf)
		w.out = append(w.out, json.RawMessage(w.buf[start:end:end]))
		w.items = append(w.items, idx)
	}
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

const hexDigits = "0123456789abcdef"

// ---- logs ----

type logsConverter struct{ cs *compiledSignal }

type logVars struct {
	lr    *logspb.LogRecord
	attrs map[string]any
	body  any
}

func (v *logVars) resolve(name string) (any, bool) {
	switch name {
	case "attributes":
		return v.attrs, true
	case "body":
		return v.body, true
	case "severity_text":
		return v.lr.GetSeverityText(), true
	case "severity_number":
		return int64(v.lr.GetSeverityNumber()), true
	case "observed_time":
		return nsTime(v.lr.GetObservedTimeUnixNano()), true
	case "event_name":
		return v.lr.GetEventName(), true
	case "trace_id":
		return hex.EncodeToString(v.lr.GetTraceId()), true
	case "span_id":
		return hex.EncodeToString(v.lr.GetSpanId()), true
	case "flags":
		return int64(v.lr.GetFlags()), true
	}
	return nil, false
}

func (v *logVars) data(d []field) []field {
	lr := v.lr
	d = append(d, field{key: "attributes", v: v.attrs})
	if v.body != nil {
		d = append(d, field{key: "body", v: v.body})
	}
	if s := lr.GetSeverityText(); s != "" {
		d = append(d, field{key: "severity_text", kind: fString, s: s})
	}
	if n := lr.GetSeverityNumber(); n != 0 {
		d = append(d, field{key: "severity_number", kind: fInt, n: int64(n)})
	}
	if s := lr.GetEventName(); s != "" {
		d = append(d, field{key: "event_name", kind: fString, s: s})
	}
	if id := lr.GetTraceId(); len(id) > 0 {
		d = append(d, field{key: "trace_id", kind: fHex, raw: id})
	}
	if id := lr.GetSpanId(); len(id) > 0 {
		d = append(d, field{key: "span_id", kind: fHex, raw: id})
	}
	return d
}

// Convert implements convert.Converter (all or nothing).
func (c *logsConverter) Convert(rec convert.Record) ([]json.RawMessage, error) {
	return all(c.walk(rec))
}

// ConvertItems implements convert.ItemConverter.
func (c *logsConverter) ConvertItems(rec convert.Record) ([]convert.Event, []convert.ItemError, error) {
	return events(c.walk(rec))
}

func (c *logsConverter) walk(rec convert.Record) (*walker, error) {
	w := newWalker(c.cs, rec)
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(rec.Data, &req); err != nil {
		return nil, w.fail(fmt.Errorf("cannot decode OTLP ExportLogsServiceRequest: %w", err))
	}
	var v logVars
	w.act.vars = &v
	w.pos.what = "log record"
	for ri, rl := range req.GetResourceLogs() {
		res := attrs(rl.GetResource().GetAttributes())
		for si, sl := range rl.GetScopeLogs() {
			w.act.outer = w.outer(res, sl.GetScope())
			for li, lr := range sl.GetLogRecords() {
				v = logVars{lr: lr, attrs: attrs(lr.GetAttributes()), body: anyValue(lr.GetBody())}
				w.pos.ri, w.pos.si, w.pos.ii = ri, si, li
				w.emit(w.itemTime(lr.GetTimeUnixNano(), lr.GetObservedTimeUnixNano()), v.data)
			}
		}
	}
	return w, nil
}

// ---- metrics ----

type metricsConverter struct {
	cs      *compiledSignal
	noValue *atomic.Uint64
}

func temporality(t metricspb.AggregationTemporality) string {
	switch t {
	case metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA:
		return "delta"
	case metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE:
		return "cumulative"
	}
	return "unspecified"
}

// point is one data point made uniform across metric kinds; exactly one
// of number, hist, exp and summary is set.
type point struct {
	kind, temporality string
	monotonic         bool
	value, sum        float64
	count             int64
	start, time       uint64
	flags             uint32
	attrs             []*commonpb.KeyValue
	number            *metricspb.NumberDataPoint
	hist              *metricspb.HistogramDataPoint
	exp               *metricspb.ExponentialHistogramDataPoint
	summary           *metricspb.SummaryDataPoint
}

// noValue tells whether the point carries no value to meter: the OTLP
// NoRecordedValue flag (for example a Prometheus staleness marker), or a
// sum or gauge whose number is NaN or infinite.
func (p *point) noValue() bool {
	if p.flags&uint32(metricspb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK) != 0 {
		return true
	}
	return p.number != nil && (math.IsNaN(p.value) || math.IsInf(p.value, 0))
}

func numberValue(dp *metricspb.NumberDataPoint) (float64, any) {
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

func expBuckets(b *metricspb.ExponentialHistogramDataPoint_Buckets) map[string]any {
	return map[string]any{"offset": int64(b.GetOffset()), "bucket_counts": ints(b.GetBucketCounts())}
}

func quantiles(dp *metricspb.SummaryDataPoint) []any {
	qs := make([]any, 0, len(dp.GetQuantileValues()))
	for _, q := range dp.GetQuantileValues() {
		qs = append(qs, map[string]any{"quantile": q.GetQuantile(), "value": q.GetValue()})
	}
	return qs
}

// fields is the `point` variable: the kind-specific fields.
func (p *point) fields() map[string]any {
	switch {
	case p.number != nil:
		_, native := numberValue(p.number)
		return map[string]any{"value": native}
	case p.hist != nil:
		dp := p.hist
		f := map[string]any{"count": int64(dp.GetCount()), "bucket_counts": ints(dp.GetBucketCounts()), "explicit_bounds": floats(dp.GetExplicitBounds())}
		optFloat(f, "sum", dp.Sum)
		optFloat(f, "min", dp.Min)
		optFloat(f, "max", dp.Max)
		return f
	case p.exp != nil:
		dp := p.exp
		f := map[string]any{"count": int64(dp.GetCount()), "scale": int64(dp.GetScale()), "zero_count": int64(dp.GetZeroCount()),
			"zero_threshold": dp.GetZeroThreshold(), "positive": expBuckets(dp.GetPositive()), "negative": expBuckets(dp.GetNegative())}
		optFloat(f, "sum", dp.Sum)
		optFloat(f, "min", dp.Min)
		optFloat(f, "max", dp.Max)
		return f
	case p.summary != nil:
		dp := p.summary
		return map[string]any{"count": int64(dp.GetCount()), "sum": dp.GetSum(), "quantile_values": quantiles(dp)}
	}
	return map[string]any{}
}

func optFloatField(d []field, k string, f *float64) []field {
	if f != nil {
		d = append(d, field{key: k, kind: fFloat, f: *f})
	}
	return d
}

// appendFields appends the `point` fields to the default data.
func (p *point) appendFields(d []field) []field {
	switch {
	case p.number != nil:
		switch v := p.number.GetValue().(type) {
		case *metricspb.NumberDataPoint_AsInt:
			return append(d, field{key: "value", kind: fInt, n: v.AsInt})
		case *metricspb.NumberDataPoint_AsDouble:
			return append(d, field{key: "value", kind: fFloat, f: v.AsDouble})
		}
		return append(d, field{key: "value"}) // null
	case p.hist != nil:
		dp := p.hist
		d = append(d, field{key: "count", kind: fInt, n: int64(dp.GetCount())},
			field{key: "bucket_counts", v: int64s(dp.GetBucketCounts())},
			field{key: "explicit_bounds", v: float64s(dp.GetExplicitBounds())})
		d = optFloatField(d, "sum", dp.Sum)
		d = optFloatField(d, "min", dp.Min)
		return optFloatField(d, "max", dp.Max)
	case p.exp != nil:
		dp := p.exp
		d = append(d, field{key: "count", kind: fInt, n: int64(dp.GetCount())},
			field{key: "scale", kind: fInt, n: int64(dp.GetScale())},
			field{key: "zero_count", kind: fInt, n: int64(dp.GetZeroCount())},
			field{key: "zero_threshold", kind: fFloat, f: dp.GetZeroThreshold()},
			field{key: "positive", v: expBuckets(dp.GetPositive())},
			field{key: "negative", v: expBuckets(dp.GetNegative())})
		d = optFloatField(d, "sum", dp.Sum)
		d = optFloatField(d, "min", dp.Min)
		return optFloatField(d, "max", dp.Max)
	case p.summary != nil:
		dp := p.summary
		return append(d, field{key: "count", kind: fInt, n: int64(dp.GetCount())},
			field{key: "sum", kind: fFloat, f: dp.GetSum()},
			field{key: "quantile_values", v: quantiles(dp)})
	}
	return d
}

// eachPoint calls fn for every data point of m, reusing one point.
func eachPoint(m *metricspb.Metric, fn func(i int, p *point)) {
	var p point
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		for i, dp := range d.Gauge.GetDataPoints() {
			v, _ := numberValue(dp)
			p = point{kind: "gauge", value: v, start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(),
				flags: dp.GetFlags(), attrs: dp.GetAttributes(), number: dp}
			fn(i, &p)
		}
	case *metricspb.Metric_Sum:
		temp := temporality(d.Sum.GetAggregationTemporality())
		for i, dp := range d.Sum.GetDataPoints() {
			v, _ := numberValue(dp)
			p = point{kind: "sum", temporality: temp, monotonic: d.Sum.GetIsMonotonic(),
				value: v, start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(), flags: dp.GetFlags(), attrs: dp.GetAttributes(), number: dp}
			fn(i, &p)
		}
	case *metricspb.Metric_Histogram:
		temp := temporality(d.Histogram.GetAggregationTemporality())
		for i, dp := range d.Histogram.GetDataPoints() {
			p = point{kind: "histogram", temporality: temp,
				value: dp.GetSum(), sum: dp.GetSum(), count: int64(dp.GetCount()), start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(),
				flags: dp.GetFlags(), attrs: dp.GetAttributes(), hist: dp}
			fn(i, &p)
		}
	case *metricspb.Metric_ExponentialHistogram:
		temp := temporality(d.ExponentialHistogram.GetAggregationTemporality())
		for i, dp := range d.ExponentialHistogram.GetDataPoints() {
			p = point{kind: "exponential_histogram", temporality: temp,
				value: dp.GetSum(), sum: dp.GetSum(), count: int64(dp.GetCount()), start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(),
				flags: dp.GetFlags(), attrs: dp.GetAttributes(), exp: dp}
			fn(i, &p)
		}
	case *metricspb.Metric_Summary:
		for i, dp := range d.Summary.GetDataPoints() {
			p = point{kind: "summary", value: dp.GetSum(), sum: dp.GetSum(), count: int64(dp.GetCount()),
				start: dp.GetStartTimeUnixNano(), time: dp.GetTimeUnixNano(), flags: dp.GetFlags(), attrs: dp.GetAttributes(), summary: dp}
			fn(i, &p)
		}
	}
}

type metricVars struct {
	m      *metricspb.Metric
	p      *point
	attrs  map[string]any
	fields map[string]any // the `point` variable, built on first use
}

func (v *metricVars) resolve(name string) (any, bool) {
	p := v.p
	switch name {
	case "attributes":
		return v.attrs, true
	case "name":
		return v.m.GetName(), true
	case "description":
		return v.m.GetDescription(), true
	case "unit":
		return v.m.GetUnit(), true
	case "kind":
		return p.kind, true
	case "temporality":
		return p.temporality, true
	case "monotonic":
		return p.monotonic, true
	case "value":
		return p.value, true
	case "count":
		return p.count, true
	case "sum":
		return p.sum, true
	case "start_time":
		return nsTime(p.start), true
	case "end_time":
		return nsTime(p.time), true
	case "point":
		if v.fields == nil {
			v.fields = p.fields()
		}
		return v.fields, true
	case "flags":
		return int64(p.flags), true
	}
	return nil, false
}

func (v *metricVars) data(d []field) []field {
	p, m := v.p, v.m
	d = append(d, field{key: "name", kind: fString, s: m.GetName()},
		field{key: "kind", kind: fString, s: p.kind},
		field{key: "attributes", v: v.attrs})
	d = p.appendFields(d)
	if u := m.GetUnit(); u != "" {
		d = append(d, field{key: "unit", kind: fString, s: u})
	}
	if p.temporality != "" {
		d = append(d, field{key: "temporality", kind: fString, s: p.temporality})
	}
	if p.kind == "sum" {
		d = append(d, field{key: "monotonic", kind: fBool, b: p.monotonic})
	}
	if p.start != 0 {
		d = append(d, field{key: "start_time", kind: fTimeNs, n: int64(p.start)})
	}
	if p.time != 0 {
		d = append(d, field{key: "end_time", kind: fTimeNs, n: int64(p.time)})
	}
	return d
}

// Convert implements convert.Converter (all or nothing).
func (c *metricsConverter) Convert(rec convert.Record) ([]json.RawMessage, error) {
	return all(c.walk(rec))
}

// ConvertItems implements convert.ItemConverter.
func (c *metricsConverter) ConvertItems(rec convert.Record) ([]convert.Event, []convert.ItemError, error) {
	return events(c.walk(rec))
}

func (c *metricsConverter) walk(rec convert.Record) (*walker, error) {
	w := newWalker(c.cs, rec)
	var req colmetricspb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(rec.Data, &req); err != nil {
		return nil, w.fail(fmt.Errorf("cannot decode OTLP ExportMetricsServiceRequest: %w", err))
	}
	var v metricVars
	w.act.vars = &v
	w.pos.what = "data point"
	noValue := 0
	for ri, rm := range req.GetResourceMetrics() {
		res := attrs(rm.GetResource().GetAttributes())
		for si, sm := range rm.GetScopeMetrics() {
			w.act.outer = w.outer(res, sm.GetScope())
			for mi, m := range sm.GetMetrics() {
				eachPoint(m, func(pi int, p *point) {
					if p.noValue() {
						noValue++
						w.skip()
						return
					}
					v = metricVars{m: m, p: p, attrs: attrs(p.attrs)}
					w.pos.ri, w.pos.si, w.pos.mi, w.pos.ii, w.pos.name, w.pos.kind = ri, si, mi, pi, m.GetName(), p.kind
					w.emit(w.itemTime(p.time), v.data)
				})
			}
		}
	}
	if noValue > 0 && c.noValue != nil {
		c.noValue.Add(uint64(noValue))
	}
	return w, nil
}

// ---- traces ----

type tracesConverter struct{ cs *compiledSignal }

func spanKind(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_INTERNAL:
		return "internal"
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	}
	return "unspecified"
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

type spanVars struct {
	sp         *tracepb.Span
	attrs      map[string]any
	kind, code string
	dur        time.Duration
}

func (v *spanVars) durMs() float64 { return float64(v.dur) / float64(time.Millisecond) }

func (v *spanVars) resolve(name string) (any, bool) {
	sp := v.sp
	switch name {
	case "attributes":
		return v.attrs, true
	case "name":
		return sp.GetName(), true
	case "kind":
		return v.kind, true
	case "trace_id":
		return hex.EncodeToString(sp.GetTraceId()), true
	case "span_id":
		return hex.EncodeToString(sp.GetSpanId()), true
	case "parent_span_id":
		return hex.EncodeToString(sp.GetParentSpanId()), true
	case "trace_state":
		return sp.GetTraceState(), true
	case "start_time":
		return nsTime(sp.GetStartTimeUnixNano()), true
	case "end_time":
		return nsTime(sp.GetEndTimeUnixNano()), true
	case "duration":
		return v.dur, true
	case "duration_ms":
		return v.durMs(), true
	case "status_code":
		return v.code, true
	case "status_message":
		return sp.GetStatus().GetMessage(), true
	case "flags":
		return int64(sp.GetFlags()), true
	}
	return nil, false
}

func (v *spanVars) data(d []field) []field {
	sp := v.sp
	d = append(d, field{key: "name", kind: fString, s: sp.GetName()},
		field{key: "kind", kind: fString, s: v.kind},
		field{key: "duration_ms", kind: fFloat, f: v.durMs()},
		field{key: "status_code", kind: fString, s: v.code},
		field{key: "trace_id", kind: fHex, raw: sp.GetTraceId()},
		field{key: "span_id", kind: fHex, raw: sp.GetSpanId()},
		field{key: "start_time", kind: fTimeNs, n: int64(sp.GetStartTimeUnixNano())},
		field{key: "end_time", kind: fTimeNs, n: int64(sp.GetEndTimeUnixNano())},
		field{key: "attributes", v: v.attrs})
	if p := sp.GetParentSpanId(); len(p) > 0 {
		d = append(d, field{key: "parent_span_id", kind: fHex, raw: p})
	}
	if msg := sp.GetStatus().GetMessage(); msg != "" {
		d = append(d, field{key: "status_message", kind: fString, s: msg})
	}
	return d
}

// Convert implements convert.Converter (all or nothing).
func (c *tracesConverter) Convert(rec convert.Record) ([]json.RawMessage, error) {
	return all(c.walk(rec))
}

// ConvertItems implements convert.ItemConverter.
func (c *tracesConverter) ConvertItems(rec convert.Record) ([]convert.Event, []convert.ItemError, error) {
	return events(c.walk(rec))
}

func (c *tracesConverter) walk(rec convert.Record) (*walker, error) {
	w := newWalker(c.cs, rec)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(rec.Data, &req); err != nil {
		return nil, w.fail(fmt.Errorf("cannot decode OTLP ExportTraceServiceRequest: %w", err))
	}
	var v spanVars
	w.act.vars = &v
	w.pos.what = "span"
	for ri, rs := range req.GetResourceSpans() {
		res := attrs(rs.GetResource().GetAttributes())
		for si, ss := range rs.GetScopeSpans() {
			w.act.outer = w.outer(res, ss.GetScope())
			for xi, sp := range ss.GetSpans() {
				w.pos.ri, w.pos.si, w.pos.ii, w.pos.name = ri, si, xi, sp.GetName()
				start, end := sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano()
				if end < start {
					w.failItem(w.item, fmt.Errorf("end time %d is before start time %d", end, start))
					w.skip()
					continue
				}
				v = spanVars{sp: sp, attrs: attrs(sp.GetAttributes()), kind: spanKind(sp.GetKind()),
					code: statusCode(sp.GetStatus().GetCode()), dur: time.Duration(end - start)}
				w.emit(w.itemTime(start), v.data)
			}
		}
	}
	return w, nil
}

// ---- values ----

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
