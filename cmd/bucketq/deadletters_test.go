package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thanos-io/objstore"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
)

// dlPatience bounds every wait of these tests; waits end as soon as their
// condition holds, so it only matters when a test fails.
const dlPatience = 60 * time.Second

// dlEnv is a directory bucket, its queue and a fake OpenMeter.
type dlEnv struct {
	t   *testing.T
	dir string
	bkt objstore.Bucket
	q   *manifest.Queue
	om  *openmetertest.Server
	n   int
}

func newDLEnv(t *testing.T) *dlEnv {
	t.Helper()
	dir := t.TempDir()
	bkt, store, err := bucket.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	om := openmetertest.New(openmetertest.Options{})
	t.Cleanup(om.Close)
	return &dlEnv{t: t, dir: dir, bkt: bkt, q: manifest.NewQueue(store, "ingest/manifest", manifest.Options{}), om: om}
}

// put uploads data as a batch (nil: none) and queues it with md.
func (e *dlEnv) put(data []byte, md []manifest.Metadata) (uint64, string) {
	e.t.Helper()
	e.n++
	loc := fmt.Sprintf("ingest/data/%06d.batch", e.n)
	if data != nil {
		if err := e.bkt.Upload(context.Background(), loc, bytes.NewReader(data)); err != nil {
			e.t.Fatal(err)
		}
	}
	seqs, err := e.q.Append(context.Background(), manifest.NewEntry{Location: loc, Metadata: md})
	if err != nil {
		e.t.Fatal(err)
	}
	return seqs[0], loc
}

func (e *dlEnv) putRecords(h format.Header, ingestMs int64, recs ...[]byte) (uint64, string) {
	e.t.Helper()
	data, err := format.EncodeBatch(format.CompressionZstd, recs)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.put(data, []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: ingestMs, Payload: h.Bytes()}})
}

// consume runs `bucketq consume` (extra args appended) until the queue is
// empty, then stops it.
func (e *dlEnv) consume(extra ...string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	args := append([]string{"consume", "--bucket-dir", e.dir, "--listen=", "--sink", e.om.Endpoint,
		"--poll-interval", "20ms", "--dequeue-interval", "20ms", "--gc-interval", "1h"}, extra...)
	go func() { done <- runMain(ctx, args, &bytes.Buffer{}, &stderr, func(string) string { return "" }) }()
	deadline := time.Now().Add(dlPatience)
	for {
		m, err := e.q.Read(context.Background())
		if err == nil && len(m.Entries) == 0 {
			break
		}
		select {
		case code := <-done:
			e.t.Fatalf("consume exited with %d:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("queue not drained after %v:\n%s", dlPatience, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			e.t.Fatalf("consume exit %d:\n%s", code, stderr.String())
		}
	case <-time.After(dlPatience):
		e.t.Fatal("consume did not stop")
	}
}

// deadLetters runs `bucketq dead-letters ARGS` on the env's bucket and sink.
func (e *dlEnv) deadLetters(args ...string) (int, string, string) {
	e.t.Helper()
	return run(e.t, nil, append(append([]string{"dead-letters"}, args...), "--bucket-dir", e.dir, "--sink", e.om.Endpoint)...)
}

// objects lists the dead-letter prefix (every object, batch copies too).
func (e *dlEnv) objects() []string {
	e.t.Helper()
	var out []string
	err := e.bkt.Iter(context.Background(), "ingest/dead-letter/", func(name string) error {
		out = append(out, name)
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		e.t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func (e *dlEnv) readDL(name string) deadletter.Letter {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, filepath.FromSlash(name)))
	if err != nil {
		e.t.Fatal(err)
	}
	var dl deadletter.Letter
	if err := json.Unmarshal(b, &dl); err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	return dl
}

func ceEvent(id string, poison bool) []byte {
	return []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"dl-test","type":"usage","subject":"cust","time":"2025-01-01T00:00:00Z","data":{"poison":%t}}`, id, poison))
}

// accepted returns the accepted events by id (the last copy).
func accepted(om *openmetertest.Server) map[string]openmetertest.Event {
	out := map[string]openmetertest.Event{}
	for _, ev := range om.Events() {
		out[ev.ID] = ev
	}
	return out
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return c.String()
}

// TestRedrivePoisonEvents: a consumer whose sink rejects two events
// dead-letters them; a corrupt batch is dead-lettered too. list shows them,
// a dry run changes nothing, a redrive while the fake still rejects one
// event delivers the other with its id and deletes only its object (exit
// 1), and a last redrive after the fake stops rejecting (and after a 503)
// delivers the rest; the batch_corrupt marker is skipped throughout.
func TestRedrivePoisonEvents(t *testing.T) {
	e := newDLEnv(t)
	e.om.SetPoison(openmetertest.PoisonFlag)
	now := time.Now().UnixMilli()
	e.putRecords(format.EventsHeader, now, ceEvent("ok1", false), ceEvent("p1", true), ceEvent("ok2", false))
	e.put([]byte("this is not a batch"), []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: now, Payload: format.EventsHeader.Bytes()}})
	e.putRecords(format.EventsHeader, now, ceEvent("p2", true))
	e.consume()

	if got := accepted(e.om); len(got) != 2 || got["ok1"].ID == "" || got["ok2"].ID == "" {
		t.Fatalf("consumer delivered %v", got)
	}
	objs := e.objects()
	var jsons []string
	for _, o := range objs {
		if strings.HasSuffix(o, ".json") {
			jsons = append(jsons, o)
		}
	}
	if len(jsons) != 3 || len(objs) != 4 {
		t.Fatalf("dead-letter objects %v", objs)
	}
	p1Name, p2Name, corruptName := jsons[0], jsons[2], jsons[1]
	if !strings.HasSuffix(p1Name, "poison-r000001-e0000.json") || !strings.HasSuffix(corruptName, "batch_corrupt.json") || !strings.HasSuffix(p2Name, "poison-r000000-e0000.json") {
		t.Fatalf("dead-letter names %v", jsons)
	}
	if dl := e.readDL(p1Name); dl.IngestionTimeMs != now || dl.Header != "01040200" {
		t.Fatalf("poison dead letter lacks ingestion time or header: %+v", dl)
	}

	// list: one line per dead letter and the count by reason.
	code, out, errOut := e.deadLetters("list")
	if code != 0 {
		t.Fatalf("list exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "NAME") ||
		!strings.Contains(lines[4], "3 dead letters under ingest/dead-letter/: poison_event 2, batch_corrupt 1") {
		t.Fatalf("list output:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[0] != p1Name || f[1] != "poison_event" || f[2] != "ingest/data/000001.batch" || f[3] != "0" || f[4] != "1" || f[5] != "0" || f[6] != "400" {
		t.Fatalf("list line of p1: %q", lines[1])
	}
	code, out, _ = e.deadLetters("list", "--reason", "batch_corrupt", "--json")
	var doc struct {
		Total       int            `json:"total"`
		ByReason    map[string]int `json:"by_reason"`
		DeadLetters []listEntry    `json:"dead_letters"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.Total != 1 || doc.ByReason["batch_corrupt"] != 1 ||
		doc.DeadLetters[0].Name != corruptName || doc.DeadLetters[0].Sequence != 1 {
		t.Fatalf("list --json: exit %d %s", code, out)
	}
	code, out, _ = e.deadLetters("show", strings.TrimPrefix(p1Name, "ingest/dead-letter/"))
	if code != 0 || !strings.Contains(out, `"reason": "poison_event"`) || !strings.Contains(out, `"id": "p1"`) {
		t.Fatalf("show: exit %d\n%s", code, out)
	}

	// Dry run: prints the events, sends and deletes nothing.
	before, reqs := e.om.Accepted(), e.om.RequestsByStatus()
	code, out, _ = e.deadLetters("redrive", "--dry-run")
	if code != 0 || !strings.Contains(out, `"id":"p1"`) || !strings.Contains(out, "would re-drive 2, would partly re-drive 0, still refused 0, skipped 1") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if e.om.Accepted() != before || fmt.Sprint(e.om.RequestsByStatus()) != fmt.Sprint(reqs) || len(e.objects()) != 4 {
		t.Fatalf("dry run changed something: accepted %d→%d, objects %v", before, e.om.Accepted(), e.objects())
	}

	// The fake still rejects p2: p1 is delivered and deleted, p2 stays.
	e.om.SetPoison(func(ev openmetertest.Event) bool { return ev.ID == "p2" })
	code, out, errOut = e.deadLetters("redrive")
	if code != 1 || !strings.Contains(out, "re-driven 1, partly re-driven 0, still refused 1, skipped 1") ||
		!strings.Contains(out, "refused    "+p2Name) || !strings.Contains(out, "skipped    "+corruptName) ||
		!strings.Contains(errOut, "1 dead letters still refused") {
		t.Fatalf("redrive with a refusal: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	got := accepted(e.om)
	if compact(t, got["p1"].Raw) != string(ceEvent("p1", true)) || got["p1"].Source != "dl-test" {
		t.Fatalf("p1 arrived as %s", got["p1"].Raw)
	}
	if objs := e.objects(); slices.Contains(objs, p1Name) || !slices.Contains(objs, p2Name) || !slices.Contains(objs, corruptName) {
		t.Fatalf("objects after the first redrive %v", objs)
	}

	// The fake accepts everything (after one 503): p2 arrives, its object goes.
	e.om.SetPoison(nil)
	e.om.FailNext(1, 503, "")
	code, out, errOut = e.deadLetters("redrive")
	if code != 0 || !strings.Contains(out, "re-driven 1, partly re-driven 0, still refused 0, skipped 1") || !strings.Contains(errOut, "retrying") {
		t.Fatalf("second redrive: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if got := accepted(e.om); compact(t, got["p2"].Raw) != string(ceEvent("p2", true)) {
		t.Fatalf("p2 arrived as %s", got["p2"].Raw)
	}
	if objs := e.objects(); len(objs) != 2 || !slices.Contains(objs, corruptName) {
		t.Fatalf("objects after the second redrive %v (want only the batch_corrupt marker and copy)", objs)
	}
	if e.om.Duplicates() != 0 {
		t.Fatalf("%d duplicates", e.om.Duplicates())
	}
}

// logsRequest is an OTLP logs export request whose records carry the
// attribute customer but neither subject nor customer.id, and no time.
func logsRequest(t *testing.T, customers ...string) []byte {
	t.Helper()
	var recs []*logspb.LogRecord
	for _, c := range customers {
		recs = append(recs, &logspb.LogRecord{
			Body:       &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "call"}},
			Attributes: []*commonpb.KeyValue{{Key: "customer", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: c}}}},
		})
	}
	b, err := proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: recs}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedriveConvertErrorsAfterConfigFix: OTLP records the default
// conversion cannot map (no subject) are dead-lettered; a redrive with a
// fixed conversion config delivers exactly the events the consumer would
// have produced with it (ids and the ingestion-time fallback included),
// a redrive with the old config refuses them, and a dry run sends nothing.
func TestRedriveConvertErrorsAfterConfigFix(t *testing.T) {
	e := newDLEnv(t)
	logsHeader := format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf)
	ingestMs := int64(1735732800250)
	recs := [][]byte{logsRequest(t, "c1", "c2"), logsRequest(t, "c3")}
	e.putRecords(format.EventsHeader, ingestMs, ceEvent("before", false))
	seq, loc := e.putRecords(logsHeader, ingestMs, recs...)
	e.consume()
	objs := e.objects()
	if len(objs) != 2 || !strings.HasSuffix(objs[0], "convert-r000000.json") || !strings.HasSuffix(objs[1], "convert-r000001.json") {
		t.Fatalf("dead letters %v", objs)
	}
	if dl := e.readDL(objs[1]); dl.Reason != "convert_error" || dl.Header != "01020100" || dl.IngestionTimeMs != ingestMs {
		t.Fatalf("convert_error dead letter lacks header or ingestion time: %+v", dl)
	}

	fixed := filepath.Join(e.dir, "fixed.yaml")
	fixedYAML := "conversion:\n  logs:\n    subject: attributes.customer\n"
	if err := os.WriteFile(fixed, []byte(fixedYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	before := e.om.Accepted()

	// Same (broken) config: still refused by the converter, nothing deleted.
	code, out, _ := e.deadLetters("redrive")
	if code != 1 || !strings.Contains(out, "re-driven 0, partly re-driven 0, still refused 2, skipped 0") || !strings.Contains(out, "conversion:") {
		t.Fatalf("redrive with the old config: exit %d\n%s", code, out)
	}
	// Dry run with the fix: prints the events, changes nothing.
	code, out, _ = e.deadLetters("redrive", "--config", fixed, "--dry-run", "--reason", "convert_error")
	if code != 0 || !strings.Contains(out, "would re-drive 2, would partly re-drive 0, still refused 0, skipped 0") || !strings.Contains(out, `"subject":"c3"`) {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if e.om.Accepted() != before || len(e.objects()) != 2 {
		t.Fatalf("dry run sent %d events or deleted objects %v", e.om.Accepted()-before, e.objects())
	}

	// One object per round: the rounds report progress.
	code, out, errOut := e.deadLetters("redrive", "--config", fixed)
	if code != 0 || !strings.Contains(out, "re-driven 2, partly re-driven 0, still refused 0, skipped 0") {
		t.Fatalf("redrive with the fix: exit %d\n%s\n%s", code, out, errOut)
	}
	if objs := e.objects(); len(objs) != 0 {
		t.Fatalf("dead letters left %v", objs)
	}

	// What the consumer would have sent with the fixed config.
	conv, err := newConverter(&config.Config{Conversion: []byte("logs:\n  subject: attributes.customer\n")})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, rec := range recs {
		evs, err := conv.Convert(convert.Record{Location: loc, Sequence: seq, Index: i, Header: logsHeader, IngestionTimeMs: ingestMs, Data: rec})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			want = append(want, compact(t, ev))
		}
	}
	var gotEvs []string
	for _, ev := range e.om.Events()[before:] {
		gotEvs = append(gotEvs, compact(t, ev.Raw))
	}
	if len(want) != 3 || !slices.Equal(gotEvs, want) {
		t.Fatalf("re-driven events\n got %v\nwant %v", gotEvs, want)
	}
	if !strings.Contains(want[0], `"time":"2025-01-01T12:00:00.25Z"`) {
		t.Fatalf("the expected event does not use the ingestion time: %s", want[0])
	}
}

// TestRedriveStopsOnSinkFailures: a sink that answers 5xx for ever stops
// the redrive at --timeout, and one that answers 404 (a wrong URL) stops it
// at once; both exit 1 and keep the dead letter.
func TestRedriveStopsOnSinkFailures(t *testing.T) {
	e := newDLEnv(t)
	e.om.SetPoison(openmetertest.PoisonFlag)
	e.putRecords(format.EventsHeader, time.Now().UnixMilli(), ceEvent("p", true))
	e.consume()
	if len(e.objects()) != 1 {
		t.Fatalf("dead letters %v", e.objects())
	}
	e.om.SetPoison(nil)

	e.om.FailNext(-1, 500, "")
	code, out, errOut := e.deadLetters("redrive", "--timeout", "1s")
	if code != 1 || !strings.Contains(errOut, "stopped after --timeout 1s") || !strings.Contains(out, "not finished 1") {
		t.Fatalf("redrive against a failing sink: exit %d\n%s\n%s", code, out, errOut)
	}
	e.om.ClearFaults()
	e.om.FailNext(1, 404, "")
	code, out, errOut = e.deadLetters("redrive")
	if code != 1 || !strings.Contains(errOut, "the sink refuses requests") {
		t.Fatalf("redrive against a 404: exit %d\n%s\n%s", code, out, errOut)
	}
	if len(e.objects()) != 1 || e.om.Accepted() != 0 {
		t.Fatalf("objects %v, accepted %d", e.objects(), e.om.Accepted())
	}
}

func TestDeadLettersUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dead-letters"}, `want "list", "show NAME" or "redrive"`},
		{[]string{"deadletters", "purge"}, `unknown action "purge"`},
		{[]string{"dead-letters", "show"}, "want exactly one NAME"},
		{[]string{"dead-letters", "list", "--reason", "bogus"}, `--reason "bogus"`},
		{[]string{"dead-letters", "list", "--dry-run"}, "--dry-run applies to dead-letters redrive"},
		{[]string{"dead-letters", "redrive", "--json"}, "--json applies to dead-letters list"},
		{[]string{"dead-letters", "redrive", "--bucket-dir", dir}, "the sink is stdout"},
		{[]string{"dead-letters", "list", "--partition", "x"}, `--partition "x": want a partition number from 0 to 9999`},
		{[]string{"dead-letters", "list", "--partition", "-1"}, `--partition "-1": want a partition number`},
		{[]string{"dead-letters", "list", "--partition", "10000"}, `--partition "10000": want a partition number`},
		{[]string{"dead-letters", "list", "--partition", "99999999999999999999"}, `--partition "99999999999999999999": want a partition number`},
		{[]string{"replay", "--partition", "two", "--bucket-dir", dir}, `replay: --partition "two": want a partition number`},
	} {
		code, _, errOut := run(t, nil, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q (want 2 and %q)", tc.args, code, errOut, tc.want)
		}
	}
}

// TestRedrivePartialRecordSendsOnlyTheFailedItems: the consumer delivers
// the items of an OTLP request its config can map and dead-letters the
// record listing the one it cannot; a redrive with the same config keeps
// the dead letter, and one with a fixed config sends exactly the failed
// item's event, byte for byte (id included) what the consumer would have
// sent with that config, without resending the delivered items.
func TestRedrivePartialRecordSendsOnlyTheFailedItems(t *testing.T) {
	e := newDLEnv(t)
	logsHeader := format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf)
	ingestMs := int64(1735732800250)
	attr := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	rec, err := proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
		{TimeUnixNano: 1e18, Attributes: []*commonpb.KeyValue{attr("customer", "c1")}},
		{TimeUnixNano: 2e18, Attributes: []*commonpb.KeyValue{attr("tenant", "t2")}},
		{TimeUnixNano: 3e18, Attributes: []*commonpb.KeyValue{attr("customer", "c3")}},
	}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	seq, loc := e.putRecords(logsHeader, ingestMs, rec)
	writeConfig := func(name, subject string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte("conversion:\n  logs:\n    subject: "+subject+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldSubject := "attributes.customer"
	newSubject := `"has(attributes.customer) ? attributes.customer : attributes.tenant"`
	old, fixed := writeConfig("old.yaml", oldSubject), writeConfig("fixed.yaml", newSubject)

	e.consume("--config", old)
	if got := accepted(e.om); len(got) != 2 {
		t.Fatalf("consumer delivered %d events, want the 2 mappable items", len(got))
	}
	objs := e.objects()
	if len(objs) != 1 || !strings.HasSuffix(objs[0], "convert-r000000.json") {
		t.Fatalf("dead letters %v", objs)
	}
	if dl := e.readDL(objs[0]); len(dl.FailedItems) != 1 || dl.FailedItems[0].Item != 1 {
		t.Fatalf("dead letter failed items %+v, want item 1", dl.FailedItems)
	}
	before := e.om.Accepted()

	code, out, _ := e.deadLetters("redrive", "--config", old)
	if code != 1 || !strings.Contains(out, "re-driven 0, partly re-driven 0, still refused 1") || !strings.Contains(out, "log record 1") {
		t.Fatalf("redrive with the old config: exit %d\n%s", code, out)
	}
	code, out, errOut := e.deadLetters("redrive", "--config", fixed)
	if code != 0 || !strings.Contains(out, "re-driven 1, partly re-driven 0, still refused 0, skipped 0") || !strings.Contains(out, ": 1 events") {
		t.Fatalf("redrive with the fix: exit %d\n%s\n%s", code, out, errOut)
	}
	if objs := e.objects(); len(objs) != 0 {
		t.Fatalf("dead letters left %v", objs)
	}
	conv, err := newConverter(&config.Config{Conversion: []byte("logs:\n  subject: " + newSubject + "\n")})
	if err != nil {
		t.Fatal(err)
	}
	all, err := conv.Convert(convert.Record{Location: loc, Sequence: seq, Index: 0, Header: logsHeader, IngestionTimeMs: ingestMs, Data: rec})
	if err != nil || len(all) != 3 {
		t.Fatalf("the fixed config converts %d events, %v", len(all), err)
	}
	sent := e.om.Events()[before:]
	if len(sent) != 1 || compact(t, sent[0].Raw) != compact(t, all[1]) {
		t.Fatalf("re-driven %d events %v\nwant only the failed item's event %s", len(sent), sent, all[1])
	}
	if sent[0].Subject != "t2" || e.om.Duplicates() != 0 || e.om.Distinct() != 3 {
		t.Fatalf("subject %q, duplicates %d, distinct %d", sent[0].Subject, e.om.Duplicates(), e.om.Distinct())
	}
}

// helpFlags returns the first word of each line of the Flags section of
// `bucketq help CMD`: the flags (and file-only keys) the command takes.
func helpFlags(t *testing.T, cmd string) []string {
	t.Helper()
	code, out, errOut := run(t, nil, "help", cmd)
	if code != 0 {
		t.Fatalf("help %s: exit %d %s", cmd, code, errOut)
	}
	_, section, ok := strings.Cut(out, "\nFlags:\n")
	if !ok {
		t.Fatalf("help %s has no Flags section:\n%s", cmd, out)
	}
	section, _, _ = strings.Cut(section, "\n\n")
	var flags []string
	for _, line := range strings.Split(section, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			flags = append(flags, f[0])
		}
	}
	return flags
}

// TestDeadLettersTakesOnlyItsFlags: dead-letters' help lists exactly the
// options it reads, and the consumer-only flags it used to accept and
// ignore are neither listed nor accepted (exit 2 naming the flag).
func TestDeadLettersTakesOnlyItsFlags(t *testing.T) {
	got := helpFlags(t, "dead-letters")
	want := []string{"--config", "--bucket-dir", "object_store:", "--partitions", "--dead-letter-prefix", "--sink", "--sink-token",
		"--sink-batch-size", "--sink-concurrency", "conversion:", "--log-level", "--log-format", "--reason", "--json", "--dry-run", "--timeout", "--partition"}
	if !slices.Equal(got, want) {
		t.Errorf("dead-letters help lists\n %q\nwant\n %q", got, want)
	}
	consumeFlags := helpFlags(t, "consume")
	dir := t.TempDir()
	for _, tc := range []struct{ flag, value string }{
		{"listen", "127.0.0.1:0"},
		{"prefetch", "2"},
		{"poll-interval", "1s"},
		{"dequeue-interval", "1s"},
		{"gc-interval", "1m"},
		{"gc-grace-period", "1m"},
		{"max-consecutive-poison", "3"},
		{"shutdown-timeout", "1s"},
		{"memory-limit", "1GiB"},
		{"manifest-path", "q/manifest"},
		{"data-prefix", "q/data"},
	} {
		if !slices.Contains(consumeFlags, "--"+tc.flag) {
			t.Errorf("--%s is not a consume flag: the case tests nothing", tc.flag)
		}
		if slices.Contains(got, "--"+tc.flag) {
			t.Errorf("dead-letters help lists --%s, which it ignores", tc.flag)
		}
		for _, sub := range []string{"list", "redrive"} {
			code, _, errOut := run(t, nil, "dead-letters", sub, "--bucket-dir", dir, "--sink", "file:"+filepath.Join(dir, "out"), "--"+tc.flag, tc.value)
			wantErr := "bucketq: dead-letters: flag provided but not defined: -" + tc.flag
			if code != 2 || !strings.Contains(errOut, wantErr) {
				t.Errorf("dead-letters %s --%s %s: exit %d, stderr %q (want 2 and %q)", sub, tc.flag, tc.value, code, errOut, wantErr)
			}
		}
	}
	// Every flag it lists is accepted.
	code, out, errOut := run(t, nil, "dead-letters", "list", "--bucket-dir", dir, "--dead-letter-prefix", "x/dl",
		"--sink", "http://127.0.0.1:1/api/v1/events", "--sink-token", "t", "--sink-batch-size", "7",
		"--log-level", "debug", "--log-format", "json", "--reason", deadletter.PoisonEvent, "--json")
	if code != 0 || !strings.Contains(out, `"total":0`) {
		t.Errorf("dead-letters list with its own flags: exit %d %s %s", code, out, errOut)
	}
}

// TestDeadLettersReadsAConfigFileSharedWithConsume: one config file serves
// consume (which dead-letters a corrupt batch under the file's
// dead_letter_prefix) and dead-letters, which ignores the consumer's and
// producer's keys in it and finds the dead letter under that prefix.
func TestDeadLettersReadsAConfigFileSharedWithConsume(t *testing.T) {
	e := newDLEnv(t)
	shared := filepath.Join(t.TempDir(), "bucketq.yaml")
	text := strings.Join([]string{
		"manifest_path: ingest/manifest",
		"data_prefix: ingest/data",
		"dead_letter_prefix: shared/dead",
		"listen: ''",
		"prefetch: 2",
		"poll_interval: 20ms",
		"dequeue_interval: 20ms",
		"gc_interval: 1h",
		"gc_grace_period: 20m",
		"max_consecutive_poison: 5",
		"memory_limit: 0",
		"shutdown_timeout: 5s",
		"sink_batch_size: 50",
		"flush_interval: 1s",
		"tokens: [ingest-secret]",
		"otlp_grpc: ''",
		"log_level: warn",
	}, "\n") + "\n"
	if err := os.WriteFile(shared, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	e.put([]byte("this is not a batch"), []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: time.Now().UnixMilli(), Payload: format.EventsHeader.Bytes()}})
	e.consume("--config", shared)

	code, out, errOut := e.deadLetters("list", "--config", shared)
	if code != 0 || !strings.Contains(out, "1 dead letters under shared/dead/: batch_corrupt 1") {
		t.Fatalf("dead-letters list with the consumer's config file: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = e.deadLetters("redrive", "--config", shared, "--dry-run")
	if code != 0 {
		t.Fatalf("dead-letters redrive --dry-run with the consumer's config file: exit %d\n%s\n%s", code, out, errOut)
	}
}

// partialEnv dead-letters one OTLP logs record of four items with the
// config subject attributes.customer: items 0 and 3 (customer) are
// delivered, items 1 (tenant only) and 2 (project only) are listed in the
// dead letter's failed_items.
type partialEnv struct {
	*dlEnv
	rec      []byte
	seq      uint64
	loc      string
	header   format.Header
	ingestMs int64
	name     string // the dead letter
}

func newPartialEnv(t *testing.T) *partialEnv {
	t.Helper()
	e := &partialEnv{dlEnv: newDLEnv(t), header: format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf), ingestMs: 1735732800250}
	attr := func(k, v string) []*commonpb.KeyValue {
		return []*commonpb.KeyValue{{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}}
	}
	var err error
	e.rec, err = proto.Marshal(&collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
		{TimeUnixNano: 1e18, Attributes: attr("customer", "c0")},
		{TimeUnixNano: 2e18, Attributes: attr("tenant", "t1")},
		{TimeUnixNano: 3e18, Attributes: attr("project", "p2")},
		{TimeUnixNano: 4e18, Attributes: attr("customer", "c3")},
	}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	e.seq, e.loc = e.putRecords(e.header, e.ingestMs, e.rec)
	e.consume("--config", e.config("old.yaml", "attributes.customer"))
	if got := accepted(e.om); len(got) != 2 {
		t.Fatalf("consumer delivered %d events, want the 2 mappable items", len(got))
	}
	objs := e.objects()
	if len(objs) != 1 || !strings.HasSuffix(objs[0], "convert-r000000.json") {
		t.Fatalf("dead letters %v", objs)
	}
	e.name = objs[0]
	if dl := e.readDL(e.name); len(dl.FailedItems) != 2 || dl.FailedItems[0].Item != 1 || dl.FailedItems[1].Item != 2 {
		t.Fatalf("dead letter failed items %+v, want items 1 and 2", dl.FailedItems)
	}
	return e
}

// Subjects: the first maps tenants too (item 1), the second projects too.
const (
	subjectTenants  = `"has(attributes.customer) ? attributes.customer : attributes.tenant"`
	subjectAllItems = `"has(attributes.customer) ? attributes.customer : has(attributes.tenant) ? attributes.tenant : attributes.project"`
)

// config writes a config file whose logs subject is subject.
func (e *partialEnv) config(name, subject string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte("conversion:\n  logs:\n    subject: "+subject+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// want is the event of item i as the consumer converts the record with
// subject, compacted.
func (e *partialEnv) want(subject string, i int) string {
	e.t.Helper()
	conv, err := newConverter(&config.Config{Conversion: []byte("logs:\n  subject: " + subject + "\n")})
	if err != nil {
		e.t.Fatal(err)
	}
	evs, failed, err := convert.ConvertItems(conv, convert.Record{Location: e.loc, Sequence: e.seq, Index: 0, Header: e.header, IngestionTimeMs: e.ingestMs, Data: e.rec})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Item == i {
			return compact(e.t, ev.JSON)
		}
	}
	e.t.Fatalf("subject %s gives no event for item %d (failed %v)", subject, i, failed)
	return ""
}

// sentSince is the events the fake accepted after the first n, compacted.
func (e *partialEnv) sentSince(n int) []string {
	var out []string
	for _, ev := range e.om.Events()[n:] {
		out = append(out, compact(e.t, ev.Raw))
	}
	return out
}

func (e *partialEnv) rawDL() []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, filepath.FromSlash(e.name)))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// TestRedrivePartlyFixedRecordKeepsOnlyTheItemsThatStillFail: a config
// fix that maps one of a dead letter's two failed items sends exactly that
// item's event (byte for byte the consumer's with that config), rewrites
// the object in place listing only the other item, and exits 1; a dry run
// and a redrive that can add nothing change nothing; a full fix sends the
// last event and deletes the object. No event is sent twice.
func TestRedrivePartlyFixedRecordKeepsOnlyTheItemsThatStillFail(t *testing.T) {
	e := newPartialEnv(t)
	partFix, fullFix := e.config("part.yaml", subjectTenants), e.config("full.yaml", subjectAllItems)
	orig := e.rawDL()
	before := e.om.Accepted()

	// Dry run: prints the one event it would send, changes nothing.
	code, out, _ := e.deadLetters("redrive", "--config", partFix, "--dry-run")
	if code != 1 || !strings.Contains(out, "would re-drive 0, would partly re-drive 1, still refused 0, skipped 0") ||
		!strings.Contains(out, "would send "+e.name+": 1 events of 2 listed items; 1 still cannot be converted") ||
		!strings.Contains(out, `"subject":"t1"`) || strings.Contains(out, `"subject":"c0"`) {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if e.om.Accepted() != before || !bytes.Equal(e.rawDL(), orig) {
		t.Fatalf("dry run sent %d events or changed the dead letter", e.om.Accepted()-before)
	}

	// The part fix: item 1's event is sent, the object lists only item 2.
	code, out, errOut := e.deadLetters("redrive", "--config", partFix)
	if code != 1 || !strings.Contains(out, "re-driven 0, partly re-driven 1, still refused 0, skipped 0") ||
		!strings.Contains(out, "partly     "+e.name+": 1 events; 1 items still fail") ||
		!strings.Contains(errOut, "1 partly re-driven") {
		t.Fatalf("redrive with the part fix: exit %d\n%s\n%s", code, out, errOut)
	}
	if got, want := e.sentSince(before), []string{e.want(subjectTenants, 1)}; !slices.Equal(got, want) {
		t.Fatalf("re-driven events\n got %v\nwant %v", got, want)
	}
	if objs := e.objects(); len(objs) != 1 || objs[0] != e.name {
		t.Fatalf("dead letters after the part fix %v, want %s rewritten in place", objs, e.name)
	}
	dl, old := e.readDL(e.name), deadletter.Letter{}
	if err := json.Unmarshal(orig, &old); err != nil {
		t.Fatal(err)
	}
	if len(dl.FailedItems) != 1 || dl.FailedItems[0].Item != 2 || !strings.Contains(dl.FailedItems[0].Position, "log record 2") ||
		!strings.Contains(dl.FailedItems[0].Error, "subject") {
		t.Fatalf("rewritten failed items %+v, want only item 2 with the current config's error", dl.FailedItems)
	}
	if !strings.Contains(dl.Error, "1 items still cannot be delivered") || !strings.Contains(dl.Error, "delivered 1 other listed items") {
		t.Fatalf("rewritten error %q", dl.Error)
	}
	if !slices.EqualFunc(dl.Records, old.Records, bytes.Equal) || dl.Header != old.Header || dl.IngestionTimeMs != old.IngestionTimeMs ||
		dl.Sequence != old.Sequence || dl.Location != old.Location || *dl.RecordIndex != *old.RecordIndex || !dl.DeadLettered.Equal(old.DeadLettered) {
		t.Fatalf("the rewrite changed more than the failed items:\n%+v\n%+v", dl, old)
	}

	// The part fix again adds nothing: refused, object untouched, no event.
	rewritten, mid := e.rawDL(), e.om.Accepted()
	code, out, _ = e.deadLetters("redrive", "--config", partFix)
	if code != 1 || !strings.Contains(out, "re-driven 0, partly re-driven 0, still refused 1, skipped 0") || !strings.Contains(out, "log record 2") {
		t.Fatalf("second redrive with the part fix: exit %d\n%s", code, out)
	}
	if e.om.Accepted() != mid || !bytes.Equal(e.rawDL(), rewritten) {
		t.Fatalf("a redrive that can deliver nothing sent %d events or rewrote the object", e.om.Accepted()-mid)
	}

	// The full fix: item 2's event is sent, the object deleted.
	code, out, errOut = e.deadLetters("redrive", "--config", fullFix)
	if code != 0 || !strings.Contains(out, "re-driven 1, partly re-driven 0, still refused 0, skipped 0") {
		t.Fatalf("redrive with the full fix: exit %d\n%s\n%s", code, out, errOut)
	}
	if got, want := e.sentSince(mid), []string{e.want(subjectAllItems, 2)}; !slices.Equal(got, want) {
		t.Fatalf("re-driven events\n got %v\nwant %v", got, want)
	}
	if objs := e.objects(); len(objs) != 0 {
		t.Fatalf("dead letters left %v", objs)
	}
	if e.om.Duplicates() != 0 || e.om.Distinct() != 4 {
		t.Fatalf("duplicates %d, distinct %d (want 0 and the record's 4 items)", e.om.Duplicates(), e.om.Distinct())
	}
}

// TestRedrivePartialKeepsItemsTheSinkRefuses: when both listed items
// convert but the sink refuses (400) one item's event, the other's is
// delivered and the object is rewritten listing the refused item with the
// sink's answer; once the sink accepts it, the object is deleted.
func TestRedrivePartialKeepsItemsTheSinkRefuses(t *testing.T) {
	e := newPartialEnv(t)
	fullFix := e.config("full.yaml", subjectAllItems)
	before := e.om.Accepted()
	e.om.SetPoison(func(ev openmetertest.Event) bool { return ev.Subject == "t1" })
	code, out, errOut := e.deadLetters("redrive", "--config", fullFix)
	if code != 1 || !strings.Contains(out, "re-driven 0, partly re-driven 1, still refused 0, skipped 0") {
		t.Fatalf("redrive with a refusing sink: exit %d\n%s\n%s", code, out, errOut)
	}
	if got, want := e.sentSince(before), []string{e.want(subjectAllItems, 2)}; !slices.Equal(got, want) {
		t.Fatalf("re-driven events\n got %v\nwant %v", got, want)
	}
	dl := e.readDL(e.name)
	if len(dl.FailedItems) != 1 || dl.FailedItems[0].Item != 1 || !strings.Contains(dl.FailedItems[0].Error, "HTTP 400") ||
		!strings.Contains(dl.FailedItems[0].Error, "rejected as poison") {
		t.Fatalf("rewritten failed items %+v, want item 1 with the sink's answer", dl.FailedItems)
	}

	e.om.SetPoison(nil)
	mid := e.om.Accepted()
	code, out, errOut = e.deadLetters("redrive", "--config", fullFix)
	if code != 0 || !strings.Contains(out, "re-driven 1, partly re-driven 0, still refused 0, skipped 0") {
		t.Fatalf("redrive after the sink accepts: exit %d\n%s\n%s", code, out, errOut)
	}
	if got, want := e.sentSince(mid), []string{e.want(subjectAllItems, 1)}; !slices.Equal(got, want) {
		t.Fatalf("re-driven events\n got %v\nwant %v", got, want)
	}
	if objs := e.objects(); len(objs) != 0 || e.om.Duplicates() != 0 || e.om.Distinct() != 4 {
		t.Fatalf("dead letters left %v, duplicates %d, distinct %d", objs, e.om.Duplicates(), e.om.Distinct())
	}
}

// TestRedriveStopsOnRedirect: a sink that answers a redirect stops the
// redrive like a 401: exit 1 with an error naming the status and the
// Location, the redirect target never requested (a followed 301/302/303
// is a GET without the events whose 2xx would delete the dead letter),
// and the dead letter kept.
func TestRedriveStopsOnRedirect(t *testing.T) {
	e := newDLEnv(t)
	e.om.SetPoison(openmetertest.PoisonFlag)
	e.putRecords(format.EventsHeader, time.Now().UnixMilli(), ceEvent("p", true))
	e.consume()
	if len(e.objects()) != 1 {
		t.Fatalf("dead letters %v", e.objects())
	}
	e.om.SetPoison(nil)
	for _, status := range []int{301, 302, 303, 307, 308} {
		peer := openmetertest.NewRedirector(status)
		redirected, final := &peer.Redirected, &peer.Final
		srv := httptest.NewServer(peer)
		code, out, errOut := run(t, nil, "dead-letters", "redrive", "--bucket-dir", e.dir, "--sink", srv.URL+"/api/v1/events", "--timeout", "20s")
		srv.Close()
		if code != 1 || !strings.Contains(errOut, "the sink refuses requests") ||
			!strings.Contains(errOut, fmt.Sprintf("HTTP %d", status)) || !strings.Contains(errOut, `"/final/api/v1/events"`) {
			t.Fatalf("redrive against a %d: exit %d\n%s\n%s", status, code, out, errOut)
		}
		if redirected.Load() != 1 || final.Load() != 0 {
			t.Fatalf("%d: %d requests redirected, %d to the target; want 1 and 0", status, redirected.Load(), final.Load())
		}
		if len(e.objects()) != 1 {
			t.Fatalf("%d: dead letters %v after the redrive, want the one kept", status, e.objects())
		}
	}
}

// TestRedriveSendsConcurrently: redrive keeps up to sink_concurrency
// requests in flight (issue 17: redrive gains the consumer's speed against
// a distant API), one at a time with 1, and still deletes every dead letter
// it delivered.
func TestRedriveSendsConcurrently(t *testing.T) {
	for _, tc := range []struct {
		concurrency string
		min, max    int64
	}{{"1", 1, 1}, {"4", 2, 4}} {
		t.Run("sink-concurrency="+tc.concurrency, func(t *testing.T) {
			e := newDLEnv(t)
			e.om.SetPoison(openmetertest.PoisonFlag)
			now := time.Now().UnixMilli()
			var evs [][]byte
			for i := range 12 {
				evs = append(evs, ceEvent(fmt.Sprintf("p%d", i), true))
			}
			e.putRecords(format.EventsHeader, now, evs...)
			e.consume()

			var inFlight, most, requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := inFlight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				_, _ = io.Copy(io.Discard, r.Body)
				time.Sleep(50 * time.Millisecond)
				requests.Add(1)
				inFlight.Add(-1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			code, out, errOut := run(t, nil, "dead-letters", "redrive", "--bucket-dir", e.dir, "--sink", srv.URL+"/api/v1/events",
				"--sink-batch-size", "1", "--sink-concurrency", tc.concurrency)
			if code != 0 || !strings.Contains(out, "re-driven 12") {
				t.Fatalf("redrive exit %d: %s %s", code, out, errOut)
			}
			if n := requests.Load(); n != 12 {
				t.Fatalf("%d requests, want 12 (one per dead letter)", n)
			}
			if m := most.Load(); m < tc.min || m > tc.max {
				t.Fatalf("at most %d requests in flight, want %d..%d", m, tc.min, tc.max)
			}
			for _, o := range e.objects() {
				if strings.HasSuffix(o, ".json") {
					t.Fatalf("dead letter %s left after a 2xx", o)
				}
			}
		})
	}
}

// TestDeadLettersPartition: --partition P lists partition P's dead-letter
// prefix (dead_letter_prefix-000P), and only it.
func TestDeadLettersPartition(t *testing.T) {
	e := newDLEnv(t)
	// A batch file that does not exist is dead-lettered (partition 0).
	e.put(nil, []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: 1}})
	e.consume()
	if len(e.objects()) == 0 {
		t.Fatal("no dead letter in partition 0")
	}
	code, out0, err0 := e.deadLetters("list")
	if code != 0 || !strings.Contains(out0, "1 dead letters under ingest/dead-letter/") {
		t.Fatalf("list: exit %d, stdout %q, stderr %q", code, out0, err0)
	}
	code, out2, err2 := e.deadLetters("list", "--partitions", "3", "--partition", "2")
	if code != 0 || !strings.Contains(out2, "ingest/dead-letter-0002/") || strings.Contains(out2, "batch_missing") {
		t.Fatalf("list --partition 2: exit %d, stdout %q, stderr %q; want partition 2's prefix, empty", code, out2, err2)
	}
	if out2 == out0 {
		t.Fatalf("list --partition 2 printed partition 0's dead letters:\n%s", out2)
	}
}
