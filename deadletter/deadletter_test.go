package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
)

// TestName: each reason's object name, as the consumer has always named
// them (RFC 0006), and ReasonFromName reads the reason back.
func TestName(t *testing.T) {
	t.Parallel()
	const loc = "ingest/data/01JBZ3M6Q8X2V4K7N9P0R5T1W3.batch"
	dir := "ingest/dead-letter/00000000000000000042-01JBZ3M6Q8X2V4K7N9P0R5T1W3.batch"
	for _, tc := range []struct {
		l    Letter
		want string
	}{
		{Letter{Reason: PoisonEvent, Sequence: 42, Location: loc, RecordIndex: intp(1), EventIndex: intp(7)}, dir + "/poison-r000001-e0007.json"},
		{Letter{Reason: ConvertError, Sequence: 42, Location: loc, RecordIndex: intp(12)}, dir + "/convert-r000012.json"},
		{Letter{Reason: UnknownSignal, Sequence: 42, Location: loc, RecordIndex: intp(3), RecordCount: 4}, dir + "/unknown_signal-r000003.json"},
		{Letter{Reason: BatchMissing, Sequence: 42, Location: loc}, dir + "/batch_missing.json"},
		{Letter{Reason: BatchCorrupt, Sequence: 42, Location: loc}, dir + "/batch_corrupt.json"},
	} {
		got := Name("ingest/dead-letter/", tc.l)
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.l.Reason, got, tc.want)
		}
		if r := ReasonFromName(got); r != tc.l.Reason {
			t.Errorf("ReasonFromName(%s) = %q, want %q", got, r, tc.l.Reason)
		}
	}
	// Another writer's reason (an importer's) gets a name of its own.
	other := Letter{Reason: "import_error", Location: `rows\2025.csv`, RecordIndex: intp(9)}
	if got, want := Name("dl", other), "dl/00000000000000000000-rows_2025.csv/import_error-r000009.json"; got != want {
		t.Errorf("other reason: %s, want %s", got, want)
	}
	if got := ReasonFromName("dl/x/notes.json"); got != "" {
		t.Errorf("unknown name read as %q", got)
	}
	if !KnownReason(BatchCorrupt) || KnownReason("import_error") {
		t.Error("KnownReason")
	}
}

// flaky fails the first n uploads, then stores.
type flaky struct {
	objstore.Bucket
	mu sync.Mutex
	n  int
}

func (f *flaky) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	f.mu.Lock()
	fail := f.n > 0
	f.n--
	f.mu.Unlock()
	if fail {
		return errors.New("503 slow down")
	}
	return f.Bucket.Upload(ctx, name, r, opts...)
}

// TestWriterRetriesUntilDurable: a failed upload is retried until stored;
// the stored object decodes and verifies; an invalid event is kept as a
// record; the batch copy is named beside the marker.
func TestWriterRetriesUntilDurable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	bkt := &flaky{Bucket: objstore.NewInMemBucket(), n: 2}
	var writes, failures []string
	at := time.Date(2025, 1, 1, 12, 0, 0, 0, time.FixedZone("x", 3600))
	w := Writer{Bucket: bkt, Prefix: "dl/", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		Now:       func() time.Time { return at },
		OnWrite:   func(n string) { writes = append(writes, n) },
		OnFailure: func(n string, err error, wait time.Duration) { failures = append(failures, n) },
	}
	name, err := w.Write(ctx, Letter{Reason: PoisonEvent, Location: "d/b.batch", Sequence: 3, RecordIndex: intp(0), EventIndex: intp(1),
		Event: json.RawMessage(`{"not json`)})
	if err != nil {
		t.Fatal(err)
	}
	if name != "dl/00000000000000000003-b.batch/poison-r000000-e0001.json" || len(failures) != 2 || len(writes) != 1 {
		t.Fatalf("name %s, failures %v, writes %v", name, failures, writes)
	}
	r := &Reader{Bucket: bkt, Prefix: "dl"}
	it := r.ReadOne(ctx, name)
	if it.Err != nil || it.Unverified {
		t.Fatalf("read back: %+v", it)
	}
	if it.Letter.Event != nil || len(it.Letter.Records) != 1 || string(it.Letter.Records[0]) != `{"not json` || !it.Letter.DeadLettered.Equal(at) {
		t.Fatalf("letter %+v", it.Letter)
	}

	l := Letter{Reason: BatchCorrupt, Location: "d/c.batch", Sequence: 4, Error: "bad magic"}
	cp, err := w.WriteBatchCopy(ctx, &l, []byte("bytes"))
	if err != nil || cp != "dl/00000000000000000004-c.batch/batch_corrupt.batch" || l.BatchCopy != cp {
		t.Fatalf("copy %s (%v), letter %q", cp, err, l.BatchCopy)
	}

	// A context that ends stops the retries.
	cctx, cancel := context.WithCancel(ctx)
	bkt.n = 1 << 30
	w.OnFailure = func(string, error, time.Duration) { cancel() }
	if _, err := w.Write(cctx, l); !errors.Is(err, context.Canceled) {
		t.Fatalf("write with a canceled context: %v", err)
	}
	if _, err := (Writer{}).Write(ctx, l); err == nil {
		t.Fatal("a Writer without a Bucket wrote")
	}
	if _, err := w.Write(ctx, Letter{}); err == nil || !strings.Contains(err.Error(), "Reason") {
		t.Fatalf("a Letter without a Reason: %v", err)
	}
}

// TestReaderEach: rounds of Chunk objects in name order, the reason
// filter (by name before reading), damaged objects kept and marked,
// progress reported per round.
func TestReaderEach(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	bkt := objstore.NewInMemBucket()
	w := Writer{Bucket: bkt, Prefix: "dl"}
	for seq := uint64(1); seq <= 3; seq++ {
		if _, err := w.Write(ctx, Letter{Reason: PoisonEvent, Location: "b", Sequence: seq, RecordIndex: intp(0), EventIndex: intp(0), Event: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write(ctx, Letter{Reason: BatchMissing, Location: "b", Sequence: 4}); err != nil {
		t.Fatal(err)
	}
	if err := bkt.Upload(ctx, "dl/00000000000000000005-b/poison-r000000-e0000.json", strings.NewReader(`{"version":2,"crc32c":"00000000","reason":"poison_event"}`)); err != nil {
		t.Fatal(err)
	}
	var progress []string
	r := &Reader{Bucket: bkt, Prefix: "dl/", Reason: PoisonEvent, Chunk: 2,
		OnProgress: func(done, total int) { progress = append(progress, fmt.Sprintf("%d/%d", done, total)) }}
	var got []string
	processed, total, err := r.Each(ctx, func(items []Item) error {
		for _, it := range items {
			got = append(got, fmt.Sprintf("%s damaged=%v", it.Name[len("dl/"):len("dl/")+20], it.Damaged))
		}
		return nil
	})
	if err != nil || processed != 4 || total != 4 {
		t.Fatalf("processed %d of %d: %v", processed, total, err)
	}
	want := []string{"00000000000000000001 damaged=false", "00000000000000000002 damaged=false", "00000000000000000003 damaged=false", "00000000000000000005 damaged=true"}
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(progress) != "[2/4 4/4]" {
		t.Fatalf("items %v, progress %v", got, progress)
	}
}

// TestRedriverPoisonAndRetry: against the fake metering API, a poison
// event is re-sent after a 503 with Retry-After and deleted; a batch
// marker is skipped and kept; a damaged one is never sent or deleted; a
// 401 stops the run with a SinkRefusedError.
func TestRedriverPoisonAndRetry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	om := openmetertest.New(openmetertest.Options{})
	defer om.Close()
	bkt := objstore.NewInMemBucket()
	w := Writer{Bucket: bkt, Prefix: "dl"}
	ev := json.RawMessage(`{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"c","time":"2025-01-01T00:00:00Z","data":{}}`)
	poison, err := w.Write(ctx, Letter{Reason: PoisonEvent, Location: "b", Sequence: 1, RecordIndex: intp(0), EventIndex: intp(0), Event: ev})
	if err != nil {
		t.Fatal(err)
	}
	marker, err := w.Write(ctx, Letter{Reason: BatchMissing, Location: "b", Sequence: 2})
	if err != nil {
		t.Fatal(err)
	}
	damaged := "dl/00000000000000000003-b/poison-r000000-e0000.json"
	if err := bkt.Upload(ctx, damaged, strings.NewReader(`{"version":2,"crc32c":"00000000","reason":"poison_event"}`)); err != nil {
		t.Fatal(err)
	}
	snk := sink.NewHTTP(om.Endpoint, "", sink.HTTPOptions{})
	defer snk.Close()
	om.FailNext(1, 503, "0")
	var outcomes []string
	var retries int
	var mu sync.Mutex
	rd := &Redriver{Reader: &Reader{Bucket: bkt, Prefix: "dl"}, Sink: snk, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		Report:  func(o Outcome) { outcomes = append(outcomes, o.Verdict+" "+o.Name) },
		OnRetry: func(error, time.Duration, bool) { mu.Lock(); retries++; mu.Unlock() },
	}
	res, err := rd.Run(ctx, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Redriven != 1 || res.Skipped != 1 || res.Damaged != 1 || retries != 1 || om.Accepted() != 1 {
		t.Fatalf("result %+v, retries %d, accepted %d, outcomes %v", res, retries, om.Accepted(), outcomes)
	}
	for name, want := range map[string]bool{poison: false, marker: true, damaged: true} {
		if ok, _ := bkt.Exists(ctx, name); ok != want {
			t.Errorf("%s exists %v, want %v", name, ok, want)
		}
	}

	// 401: only an operator can fix it.
	if _, err := w.Write(ctx, Letter{Reason: PoisonEvent, Location: "b", Sequence: 4, RecordIndex: intp(0), EventIndex: intp(0), Event: ev}); err != nil {
		t.Fatal(err)
	}
	om.FailNext(1, 401, "")
	rd = &Redriver{Reader: &Reader{Bucket: bkt, Prefix: "dl", Reason: PoisonEvent}, Sink: snk}
	_, err = rd.Run(ctx, ctx)
	var sre *SinkRefusedError
	if !errors.As(err, &sre) || !sink.IsHTTPStatus(err, 401) {
		t.Fatalf("401: %v", err)
	}
}
