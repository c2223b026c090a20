package consumer

import (
	"slices"
	"strings"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/convert/otlpconv"
	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
)

// otlpLogs is an OTLP logs export request with one log record per
// subject; "" gives a log record without a subject attribute, which the
// default conversion cannot map.
func otlpLogs(t *testing.T, subjects ...string) []byte {
	t.Helper()
	var recs []*logspb.LogRecord
	for i, s := range subjects {
		lr := &logspb.LogRecord{TimeUnixNano: uint64(1e18 + i)}
		if s != "" {
			lr.Attributes = []*commonpb.KeyValue{{Key: "subject", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}}}
		}
		recs = append(recs, lr)
	}
	b, err := proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: recs}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPartialRecordDeliversTheGoodItems: an OTLP request whose items
// partly fail conversion delivers the good items' events (with the ids
// they have when every item converts) and dead-letters the record once,
// listing only the failed items; buffer_entries_skipped{convert_error}
// counts the failed items. A record that cannot be decoded is still
// dead-lettered whole. The entry is dequeued.
func TestPartialRecordDeliversTheGoodItems(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	reg := convert.NewRegistry()
	if err := otlpconv.Register(reg, otlpconv.Config{}); err != nil {
		t.Fatal(err)
	}
	logsHeader := format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf)
	ingestMs := time.Now().Add(-time.Minute).UnixMilli()
	mixed := otlpLogs(t, "acme", "", "globex", "") // record 0: items 1 and 3 fail
	garbage := []byte{0xff, 0xff, 0xff}            // record 1: not a protobuf
	clean := otlpLogs(t, "initech", "umbrella")    // record 2
	seq, loc := h.put([][]byte{mixed, garbage, clean}, []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: ingestMs, Payload: logsHeader.Bytes()}})

	snk := h.httpSink("")
	c, err := New(h.bkt, h.q, reg, snk, h.config(nil), h.m, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := start(c)
	defer r.stop(t)
	waitFor(t, "queue drained", patience, func() bool { return h.queueLen() == 0 })

	// The events record 0 gives when every item of it converts (a config
	// that maps a subject for the failed items, as after a fix + redrive).
	fixed := convert.NewRegistry()
	if err := otlpconv.Register(fixed, otlpconv.Config{Logs: otlpconv.Signal{Mapping: otlpconv.Mapping{
		Subject: `string(attributes[?"subject"].orValue("fixed"))`}}}); err != nil {
		t.Fatal(err)
	}
	allGood, err := fixed.Convert(convert.Record{Location: loc, Sequence: seq, Index: 0, Header: logsHeader, IngestionTimeMs: ingestMs, Data: mixed})
	if err != nil {
		t.Fatal(err)
	}
	// Ids derive from the record's bytes and the item's index.
	want := []string{otlpconv.EventID(mixed, 0), otlpconv.EventID(mixed, 2), otlpconv.EventID(clean, 0), otlpconv.EventID(clean, 1)}
	if got := ids(h.om.Events()); !slices.Equal(got, want) {
		t.Fatalf("delivered ids %v, want %v", got, want)
	}
	var subjects []string
	for _, ev := range h.om.Events() {
		subjects = append(subjects, ev.Subject)
	}
	if !slices.Equal(subjects, []string{"acme", "globex", "initech", "umbrella"}) {
		t.Fatalf("delivered subjects %v", subjects)
	}
	for i, ev := range h.om.Events()[:2] {
		if want := allGood[2*i]; string(ev.Raw) != string(want) {
			t.Errorf("event %d\n%s\nwant the event of the all-good request\n%s", i, ev.Raw, want)
		}
	}

	dls := h.deadLetters()
	if len(dls) != 2 {
		t.Fatalf("dead letters %v, want one per failing record", keys(dls))
	}
	var partial, whole *deadletter.Letter
	for name, dl := range dls {
		switch {
		case strings.HasSuffix(name, "/convert-r000000.json"):
			partial = &dl
		case strings.HasSuffix(name, "/convert-r000001.json"):
			whole = &dl
		}
	}
	if partial == nil || whole == nil {
		t.Fatalf("dead letters %v, want convert-r000000.json and convert-r000001.json", keys(dls))
	}
	if partial.Reason != "convert_error" || *partial.RecordIndex != 0 || len(partial.Records) != 1 || string(partial.Records[0]) != string(mixed) ||
		partial.Header != "01020100" || partial.IngestionTimeMs != ingestMs {
		t.Fatalf("partial dead letter does not hold the raw record to redrive: %+v", partial)
	}
	if len(partial.FailedItems) != 2 {
		t.Fatalf("failed items %+v, want items 1 and 3", partial.FailedItems)
	}
	for k, item := range []int{1, 3} {
		f := partial.FailedItems[k]
		if f.Item != item || f.Position != "resource 0 scope 0 log record "+string(rune('0'+item)) || !strings.Contains(f.Error, "logs.subject") {
			t.Errorf("failed item %d: %+v, want item %d naming its position and logs.subject", k, f, item)
		}
	}
	if !strings.Contains(partial.Error, "2 items cannot be converted") {
		t.Errorf("partial dead letter error %q", partial.Error)
	}
	if len(whole.FailedItems) != 0 || !strings.Contains(whole.Error, "cannot decode OTLP") || string(whole.Records[0]) != string(garbage) {
		t.Fatalf("whole-record dead letter %+v", whole)
	}
	// 2 failed items + 1 undecodable record.
	if v := value(h.m.EntriesSkipped.WithLabelValues("convert_error")); v != 3 {
		t.Fatalf("buffer_entries_skipped{convert_error} = %v, want 3", v)
	}
	if v := value(h.m.EventsConverted.WithLabelValues("logs")); v != 4 {
		t.Fatalf("events converted %v, want 4", v)
	}
}

func keys(m map[string]deadletter.Letter) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
