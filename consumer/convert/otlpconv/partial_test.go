package otlpconv

import (
	"encoding/json"
	"strings"
	"testing"

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

func metricsRecord(t testing.TB, pts ...*metricspb.NumberDataPoint) []byte {
	t.Helper()
	b, err := proto.Marshal(&colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
		{Name: "tokens", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{DataPoints: pts}}},
	}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tracesRecord(t testing.TB, spans ...*tracepb.Span) []byte {
	t.Helper()
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConvertItemsSkipsOnlyTheFailedItem: a request whose middle item
// fails gives the events of the other items, with the ids they have when
// every item converts, and one ItemError naming the item's position and
// the config field; Convert still refuses the whole record.
func TestConvertItemsSkipsOnlyTheFailedItem(t *testing.T) {
	lr := func(ns uint64, kvs ...*commonpb.KeyValue) *logspb.LogRecord {
		return &logspb.LogRecord{TimeUnixNano: ns, Attributes: kvs}
	}
	pt := func(v int64, kvs ...*commonpb.KeyValue) *metricspb.NumberDataPoint {
		return &metricspb.NumberDataPoint{TimeUnixNano: 5, Value: &metricspb.NumberDataPoint_AsInt{AsInt: v}, Attributes: kvs}
	}
	span := func(name string, start, end uint64) *tracepb.Span {
		return &tracepb.Span{Name: name, StartTimeUnixNano: start, EndTimeUnixNano: end, Attributes: []*commonpb.KeyValue{kv("subject", "c")}}
	}
	cases := []struct {
		name      string
		cfg       Config
		sig       format.SignalType
		mixed     []byte // items good, bad, good
		allGood   []byte // the same request with item 1 good
		wantPos   string
		wantField []string
	}{
		{"log without subject", Config{}, format.SignalLogs,
			logsRecord(t, lr(1, kv("subject", "a")), lr(2, kv("other", "b")), lr(3, kv("subject", "c"))),
			logsRecord(t, lr(1, kv("subject", "a")), lr(2, kv("subject", "b")), lr(3, kv("subject", "c"))),
			"resource 0 scope 0 log record 1", []string{"logs.subject", "empty string"}},
		{"log mapping of the wrong type", Config{Logs: Signal{Mapping: Mapping{Subject: "attributes.customer"}}}, format.SignalLogs,
			logsRecord(t, lr(1, kv("customer", "a")), lr(2, kv("customer", 7)), lr(3, kv("customer", "c"))),
			logsRecord(t, lr(1, kv("customer", "a")), lr(2, kv("customer", "b")), lr(3, kv("customer", "c"))),
			"resource 0 scope 0 log record 1", []string{"logs.subject", "attributes.customer", "int", "want string"}},
		{"log mapping that errors", Config{Logs: Signal{Mapping: Mapping{Data: map[string]string{"d": "10 / attributes.n"}}}}, format.SignalLogs,
			logsRecord(t, lr(1, kv("subject", "a"), kv("n", 2)), lr(2, kv("subject", "b"), kv("n", 0)), lr(3, kv("subject", "c"), kv("n", 5))),
			logsRecord(t, lr(1, kv("subject", "a"), kv("n", 2)), lr(2, kv("subject", "b"), kv("n", 1)), lr(3, kv("subject", "c"), kv("n", 5))),
			"resource 0 scope 0 log record 1", []string{"logs.data.d", "division by zero"}},
		{"data point without subject", Config{}, format.SignalMetrics,
			metricsRecord(t, pt(1, kv("subject", "a")), pt(2), pt(3, kv("subject", "c"))),
			metricsRecord(t, pt(1, kv("subject", "a")), pt(2, kv("subject", "b")), pt(3, kv("subject", "c"))),
			`resource 0 scope 0 metric 0 ("tokens") sum data point 1`, []string{"metrics.subject"}},
		{"span ending before it starts", Config{}, format.SignalTraces,
			tracesRecord(t, span("a", 1, 2), span("backwards", 10, 5), span("c", 3, 4)),
			tracesRecord(t, span("a", 1, 2), span("backwards", 5, 10), span("c", 3, 4)),
			`resource 0 scope 0 span 1 ("backwards")`, []string{"before start time"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := registry(t, tc.cfg)
			good, failed, err := reg.ConvertItems(record(tc.sig, tc.allGood))
			if err != nil || len(failed) != 0 || len(good) != 3 {
				t.Fatalf("all good: %d events, failed %v, err %v", len(good), failed, err)
			}
			evs, failed, err := reg.ConvertItems(record(tc.sig, tc.mixed))
			if err != nil {
				t.Fatalf("ConvertItems: %v", err)
			}
			if len(evs) != 2 || evs[0].Item != 0 || evs[1].Item != 2 {
				t.Fatalf("events of items %v, want items 0 and 2", eventItems(evs))
			}
			for i, want := range []convert.Event{good[0], good[2]} {
				// The id is the mixed record's own (content-derived, by
				// item index); the rest is the all-good request's event.
				got := ids(t, []json.RawMessage{evs[i].JSON})[0]
				if wantID := EventID(tc.mixed, evs[i].Item); got != wantID {
					t.Errorf("item %d: id %s, want EventID of the record's item %d = %s", evs[i].Item, got, evs[i].Item, wantID)
				}
				goodID := ids(t, []json.RawMessage{want.JSON})[0]
				if string(evs[i].JSON) != strings.Replace(string(want.JSON), goodID, got, 1) {
					t.Errorf("item %d: event\n%s\nwant the all-good event (but its id)\n%s", evs[i].Item, evs[i].JSON, want.JSON)
				}
			}
			// Converting the record again (redelivery, redrive) gives the
			// same events.
			again, _, err := reg.ConvertItems(record(tc.sig, tc.mixed))
			if err != nil || len(again) != len(evs) {
				t.Fatalf("again: %d events, %v", len(again), err)
			}
			for i := range evs {
				if string(again[i].JSON) != string(evs[i].JSON) || again[i].Item != evs[i].Item {
					t.Errorf("again: event %d differs:\n%s\n%s", i, again[i].JSON, evs[i].JSON)
				}
			}
			if len(failed) != 1 {
				t.Fatalf("failed items %v, want exactly item 1", failed)
			}
			f := failed[0]
			if f.Item != 1 || f.Position != tc.wantPos {
				t.Errorf("failed item %d at %q, want item 1 at %q", f.Item, f.Position, tc.wantPos)
			}
			for _, w := range tc.wantField {
				if !strings.Contains(f.Error(), w) {
					t.Errorf("item error %q lacks %q", f.Error(), w)
				}
			}
			// Convert stays all or nothing, with the record named.
			all, err := reg.Convert(record(tc.sig, tc.mixed))
			if err == nil {
				t.Fatalf("Convert accepted the mixed record: %d events", len(all))
			}
			for _, w := range append([]string{"record 2 of ingest/data/", tc.wantPos}, tc.wantField...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Convert error %q lacks %q", err, w)
				}
			}
		})
	}
}

func eventItems(evs []convert.Event) []int {
	var out []int
	for _, e := range evs {
		out = append(out, e.Item)
	}
	return out
}

// TestConvertItemsUndecodableRecord: a record that cannot be decoded is a
// whole-record error, not item errors.
func TestConvertItemsUndecodableRecord(t *testing.T) {
	for _, sig := range []format.SignalType{format.SignalLogs, format.SignalMetrics, format.SignalTraces} {
		evs, failed, err := registry(t, Config{}).ConvertItems(record(sig, []byte{0xff, 0xff}))
		if err == nil || !strings.Contains(err.Error(), "cannot decode OTLP") || len(evs) != 0 || len(failed) != 0 {
			t.Errorf("%s: events %d, failed %v, err %v; want only a decode error", sig, len(evs), failed, err)
		}
	}
}

// TestConvertItemsMatchesConvert: on records that convert whole, the
// item-by-item path gives Convert's bytes, and each event's Item is the
// item index its id is derived from (with the record bytes).
func TestConvertItemsMatchesConvert(t *testing.T) {
	for _, in := range []string{"logs.json", "metrics-sum.json", "traces.json"} {
		sig, data := loadRequest(t, in)
		reg := registry(t, Config{})
		rec := record(sig, data)
		want, err := reg.Convert(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, failed, err := reg.ConvertItems(rec)
		if err != nil || len(failed) != 0 || len(got) != len(want) {
			t.Fatalf("%s: %d events (want %d), failed %v, err %v", in, len(got), len(want), failed, err)
		}
		for i := range want {
			if string(got[i].JSON) != string(want[i]) {
				t.Errorf("%s event %d differs", in, i)
			}
			if id := ids(t, []json.RawMessage{got[i].JSON})[0]; id != EventID(rec.Data, got[i].Item) {
				t.Errorf("%s event %d: id %s is not EventID of its item %d", in, i, id, got[i].Item)
			}
		}
	}
}

// TestFixedConfigKeepsIDs: a record whose item 1 fails under one config
// (no subject) and converts under a fixed config (what `bucketq
// dead-letters redrive` does after the operator fixes the mapping) gives
// items 0 and 2 the same ids both times, and item 1 the id EventID gives
// its index: a failed item keeps its index, so ids do not shift, and a
// redriven item's id does not collide with its neighbours'.
func TestFixedConfigKeepsIDs(t *testing.T) {
	lr := func(ns uint64, kvs ...*commonpb.KeyValue) *logspb.LogRecord {
		return &logspb.LogRecord{TimeUnixNano: ns, Attributes: kvs}
	}
	data := logsRecord(t, lr(1, kv("subject", "a")), lr(2, kv("tenant", "b")), lr(3, kv("subject", "c")))
	rec := record(format.SignalLogs, data)
	broken, failed, err := registry(t, Config{}).ConvertItems(rec)
	if err != nil || len(failed) != 1 || failed[0].Item != 1 || len(broken) != 2 {
		t.Fatalf("default config: %d events, failed %v, err %v; want item 1 to fail", len(broken), failed, err)
	}
	fixed := Config{Logs: Signal{Mapping: Mapping{Subject: `string(attributes[?"subject"].orValue(attributes[?"tenant"].orValue("")))`}}}
	all, failed, err := registry(t, fixed).ConvertItems(rec)
	if err != nil || len(failed) != 0 || len(all) != 3 {
		t.Fatalf("fixed config: %d events, failed %v, err %v", len(all), failed, err)
	}
	idOf := func(ev convert.Event) string { return ids(t, []json.RawMessage{ev.JSON})[0] }
	for i, want := range []int{0, 2} {
		if broken[i].Item != want || idOf(broken[i]) != idOf(all[want]) || idOf(all[want]) != EventID(data, want) {
			t.Errorf("item %d: id %s under the default config, %s under the fixed one, want %s both", want, idOf(broken[i]), idOf(all[want]), EventID(data, want))
		}
	}
	if got := idOf(all[1]); got != EventID(data, 1) || got == idOf(all[0]) || got == idOf(all[2]) {
		t.Errorf("redriven item 1: id %s, want %s, distinct from items 0 and 2", got, EventID(data, 1))
	}
}
