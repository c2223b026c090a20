package otlpconv

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

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

func kv(k string, v any) *commonpb.KeyValue {
	av := &commonpb.AnyValue{}
	switch t := v.(type) {
	case string:
		av.Value = &commonpb.AnyValue_StringValue{StringValue: t}
	case int:
		av.Value = &commonpb.AnyValue_IntValue{IntValue: int64(t)}
	case float64:
		av.Value = &commonpb.AnyValue_DoubleValue{DoubleValue: t}
	}
	return &commonpb.KeyValue{Key: k, Value: av}
}

func logsRecord(t testing.TB, recs ...*logspb.LogRecord) []byte {
	t.Helper()
	b, err := proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: recs}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCompileErrorsNameSignalFieldAndExpression(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		field string
		expr  string
	}{
		{"syntax", Config{Logs: Signal{Mapping: Mapping{Subject: "attributes.("}}}, "logs.subject", "attributes.("},
		{"unknown variable for the signal", Config{Metrics: Signal{Mapping: Mapping{Data: map[string]string{"b": "body"}}}}, "metrics.data.b", "body"},
		{"type not a string", Config{Traces: Signal{Mapping: Mapping{Type: "duration_ms"}}}, "traces.type", "duration_ms"},
		{"time not a timestamp", Config{Logs: Signal{Mapping: Mapping{Time: "1"}}}, "logs.time", "1"},
		{"filter not a bool", Config{Logs: Signal{Filter: `"yes"`}}, "logs.filter", `"yes"`},
		{"rule match not a bool", Config{Metrics: Signal{Events: []Rule{{Match: "name", Mapping: Mapping{Type: `"x"`}}}}}, "metrics.events[0].match", "name"},
		{"rule field", Config{Traces: Signal{Events: []Rule{{Match: "true"}, {Match: "true", Mapping: Mapping{Subject: "nope"}}}}}, "traces.events[1].subject", "nope"},
		{"empty match", Config{Logs: Signal{Events: []Rule{{Mapping: Mapping{Type: `"x"`}}}}}, "logs.events[0].match", ""},
		{"empty data expression", Config{Logs: Signal{Mapping: Mapping{Data: map[string]string{"v": ""}}}}, "logs.data.v", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := convert.NewRegistry()
			err := Register(reg, tc.cfg)
			if err == nil {
				t.Fatal("Register accepted a bad config")
			}
			if !strings.Contains(err.Error(), tc.field) || (tc.expr != "" && !strings.Contains(err.Error(), tc.expr)) {
				t.Errorf("error %q does not name field %q and expression %q", err, tc.field, tc.expr)
			}
			// Nothing was registered.
			_, cerr := reg.Convert(record(format.SignalLogs, logsRecord(t)))
			if !errors.Is(cerr, convert.ErrNoConverter) {
				t.Errorf("a converter was registered despite the error: %v", cerr)
			}
		})
	}
}

func TestRecordErrorsNameTheReason(t *testing.T) {
	good := &logspb.LogRecord{TimeUnixNano: 1, Attributes: []*commonpb.KeyValue{kv("subject", "c1"), kv("n", 3), kv("x", math.NaN())}}
	clean := &logspb.LogRecord{TimeUnixNano: 1, Attributes: []*commonpb.KeyValue{kv("subject", "c1")}}
	noSubject := &logspb.LogRecord{TimeUnixNano: 2, Attributes: []*commonpb.KeyValue{kv("other", "c1")}}
	spans, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{
		{Name: "backwards", StartTimeUnixNano: 10, EndTimeUnixNano: 5, Attributes: []*commonpb.KeyValue{kv("subject", "c")}}}}}}}})
	cases := []struct {
		name string
		cfg  Config
		sig  format.SignalType
		data []byte
		want []string
	}{
		{"bad protobuf", Config{}, format.SignalLogs, []byte{0xff, 0xff}, []string{"cannot decode OTLP ExportLogsServiceRequest", "record 2 of ingest/data/"}},
		{"bad metrics protobuf", Config{}, format.SignalMetrics, []byte{0x0a, 0x05, 1}, []string{"ExportMetricsServiceRequest"}},
		{"no subject (whole record rejected)", Config{}, format.SignalLogs, logsRecord(t, clean, noSubject), []string{"log record 1", "logs.subject", "empty string"}},
		{"subject of the wrong type", Config{Logs: Signal{Mapping: Mapping{Subject: "attributes.n"}}}, format.SignalLogs, logsRecord(t, good), []string{"logs.subject", "int", "want string"}},
		{"subject attribute absent", Config{Logs: Signal{Mapping: Mapping{Subject: "attributes.customer"}}}, format.SignalLogs, logsRecord(t, good), []string{"logs.subject", "no such key"}},
		{"time not RFC 3339", Config{Logs: Signal{Mapping: Mapping{Time: "attributes.subject"}}}, format.SignalLogs, logsRecord(t, good), []string{"logs.time", `"c1"`, "RFC 3339"}},
		{"NaN data", Config{Logs: Signal{Mapping: Mapping{Data: map[string]string{"x": "attributes.x"}}}}, format.SignalLogs, logsRecord(t, good), []string{"data.x", "NaN"}},
		{"runtime error", Config{Logs: Signal{Mapping: Mapping{Data: map[string]string{"d": "attributes.n / 0"}}}}, format.SignalLogs, logsRecord(t, good), []string{"logs.data.d", "division by zero"}},
		{"span ends before it starts", Config{}, format.SignalTraces, spans, []string{"span 0", "backwards", "before start"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := registry(t, tc.cfg).Convert(record(tc.sig, tc.data))
			if err == nil {
				t.Fatalf("no error; events %s", evs)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func ids(t *testing.T, evs []json.RawMessage) []string {
	t.Helper()
	var out []string
	for _, e := range evs {
		var ev struct{ ID string }
		if err := json.Unmarshal(e, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev.ID)
	}
	return out
}

// TestIDsAreDerivedFromContent: the default id is a function of the
// record's bytes and the item index only. The same request bytes converted
// as two different records (another batch location, sequence and record
// index: a client's retried export stored twice) give identical events,
// ids included, also from a fresh registry (a restarted consumer); a
// different request gives other ids; the items of one request have
// distinct ids.
func TestIDsAreDerivedFromContent(t *testing.T) {
	for _, in := range []string{"logs.json", "metrics-sum.json", "traces.json"} {
		t.Run(in, func(t *testing.T) {
			sig, data := loadRequest(t, in)
			reg := registry(t, Config{})
			rec := record(sig, data)
			a, err := reg.Convert(rec)
			if err != nil {
				t.Fatal(err)
			}
			if len(a) < 2 {
				t.Fatalf("%d events; the test needs a request of several items", len(a))
			}
			// The retried copy: same bytes (a copy, not the same slice),
			// stored in another batch, at another sequence and index.
			retry := rec
			retry.Data = append([]byte(nil), data...)
			retry.Location, retry.Sequence, retry.Index = "ingest/data/01J0000000000000000000RTRY.batch", rec.Sequence+7, rec.Index+3
			b, err := reg.Convert(retry)
			if err != nil {
				t.Fatal(err)
			}
			c, err := registry(t, Config{}).Convert(rec)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != len(a) || len(c) != len(a) {
				t.Fatalf("%d, %d and %d events", len(a), len(b), len(c))
			}
			for i := range a {
				if string(a[i]) != string(b[i]) || string(a[i]) != string(c[i]) {
					t.Fatalf("event %d differs between the two copies or calls:\n%s\n%s\n%s", i, a[i], b[i], c[i])
				}
			}
			seen := map[string]bool{}
			for i, id := range ids(t, a) {
				if seen[id] {
					t.Errorf("duplicate id %s inside one request", id)
				}
				seen[id] = true
				if want := EventID(data, i); id != want {
					t.Errorf("event %d id %s, want EventID = %s", i, id, want)
				}
			}
			// A different request (one item's time moved by 1ns) gives
			// other ids for every item, even the unchanged ones.
			other := rec
			other.Data = changeFirstTime(t, sig, data)
			evs, err := reg.Convert(other)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != len(a) {
				t.Fatalf("changed request: %d events, want %d", len(evs), len(a))
			}
			for i, id := range ids(t, evs) {
				if seen[id] {
					t.Errorf("changed request: event %d reuses id %s", i, id)
				}
			}
		})
	}
	// Known vector: UUIDv5 layout.
	id := EventID([]byte("loc"), 0)
	if len(id) != 36 || id[14] != '5' || !strings.ContainsRune("89ab", rune(id[19])) {
		t.Errorf("EventID %s is not a UUIDv5", id)
	}
}

// changeFirstTime returns the request with the time of its first item
// (log record, data point, span) increased by 1ns.
func changeFirstTime(t *testing.T, sig format.SignalType, data []byte) []byte {
	t.Helper()
	var msg proto.Message
	switch sig {
	case format.SignalLogs:
		req := &collogspb.ExportLogsServiceRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			t.Fatal(err)
		}
		req.ResourceLogs[0].ScopeLogs[0].LogRecords[0].TimeUnixNano++
		msg = req
	case format.SignalMetrics:
		req := &colmetricspb.ExportMetricsServiceRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			t.Fatal(err)
		}
		m := req.ResourceMetrics[0].ScopeMetrics[0].Metrics[0]
		m.GetSum().DataPoints[0].TimeUnixNano++
		msg = req
	default:
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			t.Fatal(err)
		}
		req.ResourceSpans[0].ScopeSpans[0].Spans[0].StartTimeUnixNano++
		msg = req
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFilterDropsWithoutShiftingIDs(t *testing.T) {
	recs := logsRecord(t,
		&logspb.LogRecord{TimeUnixNano: 1, Attributes: []*commonpb.KeyValue{kv("subject", "a"), kv("billable", "no")}},
		&logspb.LogRecord{TimeUnixNano: 2, Attributes: []*commonpb.KeyValue{kv("subject", "b"), kv("billable", "yes")}},
	)
	all, err := registry(t, Config{}).Convert(record(format.SignalLogs, recs))
	if err != nil || len(all) != 2 {
		t.Fatalf("unfiltered: %d events, %v", len(all), err)
	}
	cfg := Config{Logs: Signal{Filter: `attributes.billable == "yes"`}}
	kept, err := registry(t, cfg).Convert(record(format.SignalLogs, recs))
	if err != nil || len(kept) != 1 {
		t.Fatalf("filtered: %d events, %v", len(kept), err)
	}
	if got, want := ids(t, kept)[0], ids(t, all)[1]; got != want {
		t.Errorf("kept event id %s, want the unfiltered id %s", got, want)
	}
}

func TestRulesInheritAndOverride(t *testing.T) {
	data, _ := proto.Marshal(&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
		{Name: "tokens", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{DataPoints: []*metricspb.NumberDataPoint{
			{TimeUnixNano: 5e18, Value: &metricspb.NumberDataPoint_AsInt{AsInt: 40}, Attributes: []*commonpb.KeyValue{kv("subject", "c1"), kv("model", "big")}},
			{TimeUnixNano: 5e18, Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: 2.5}, Attributes: []*commonpb.KeyValue{kv("subject", "c2")}},
		}}}},
	}}}}}})
	cfg := Config{Metrics: Signal{
		Mapping: Mapping{Source: `"meter"`, Data: map[string]string{"tokens": "value", "model": "attributes.model"}},
		Events: []Rule{
			// attributes.model is absent on the second point: the match
			// counts as false, it is not an error.
			{Match: `attributes.model == "big"`, Mapping: Mapping{Type: `"big-tokens"`, Data: map[string]string{"tokens": "value * 2.0"}}},
		},
	}}
	evs, err := registry(t, cfg).Convert(record(format.SignalMetrics, data))
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	for _, e := range evs {
		var m map[string]any
		_ = json.Unmarshal(e, &m)
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("%d events", len(got))
	}
	check := func(i int, key string, want any) {
		t.Helper()
		if got[i][key] != want {
			t.Errorf("event %d %s = %v, want %v", i, key, got[i][key], want)
		}
	}
	check(0, "type", "big-tokens")
	check(0, "source", "meter") // inherited
	check(1, "type", "tokens")  // default: metric name
	if d := got[0]["data"].(map[string]any); d["tokens"] != 80.0 || len(d) != 1 {
		t.Errorf("rule data = %v, want only tokens=80", d)
	}
	if d := got[1]["data"].(map[string]any); d["tokens"] != 2.5 || len(d) != 1 {
		t.Errorf("base data = %v, want tokens=2.5 and model omitted", d)
	}
	check(0, "time", "2128-06-11T08:53:20Z")
}

func TestTimeFallsBackToIngestionTime(t *testing.T) {
	evs, err := registry(t, Config{}).Convert(record(format.SignalLogs, logsRecord(t, &logspb.LogRecord{Attributes: []*commonpb.KeyValue{kv("subject", "c")}})))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct{ Time string }
	_ = json.Unmarshal(evs[0], &ev)
	if ev.Time != "2024-06-10T06:14:59Z" { // IngestionTimeMs of record()
		t.Errorf("time %s, want the ingestion time", ev.Time)
	}
}

func TestVariables(t *testing.T) {
	// Each variable the documentation lists resolves for its signal.
	sig, data := loadRequest(t, "traces.json")
	cfg := Config{Traces: Signal{Mapping: Mapping{Data: map[string]string{
		"kind": "kind", "dur": "duration_ms", "parent": "parent_span_id", "scope": "scope.name", "svc": `resource["service.name"]`,
		"status": "status_code", "loc": "location", "rec": "record_index", "item": "item_index", "ing": "ingestion_time",
		"end": "end_time", "long": `duration >= duration("40ms")`, "upper": "name.upperAscii()",
	}}}}
	evs, err := registry(t, cfg).Convert(record(sig, data))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct{ Data map[string]any }
	_ = json.Unmarshal(evs[1], &ev)
	want := map[string]any{"kind": "client", "dur": 40.0, "parent": "eee19b7ec3c1b174", "scope": "net/http", "svc": "api-gateway",
		"status": "error", "loc": "ingest/data/01J0000000000000000000TEST.batch", "rec": 2.0, "item": 1.0, "ing": "2024-06-10T06:14:59Z",
		"end": "2024-06-10T06:13:20.05Z", "long": true, "upper": "SELECT THINGS"}
	for k, w := range want {
		if ev.Data[k] != w {
			t.Errorf("%s = %v (%T), want %v", k, ev.Data[k], ev.Data[k], w)
		}
	}
}
