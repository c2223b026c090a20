package consumer

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
)

// journaledSeqs reads every segment and returns the sequences they hold.
func (h *harness) journaledSeqs() map[uint64]manifest.Entry {
	h.t.Helper()
	j, err := journal.Open(h.bkt, journal.DefaultPrefix)
	if err != nil {
		h.t.Fatal(err)
	}
	segs, err := j.List(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[uint64]manifest.Entry{}
	for _, s := range segs {
		seg, err := j.Read(context.Background(), s.Name)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, e := range seg.Entries {
			out[e.Sequence] = e
		}
	}
	return out
}

func (h *harness) newJournal(retention time.Duration) *journal.Journal {
	h.t.Helper()
	j, err := journal.New(h.bkt, journal.Config{Retention: retention}, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

// TestJournalHoldsEveryDequeuedEntry: with the journal on, every entry the
// consumer delivered and dequeued is in a segment, with its location and
// metadata unchanged.
func TestJournalHoldsEveryDequeuedEntry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	h.events(7, 3)
	before, err := h.q.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := h.consumer(h.config(func(c *Config) { c.Journal = h.newJournal(time.Hour); c.DequeueInterval = time.Millisecond }), "")
	r := start(c)
	waitFor(t, "queue drained", patience, func() bool { return h.queueLen() == 0 })
	r.stop(t)
	got := h.journaledSeqs()
	if len(got) != len(before.Entries) {
		t.Fatalf("journal holds %d entries, %d were dequeued", len(got), len(before.Entries))
	}
	for _, e := range before.Entries {
		j, ok := got[e.Sequence]
		if !ok || j.Location != e.Location || len(j.Metadata) != len(e.Metadata) || j.Metadata[0].IngestionTimeMs != e.Metadata[0].IngestionTimeMs {
			t.Fatalf("sequence %d: journal has %+v, manifest had %+v", e.Sequence, j, e)
		}
	}
}

type killBucket struct {
	objstore.Bucket
	k *storetest.KillSwitch
}

func (b *killBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	return b.k.Write("upload "+name, func() error { return b.Bucket.Upload(ctx, name, r, opts...) })
}

func (b *killBucket) Delete(ctx context.Context, name string) error {
	return b.k.Write("delete "+name, func() error { return b.Bucket.Delete(ctx, name) })
}

type killStore struct {
	cas.Store
	k *storetest.KillSwitch
}

func (s *killStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	var out cas.Version
	err := s.k.Write("manifest "+name, func() error {
		var err error
		out, err = s.Store.WriteIf(ctx, name, data, v)
		return err
	})
	return out, err
}

// checkJournalCovers fails unless every sequence ever appended that is no
// longer in the manifest is in the journal.
func (h *harness) checkJournalCovers(appended []uint64, when string) {
	h.t.Helper()
	m, err := h.q.Read(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	queued := map[uint64]bool{}
	for _, e := range m.Entries {
		queued[e.Sequence] = true
	}
	journaled := h.journaledSeqs()
	for _, s := range appended {
		if _, ok := journaled[s]; !queued[s] && !ok {
			h.t.Fatalf("%s: sequence %d was dequeued but is in no journal segment", when, s)
		}
	}
}

// TestJournalWriteOrderSurvivesCrashes kills the consumer at every write
// it makes (before the write lands, and after it landed with the answer
// lost): the fence, each journal segment PUT and each dequeue CAS. At the
// moment of death, and after a second consumer took over and drained the
// queue, no dequeued entry is missing from the journal.
func TestJournalWriteOrderSurvivesCrashes(t *testing.T) {
	t.Parallel()
	for at := 1; at <= 14; at++ {
		for _, after := range []bool{false, true} {
			t.Run(fmt.Sprintf("write%d-after%v", at, after), func(t *testing.T) {
				t.Parallel()
				synctest.Test(t, func(t *testing.T) {
					h := newHarness(t, openmetertest.Options{})
					h.events(8, 3)
					m, err := h.q.Read(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					var appended []uint64
					for _, e := range m.Entries {
						appended = append(appended, e.Sequence)
					}
					j := h.newJournal(time.Hour)
					k := &storetest.KillSwitch{At: at, After: after}
					kb := &killBucket{Bucket: h.bkt, k: k}
					kj, err := journal.New(kb, journal.Config{Retention: time.Hour}, nil)
					if err != nil {
						t.Fatal(err)
					}
					kq := manifest.NewQueue(&killStore{Store: h.store, k: k}, h.q.Path(), manifest.Options{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, RetryTimeout: 300 * time.Millisecond})
					cfg := h.config(func(c *Config) { c.Journal = kj; c.DequeueInterval = time.Millisecond; c.SinkConcurrency = 1 })
					c1, err := New(kb, kq, convert.NewRegistry(), h.httpSink(""), cfg, h.m, nil)
					if err != nil {
						t.Fatal(err)
					}
					r1 := start(c1)
					eventually(t, "queue drained or consumer dead", func() bool {
						return k.Dead() || h.queueLen() == 0
					})
					r1.cancel()
					<-r1.done
					h.checkJournalCovers(appended, "at death")

					c2 := h.consumer(h.config(func(c *Config) { c.Journal = j; c.DequeueInterval = time.Millisecond }), "")
					r2 := start(c2)
					eventually(t, "queue drained", func() bool { return h.queueLen() == 0 })
					r2.stop(t)
					h.checkJournalCovers(appended, "after takeover")
					if got := h.journaledSeqs(); len(got) != len(appended) {
						t.Fatalf("journal holds %d sequences, %d were appended", len(got), len(appended))
					}
					if testing.Verbose() {
						t.Log(strings.Join(k.Steps(), "; "))
					}
				})
			})
		}
	}
}

// TestJournalFailureBlocksDequeue: while journal PUTs fail, nothing is
// dequeued (the queue keeps its entries); once they succeed, it drains.
func TestJournalFailureBlocksDequeue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		h.events(3, 2)
		fb := &failJournalBucket{Bucket: h.bkt}
		fb.failing.Store(true)
		j, err := journal.New(fb, journal.Config{Retention: time.Hour}, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := h.consumer(h.config(func(c *Config) { c.Journal = j; c.DequeueInterval = time.Millisecond }), "")
		r := start(c)
		eventually(t, "events delivered", func() bool { return h.om.Distinct() == 6 })
		eventually(t, "several journal attempts", func() bool { return fb.attempts.Load() >= 3 })
		if n := h.queueLen(); n != 3 {
			t.Fatalf("queue has %d entries while the journal fails, want all 3", n)
		}
		fb.failing.Store(false)
		eventually(t, "queue drained", func() bool { return h.queueLen() == 0 })
		r.stop(t)
		if got := h.journaledSeqs(); len(got) != 3 {
			t.Fatalf("journal holds %d entries", len(got))
		}
	})
}

type failJournalBucket struct {
	objstore.Bucket
	failing  atomic.Bool
	attempts atomic.Int64
}

func (b *failJournalBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	if strings.HasPrefix(name, journal.DefaultPrefix+"/") {
		b.attempts.Add(1)
		if b.failing.Load() {
			return errInjected
		}
	}
	return b.Bucket.Upload(ctx, name, r, opts...)
}

// TestGCKeepsJournaledBatchesUntilTheirSegmentExpires: dequeued batches
// old enough for GC stay while a live segment references them; once the
// segment is past journal_retention, GC deletes it and then the batches.
// A damaged live segment makes GC delete nothing.
func TestGCKeepsJournaledBatchesUntilTheirSegmentExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	ctx := context.Background()
	h.events(3, 2)
	const retention = time.Hour
	j := h.newJournal(retention)
	c := h.consumer(h.config(func(c *Config) { c.Journal = j; c.GCGracePeriod = time.Minute }), "")
	r := start(c)
	waitFor(t, "queue drained", patience, func() bool { return h.queueLen() == 0 })
	r.stop(t)
	batches := func() int {
		n := 0
		if err := h.bkt.Iter(ctx, "ingest/data/", func(string) error { n++; return nil }, objstore.WithRecursiveIter()); err != nil {
			t.Fatal(err)
		}
		return n
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := h.bkt.Iter(ctx, "ingest/data/", func(name string) error {
		return os.Chtimes(filepath.Join(h.dir, name), old, old)
	}, objstore.WithRecursiveIter()); err != nil {
		t.Fatal(err)
	}
	if n, err := c.CollectGarbage(ctx); err != nil || n != 0 || batches() != 3 {
		t.Fatalf("GC with live segments deleted %d (%v), %d batches left; want none deleted", n, err, batches())
	}

	// A damaged live segment: nothing is deleted, and the error names it.
	const bad = "ingest/journal/00000000000000000099-00000000000000000099.journal"
	if err := h.bkt.Upload(ctx, bad, strings.NewReader("not a segment")); err != nil {
		t.Fatal(err)
	}
	later := &fakeClock{t: time.Now().Add(retention + time.Minute)}
	c.now = later.Now
	j.SetClock(later.Now)
	if n, err := c.CollectGarbage(ctx); err == nil || !strings.Contains(err.Error(), bad) || n != 0 || batches() != 3 {
		t.Fatalf("GC with a damaged segment deleted %d, error %v; want nothing deleted and the segment named", n, err)
	}
	if err := h.bkt.Delete(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if n, err := c.CollectGarbage(ctx); err != nil || n != 3 || batches() != 0 {
		t.Fatalf("GC after expiry deleted %d (%v), %d batches left; want all 3", n, err, batches())
	}
	if got := h.journaledSeqs(); len(got) != 0 {
		t.Fatalf("expired segments kept: %d entries", len(got))
	}
}
