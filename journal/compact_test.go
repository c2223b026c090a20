package journal_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
)

// clock is a settable clock for a journal.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// entry is journaled entry seq: one metadata item, its batch location
// named by the sequence.
func entry(seq uint64, at time.Time) manifest.Entry {
	return manifest.Entry{Sequence: seq, Location: fmt.Sprintf("ingest/data/%06d.batch", seq),
		Metadata: []manifest.Metadata{{IngestionTimeMs: at.UnixMilli(), Payload: []byte{1, 4, 2, 0}}}}
}

// writeAt writes the segment of sequences first..last as journaled at t.
func writeAt(t *testing.T, j *journal.Journal, clk *clock, at time.Time, first, last uint64) {
	t.Helper()
	clk.Set(at)
	var es []manifest.Entry
	for s := first; s <= last; s++ {
		es = append(es, entry(s, at))
	}
	if _, err := j.Write(context.Background(), es, 1); err != nil {
		t.Fatal(err)
	}
}

// listing is what a fresh reader finds: each segment's footer, and how
// many segments hold each sequence.
type listing struct {
	segs  []journal.SegmentInfo
	count map[uint64]int
}

func read(t *testing.T, bkt objstore.Bucket) listing {
	t.Helper()
	j, err := journal.Open(bkt, journal.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	infos, err := j.Survey(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	l := listing{segs: infos, count: map[uint64]int{}}
	for _, s := range infos {
		if s.Err != nil {
			t.Fatalf("segment %s: %v", s.Name, s.Err)
		}
		seg, err := j.Read(context.Background(), s.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range seg.Entries {
			l.count[e.Sequence]++
		}
	}
	return l
}

// TestCompactionBoundsSegmentCount: 10,000 one-entry segments, one per
// dequeue, become as many segments as compaction windows they span (or
// entries / CompactMaxEntries), every entry in exactly one of them, and
// the keep set GC gets is unchanged. A second cycle changes nothing.
func TestCompactionBoundsSegmentCount(t *testing.T) {
	const n = 10_000
	hour := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		spread     time.Duration // journaled_at of segment i: hour + i*spread/n
		retention  time.Duration
		maxEntries int
		want       int
	}{
		{"one window", 50 * time.Minute, 24 * time.Hour, 0, 1},
		{"a day of windows", 24 * time.Hour, 48 * time.Hour, 0, 24},
		{"3000 entries at most", 50 * time.Minute, 24 * time.Hour, 3000, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			bkt := objstore.NewInMemBucket()
			m := journal.NewMetrics(nil)
			j, err := journal.New(bkt, journal.Config{Retention: tc.retention, CompactMaxEntries: tc.maxEntries}, m)
			if err != nil {
				t.Fatal(err)
			}
			clk := &clock{}
			j.SetClock(clk.Now)
			for i := range uint64(n) {
				writeAt(t, j, clk, hour.Add(time.Duration(i)*tc.spread/n), i, i)
			}
			clk.Set(hour.Add(tc.spread + journal.DefaultCompactAge))
			start := time.Now()
			keep, _, err := j.Sweep(ctx)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			l := read(t, bkt)
			t.Logf("%d segments -> %d in one GC cycle of %v", n, len(l.segs), took.Round(time.Millisecond))
			if len(l.segs) != tc.want {
				t.Fatalf("%d segments after compaction, want %d", len(l.segs), tc.want)
			}
			limit := tc.maxEntries
			if limit == 0 {
				limit = journal.DefaultCompactMaxEntries
			}
			for _, s := range l.segs {
				if int(s.Footer.EntryCount) > limit {
					t.Fatalf("%s holds %d entries, over %d", s.Name, s.Footer.EntryCount, limit)
				}
			}
			if len(l.count) != n || len(keep) != n {
				t.Fatalf("%d sequences in the journal, %d locations kept; want %d", len(l.count), len(keep), n)
			}
			for s, c := range l.count {
				if c != 1 {
					t.Fatalf("sequence %d in %d segments", s, c)
				}
			}
			if got := testutil.ToFloat64(m.SegmentsCompacted); got != n {
				t.Fatalf("buffer_journal_segments_compacted = %v, want %d", got, n)
			}
			if got := testutil.ToFloat64(m.Segments); got != float64(tc.want) {
				t.Fatalf("buffer_journal_segments = %v, want %d", got, tc.want)
			}
			// Compacted segments are in their final shape: the next cycle
			// writes and deletes nothing.
			before := len(bkt.Objects())
			if _, _, err := j.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(m.SegmentsCompacted); got != n || len(bkt.Objects()) != before {
				t.Fatalf("second cycle compacted again: counter %v, %d objects (was %d)", got, len(bkt.Objects()), before)
			}
		})
	}
}

// TestCompactionKeepsRetention: a merged segment is journaled at the
// latest of the times its entries were journaled, and merges only
// segments of one CompactSpan window, so every entry is kept at least
// journal_retention after its latest write and less than CompactSpan
// longer. An input that holds nothing new but was journaled later (a
// consumer journaling entries again after a crash) raises the time of
// the merged segment even when that segment already exists; one in a
// later window holding exactly the merged entries makes the inputs
// redundant, one in an earlier window does not.
func TestCompactionKeepsRetention(t *testing.T) {
	ctx := context.Background()
	const retention, span = 12 * time.Hour, time.Hour
	w := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC) // a window start
	bkt := objstore.NewInMemBucket()
	m := journal.NewMetrics(nil)
	j, err := journal.New(bkt, journal.Config{Retention: retention, CompactSpan: span}, m)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	j.SetClock(clk.Now)
	latest := map[uint64]time.Time{} // each sequence's latest journaled_at
	write := func(at time.Time, first, last uint64) {
		writeAt(t, j, clk, at, first, last)
		for s := first; s <= last; s++ {
			latest[s] = at
		}
	}
	write(w, 0, 0)
	write(w.Add(30*time.Minute), 1, 1)
	write(w.Add(span-time.Millisecond), 2, 2)
	write(w.Add(span), 3, 3) // the next window
	write(w.Add(2*span+time.Minute), 10, 12)
	write(w.Add(2*span+50*time.Minute), 11, 12) // the same entries again, later
	write(w.Add(3*span+time.Minute), 20, 22)
	write(w.Add(3*span+2*time.Minute), 23, 25)
	write(w.Add(4*span+time.Minute), 20, 25) // a successor journaled them again, in the next window
	write(w.Add(6*span+10*time.Minute), 30, 35)
	write(w.Add(7*span+time.Minute), 30, 32) // and again, in the window after: still needed
	write(w.Add(7*span+2*time.Minute), 33, 35)

	clk.Set(w.Add(8*span + journal.DefaultCompactAge))
	if _, _, err := j.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, s := range read(t, bkt).segs {
		got[s.Name] = s.Footer.JournaledAtMs
	}
	want := map[string]int64{
		journal.Name(journal.DefaultPrefix, 0, 2):   w.Add(span - time.Millisecond).UnixMilli(),
		journal.Name(journal.DefaultPrefix, 3, 3):   w.Add(span).UnixMilli(),
		journal.Name(journal.DefaultPrefix, 10, 12): w.Add(2*span + 50*time.Minute).UnixMilli(),
		journal.Name(journal.DefaultPrefix, 20, 25): w.Add(4*span + time.Minute).UnixMilli(),
		journal.Name(journal.DefaultPrefix, 30, 35): w.Add(6*span + 10*time.Minute).UnixMilli(),
		journal.Name(journal.DefaultPrefix, 30, 32): w.Add(7*span + time.Minute).UnixMilli(),
		journal.Name(journal.DefaultPrefix, 33, 35): w.Add(7*span + 2*time.Minute).UnixMilli(),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("segments and their journaled_at_ms after compaction:\n got %v\nwant %v", got, want)
	}
	if n := testutil.ToFloat64(m.Segments); n != 7 {
		t.Fatalf("buffer_journal_segments = %v, want 7", n)
	}

	// Sweep at each entry's latest write + retention - 1 ms (it must be
	// there) and + retention + span (it must be gone), in time order.
	type check struct {
		at      time.Time
		seq     uint64
		present bool
	}
	var checks []check
	for s, at := range latest {
		checks = append(checks, check{at.Add(retention - time.Millisecond), s, true}, check{at.Add(retention + span), s, false})
	}
	for k := range checks {
		for i := k + 1; i < len(checks); i++ {
			if checks[i].at.Before(checks[k].at) {
				checks[k], checks[i] = checks[i], checks[k]
			}
		}
	}
	for _, c := range checks {
		clk.Set(c.at)
		if _, _, err := j.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		if have := read(t, bkt).count[c.seq] > 0; have != c.present {
			t.Fatalf("at %v (journaled %v, retention %v): sequence %d present %v, want %v",
				c.at.Sub(latest[c.seq]), latest[c.seq].Format(time.TimeOnly), retention, c.seq, have, c.present)
		}
	}
}

// BenchmarkCompaction measures the GC cycle (Sweep) that first compacts n
// one-entry segments — a day of dequeues at one per 8.64 s for n =
// 10,000, at one per 0.86 s for n = 100,000 — journaled over a day into
// an hour's windows: time and allocation per cycle, and the segments
// left (segments-after; the next cycle lists that many instead of n).
func BenchmarkCompaction(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("segments=%d", n), func(b *testing.B) {
			ctx := context.Background()
			day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			var after int
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				bkt := objstore.NewInMemBucket()
				j, err := journal.New(bkt, journal.Config{Retention: 48 * time.Hour}, nil)
				if err != nil {
					b.Fatal(err)
				}
				clk := &clock{}
				j.SetClock(clk.Now)
				for i := range uint64(n) {
					at := day.Add(time.Duration(i) * 24 * time.Hour / time.Duration(n))
					clk.Set(at)
					if _, err := j.Write(ctx, []manifest.Entry{entry(i, at)}, 1); err != nil {
						b.Fatal(err)
					}
				}
				clk.Set(day.Add(24*time.Hour + journal.DefaultCompactAge))
				b.StartTimer()
				if _, _, err := j.Sweep(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				segs, err := j.List(ctx)
				if err != nil {
					b.Fatal(err)
				}
				after = len(segs)
				b.StartTimer()
			}
			b.ReportMetric(float64(after), "segments-after")
		})
	}
}
