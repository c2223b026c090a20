package journal_test

// Compaction seen by the journal's readers: GC's keep set (consumer
// CollectGarbage through Journal.Sweep) and replay (package replay), when
// a GC cycle dies or fails between writing a merged segment and deleting
// its inputs, and when another GC merges segments between a reader's
// listing and its reads.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
	"github.com/bucketq/bucketq/replay"
)

// history is an in-memory bucket whose journal holds the delivered
// history of entries sequences 0..entries-1: batch i holds events
// "s{i}-a" and "s{i}-b", ingested at base + i minutes, and was written
// more than the GC grace period ago; a few unreferenced batch files
// (orphans) are as old. The segments, of three entries each plus one
// that a successor consumer journaled again over two of them, were
// journaled in one compaction window, longer ago than CompactAge.
type history struct {
	bkt     *objstore.InMemBucket
	store   cas.Store
	cfg     journal.Config
	orphans []string
}

const (
	historyEntries = 30
	compactSpan    = 10 * time.Minute
)

var base = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func newHistory(t *testing.T) *history {
	t.Helper()
	ctx := context.Background()
	h := &history{bkt: objstore.NewInMemBucket(), store: memstore.New(), cfg: journal.Config{Retention: 24 * time.Hour, CompactSpan: compactSpan}}
	var entries []manifest.Entry
	for i := range historyEntries {
		var recs [][]byte
		for _, s := range []string{"a", "b"} {
			recs = append(recs, fmt.Appendf(nil, `{"specversion":"1.0","id":"s%d-%s","source":"compact-test","type":"usage","subject":"c","time":"2026-03-01T10:00:00Z"}`, i, s))
		}
		data, err := format.EncodeBatch(format.CompressionNone, recs)
		if err != nil {
			t.Fatal(err)
		}
		loc := fmt.Sprintf("ingest/data/%06d.batch", i)
		if err := h.bkt.Upload(ctx, loc, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Minute)
		entries = append(entries, manifest.Entry{Sequence: uint64(i), Location: loc,
			Metadata: []manifest.Metadata{{IngestionTimeMs: at.UnixMilli(), Payload: format.EventsHeader.Bytes()}}})
	}
	for i := range 3 {
		name := fmt.Sprintf("ingest/data/orphan-%d.batch", i)
		if err := h.bkt.Upload(ctx, name, strings.NewReader("never committed")); err != nil {
			t.Fatal(err)
		}
		h.orphans = append(h.orphans, name)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := h.bkt.Iter(ctx, "ingest/data/", func(name string) error {
		return h.bkt.ChangeLastModified(name, old)
	}, objstore.WithRecursiveIter()); err != nil {
		t.Fatal(err)
	}
	j, err := journal.New(h.bkt, h.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	j.SetClock(clk.Now)
	w := time.Now().Truncate(compactSpan).Add(-2 * compactSpan)
	for i := 0; i < historyEntries; i += 3 {
		clk.Set(w.Add(time.Duration(i) * time.Second))
		if _, err := j.Write(ctx, entries[i:i+3], 1); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(w.Add(time.Minute))
	if _, err := j.Write(ctx, entries[6:11], 2); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *history) segments(t *testing.T) []journal.SegmentRef {
	t.Helper()
	j, err := journal.Open(h.bkt, journal.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	segs, err := j.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// gc runs one GC cycle of a consumer whose bucket (journal included) is
// bkt, with a new journal (an empty cache, as after a restart).
func (h *history) gc(t *testing.T, bkt objstore.Bucket) error {
	t.Helper()
	j, err := journal.New(bkt, h.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := consumer.New(bkt, manifest.NewQueue(h.store, "ingest/manifest", manifest.Options{}), convert.NewRegistry(),
		sink.NewHTTP("http://127.0.0.1:1", "", sink.HTTPOptions{}), consumer.Config{Journal: j, DisableGC: true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CollectGarbage(context.Background())
	return err
}

// idSink records the ids of the events sent to it, in order.
type idSink struct {
	mu  sync.Mutex
	ids []string
}

func (s *idSink) Send(_ context.Context, evs []json.RawMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range evs {
		var e struct{ ID string }
		if err := json.Unmarshal(ev, &e); err != nil {
			return err
		}
		s.ids = append(s.ids, e.ID)
	}
	return nil
}

func (s *idSink) Close() error { return nil }

// replayIDs replays sel from bkt and returns the event ids sent (a
// duplicate shows twice).
func replayIDs(t *testing.T, bkt objstore.Bucket, sel replay.Selection) []string {
	t.Helper()
	snk := &idSink{}
	sum, err := replay.Run(context.Background(), replay.Config{Bucket: bkt, JournalPrefix: journal.DefaultPrefix, Converter: convert.NewRegistry(), Sink: snk}, sel)
	if err != nil || !sum.OK() {
		t.Fatalf("replay %+v: %v %+v", sel, err, sum)
	}
	return snk.ids
}

// wantIDs is the ids of sequences first..last.
func wantIDs(first, last int) []string {
	var out []string
	for i := first; i <= last; i++ {
		out = append(out, fmt.Sprintf("s%d-a", i), fmt.Sprintf("s%d-b", i))
	}
	return out
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := append([]string(nil), got...), append([]string(nil), want...)
	sort.Strings(g)
	sort.Strings(w)
	if strings.Join(g, " ") != strings.Join(w, " ") {
		t.Fatalf("%s: got %d events %v, want each of %d exactly once %v", what, len(g), g, len(w), w)
	}
}

// check is what must hold whatever a GC cycle died of: every journaled
// sequence is in a segment, every batch file a segment references is
// there, and replay by sequence and by time sends each selected event
// exactly once.
func (h *history) check(t *testing.T, when string) {
	t.Helper()
	l := read(t, h.bkt)
	for s := range uint64(historyEntries) {
		if l.count[s] == 0 {
			t.Fatalf("%s: sequence %d is in no journal segment", when, s)
		}
	}
	j, _ := journal.Open(h.bkt, journal.DefaultPrefix)
	for _, s := range l.segs {
		seg, err := j.Read(context.Background(), s.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range seg.Entries {
			if ok, err := h.bkt.Exists(context.Background(), e.Location); err != nil || !ok {
				t.Fatalf("%s: batch %s of sequence %d, referenced by live segment %s, was deleted (%v)", when, e.Location, e.Sequence, s.Name, err)
			}
		}
	}
	sameSet(t, when+": replay of every sequence", replayIDs(t, h.bkt, replay.Selection{BySeq: true, FromSeq: 0, ToSeq: historyEntries - 1}), wantIDs(0, historyEntries-1))
	for _, w := range [][2]int{{0, 4}, {12, 16}, {20, 24}, {25, 29}} {
		sel := replay.Selection{From: base.Add(time.Duration(w[0]) * time.Minute), To: base.Add(time.Duration(w[1]+1) * time.Minute)}
		sameSet(t, fmt.Sprintf("%s: replay of minutes %d..%d", when, w[0], w[1]), replayIDs(t, h.bkt, sel), wantIDs(w[0], w[1]))
	}
}

// faultBucket makes a GC process die at its n-th write (upload or
// delete; storetest.KillSwitch). Or, with failDelete, only the delete of
// that one object fails, and the rest of the cycle goes on.
type faultBucket struct {
	objstore.Bucket
	storetest.KillSwitch
	failDelete string
}

var errInjected = errors.New("injected fault")

func (b *faultBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	return b.Write("upload "+name, func() error { return b.Bucket.Upload(ctx, name, r, opts...) })
}

func (b *faultBucket) Delete(ctx context.Context, name string) error {
	if name == b.failDelete {
		return errInjected
	}
	return b.Write("delete "+name, func() error { return b.Bucket.Delete(ctx, name) })
}

// TestCompactionCrashLeavesReadableJournal kills a GC cycle at each of
// its writes (the merged segment's upload, each input's delete, each
// orphan's delete; before and after the write lands), and separately
// fails the delete of each single input while the rest of the cycle goes
// on. Whatever is left — overlapping segments, inputs inside the merged
// segment's range — replay by sequence and by time sends every selected
// event exactly once, and no batch file a live segment references is
// deleted. The next GC cycle (a restarted process) finishes the merge:
// one segment, orphans gone, replay still exact.
func TestCompactionCrashLeavesReadableJournal(t *testing.T) {
	inputs := len(newHistory(t).segments(t))
	type fault struct {
		name       string
		at         int
		after      bool
		failDelete int // index of the input whose delete fails, -1: none
	}
	var faults []fault
	for at := 1; at <= 1+inputs+3; at++ {
		for _, after := range []bool{false, true} {
			faults = append(faults, fault{fmt.Sprintf("write%d-after%v", at, after), at, after, -1})
		}
	}
	for i := range inputs {
		faults = append(faults, fault{fmt.Sprintf("fail-delete-of-input%d", i), 0, false, i})
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			h := newHistory(t)
			fb := &faultBucket{Bucket: h.bkt, KillSwitch: storetest.KillSwitch{At: f.at, After: f.after}}
			if f.failDelete >= 0 {
				fb.failDelete = h.segments(t)[f.failDelete].Name
			}
			if err := h.gc(t, fb); err == nil && (f.failDelete >= 0 || f.at <= 1+inputs+3) {
				t.Fatalf("GC cycle with a fault reported no error; writes: %v", fb.Steps())
			}
			if testing.Verbose() {
				t.Log(strings.Join(fb.Steps(), "; "))
			}
			h.check(t, "after the fault")

			if err := h.gc(t, h.bkt); err != nil {
				t.Fatalf("the next GC cycle: %v", err)
			}
			h.check(t, "after the next cycle")
			if segs := h.segments(t); len(segs) != 1 || segs[0].Name != journal.Name(journal.DefaultPrefix, 0, historyEntries-1) {
				t.Fatalf("after the next cycle: segments %v, want the one merged segment", segs)
			}
			for _, o := range h.orphans {
				if ok, _ := h.bkt.Exists(context.Background(), o); ok {
					t.Fatalf("orphan %s not deleted by the next cycle", o)
				}
			}
		})
	}
}

// mergeOnRead runs merge once, just before the first read of a journal
// segment: another GC compacting between a reader's listing and its reads.
type mergeOnRead struct {
	objstore.Bucket
	once  sync.Once
	merge func()
}

func (b *mergeOnRead) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if strings.HasPrefix(name, journal.DefaultPrefix+"/") {
		b.once.Do(b.merge)
	}
	return b.Bucket.Get(ctx, name)
}

func (b *mergeOnRead) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	if strings.HasPrefix(name, journal.DefaultPrefix+"/") {
		b.once.Do(b.merge)
	}
	return b.Bucket.Attributes(ctx, name)
}

// TestReadersListAgainWhenSegmentsAreMergedAway: another GC (a consumer
// not yet aware it was fenced) merges the segments after a reader listed
// them and before it read them. GC's keep set still holds every
// referenced batch — a listed segment that vanished may have been merged
// into one the listing did not show, so Sweep lists again instead of
// skipping it as expired — replay still sends every event, and
// `inspect journal` still lists every entry.
func TestReadersListAgainWhenSegmentsAreMergedAway(t *testing.T) {
	ctx := context.Background()
	t.Run("gc", func(t *testing.T) {
		h := newHistory(t)
		mb := &mergeOnRead{Bucket: h.bkt, merge: func() {
			if err := h.gc(t, h.bkt); err != nil {
				t.Error(err)
			}
		}}
		j, err := journal.New(mb, journal.Config{Retention: 24 * time.Hour, CompactSpan: -1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		keep, _, err := j.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keep) != historyEntries {
			t.Fatalf("keep set holds %d batch files, the journal references %d", len(keep), historyEntries)
		}
	})
	t.Run("inspect", func(t *testing.T) {
		h := newHistory(t)
		mb := &mergeOnRead{Bucket: h.bkt, merge: func() {
			if err := h.gc(t, h.bkt); err != nil {
				t.Error(err)
			}
		}}
		j, err := journal.Open(mb, journal.DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		infos, err := j.Survey(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != 1 || infos[0].Err != nil || infos[0].Footer.EntryCount != historyEntries {
			t.Fatalf("inspect journal's survey: %+v; want the merged segment of %d entries", infos, historyEntries)
		}
	})
	for _, sel := range []replay.Selection{{BySeq: true}, {From: base, To: base.Add(time.Hour)}} {
		t.Run(fmt.Sprintf("replay-byseq=%v", sel.BySeq), func(t *testing.T) {
			h := newHistory(t)
			mb := &mergeOnRead{Bucket: h.bkt, merge: func() {
				if err := h.gc(t, h.bkt); err != nil {
					t.Error(err)
				}
			}}
			sameSet(t, "replay", replayIDs(t, mb, sel), wantIDs(0, historyEntries-1))
		})
	}
}

// mergeAfterList merges the two lowest segments of the journal right
// after each of the first merges listings of it: a GC cycle compacting
// between every listing of a reader and its reads, as a busy consumer's GC
// (every few hundred milliseconds) does to a replay that takes longer.
type mergeAfterList struct {
	objstore.Bucket
	merges int
}

func (b *mergeAfterList) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	if err := b.Bucket.Iter(ctx, dir, f, opts...); err != nil {
		return err
	}
	if dir != journal.DefaultPrefix+"/" || b.merges == 0 {
		return nil
	}
	b.merges--
	j, err := journal.Open(b.Bucket, journal.DefaultPrefix)
	if err != nil {
		return err
	}
	segs, err := j.List(ctx)
	if err != nil || len(segs) < 2 {
		return err
	}
	bySeq := map[uint64]manifest.Entry{}
	var at int64
	for _, s := range segs[:2] {
		seg, err := j.Read(ctx, s.Name)
		if err != nil {
			return err
		}
		at = max(at, seg.JournaledAtMs)
		for _, e := range seg.Entries {
			bySeq[e.Sequence] = e
		}
	}
	var entries []manifest.Entry
	for _, e := range bySeq {
		entries = append(entries, e)
	}
	sort.Slice(entries, func(a, c int) bool { return entries[a].Sequence < entries[c].Sequence })
	data, err := journal.Encode(entries, at, 1)
	if err != nil {
		return err
	}
	name := journal.Name(journal.DefaultPrefix, entries[0].Sequence, entries[len(entries)-1].Sequence)
	if err := b.Bucket.Upload(ctx, name, bytes.NewReader(data)); err != nil {
		return err
	}
	for _, s := range segs[:2] {
		if s.Name != name {
			if err := b.Bucket.Delete(ctx, s.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestReplayFinishesWhileGCMergesAfterEveryListing: GC merges segments
// after each of six listings in a row, so every one of replay's plans
// finds a chosen segment gone. Replay keeps what it read and lists again
// until a listing holds still, and sends every event exactly once.
func TestReplayFinishesWhileGCMergesAfterEveryListing(t *testing.T) {
	for _, sel := range []replay.Selection{{BySeq: true}, {From: base, To: base.Add(time.Hour)}} {
		t.Run(fmt.Sprintf("byseq=%v", sel.BySeq), func(t *testing.T) {
			h := newHistory(t)
			mb := &mergeAfterList{Bucket: h.bkt, merges: 6}
			sameSet(t, "replay", replayIDs(t, mb, sel), wantIDs(0, historyEntries-1))
			if mb.merges != 0 {
				t.Fatalf("replay listed the journal %d times; the test needs 7 to merge after six", 6-mb.merges+1)
			}
		})
	}
}

// TestSurveyWhileGCMergesAfterEveryListing: `inspect journal` (Survey)
// keeps what it read and lists again while segments are merged after each
// of six listings, and then shows every entry once; a journal that never
// holds still for ten listings is an error, not a survey missing the
// merged segments.
func TestSurveyWhileGCMergesAfterEveryListing(t *testing.T) {
	ctx := context.Background()
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprintf("verify=%v", verify), func(t *testing.T) {
			h := newHistory(t)
			mb := &mergeAfterList{Bucket: h.bkt, merges: 6}
			j, err := journal.Open(mb, journal.DefaultPrefix)
			if err != nil {
				t.Fatal(err)
			}
			infos, err := j.Survey(ctx, verify)
			if err != nil {
				t.Fatal(err)
			}
			seqs := map[uint64]int{}
			for _, in := range infos {
				if in.Err != nil {
					t.Fatalf("segment %s: %v", in.Name, in.Err)
				}
				for s := in.First; s <= in.Last; s++ {
					seqs[s]++
				}
			}
			for s := range uint64(historyEntries) {
				if seqs[s] == 0 {
					t.Fatalf("survey %+v misses sequence %d", infos, s)
				}
			}
			if mb.merges != 0 {
				t.Fatalf("survey listed the journal %d times; the test needs 7", 6-mb.merges+1)
			}
		})
	}
	t.Run("never holds still", func(t *testing.T) {
		h := newHistory(t)
		j, err := journal.Open(&mergeAfterList{Bucket: h.bkt, merges: 1 << 30}, journal.DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.Survey(ctx, false); err == nil || !strings.Contains(err.Error(), "kept vanishing") {
			t.Fatalf("Survey of a journal merged after every listing: %v, want the churn error", err)
		}
	})
}
