package manifest_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

const qpath = "ingest/manifest"

func fastOpts() manifest.Options {
	return manifest.Options{MinBackoff: 50 * time.Microsecond, MaxBackoff: time.Millisecond, RetryTimeout: 5 * time.Second}
}

func locs(prefix string, n int) []manifest.NewEntry {
	out := make([]manifest.NewEntry, n)
	for i := range out {
		out[i] = manifest.NewEntry{Location: fmt.Sprintf("%s-%d", prefix, i), Metadata: []manifest.Metadata{{Payload: hdr(4, 2)}}}
	}
	return out
}

func mustRead(t *testing.T, q *manifest.Queue) *manifest.Manifest {
	t.Helper()
	m, err := q.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func locations(es []manifest.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Location)
	}
	return out
}

func seqsOf(es []manifest.Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Sequence)
	}
	return out
}

func TestReadMissingIsEmpty(t *testing.T) {
	q := manifest.NewQueue(memstore.New(), qpath, fastOpts())
	m := mustRead(t, q)
	if len(m.Entries) != 0 || m.Epoch != 0 || m.NextSequence != 0 {
		t.Fatalf("missing manifest read as %+v", m)
	}
}

func TestReadCorrupt(t *testing.T) {
	s := memstore.New()
	s.Put(qpath, []byte("this is definitely not a manifest object"))
	q := manifest.NewQueue(s, qpath, fastOpts())
	if _, err := q.Read(context.Background()); !errors.Is(err, manifest.ErrVersion) {
		t.Fatalf("Read of garbage: %v", err)
	}
	start := time.Now()
	if _, err := q.Append(context.Background(), locs("a", 1)...); !errors.Is(err, manifest.ErrVersion) {
		t.Fatalf("Append to garbage: %v", err)
	}
	if _, err := q.Fence(context.Background()); !errors.Is(err, manifest.ErrVersion) {
		t.Fatalf("Fence of garbage: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("corrupt manifest was retried instead of failing at once")
	}
}

func TestAppendGroupCommitSequencesInOrder(t *testing.T) {
	s := memstore.New()
	var writes atomic.Int64
	opts := fastOpts()
	opts.OnWrite = func() { writes.Add(1) }
	q := manifest.NewQueue(s, qpath, opts)
	ctx := context.Background()
	seqs, err := q.Append(ctx, locs("g1", 5)...)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seqs, []uint64{0, 1, 2, 3, 4}) {
		t.Fatalf("seqs %v", seqs)
	}
	if writes.Load() != 1 {
		t.Fatalf("group of 5 took %d writes, want 1", writes.Load())
	}
	seqs, err = q.Append(ctx, locs("g2", 2)...)
	if err != nil || !reflect.DeepEqual(seqs, []uint64{5, 6}) {
		t.Fatalf("seqs %v err %v", seqs, err)
	}
	m := mustRead(t, q)
	want := []string{"g1-0", "g1-1", "g1-2", "g1-3", "g1-4", "g2-0", "g2-1"}
	if !reflect.DeepEqual(locations(m.Entries), want) || m.NextSequence != 7 {
		t.Fatalf("manifest %v next %d", locations(m.Entries), m.NextSequence)
	}
	if seqs, err := q.Append(ctx); err != nil || seqs != nil {
		t.Fatalf("empty Append = %v, %v", seqs, err)
	}
}

func TestAppendRetriesConflicts(t *testing.T) {
	s := memstore.New()
	var conflicts, writes atomic.Int64
	opts := fastOpts()
	opts.OnConflict = func() { conflicts.Add(1) }
	opts.OnWrite = func() { writes.Add(1) }
	q := manifest.NewQueue(s, qpath, opts)
	other := manifest.NewQueue(s, qpath, fastOpts())
	// Another producer sneaks in an append before each of our first 3 writes.
	var n atomic.Int64
	s.BeforeWrite = func(string) error {
		if n.Add(1) <= 6 && n.Load()%2 == 1 {
			if _, err := other.Append(context.Background(), manifest.NewEntry{Location: fmt.Sprintf("other-%d", n.Load())}); err != nil {
				return err
			}
		}
		return nil
	}
	seqs, err := q.Append(context.Background(), locs("mine", 2)...)
	if err != nil {
		t.Fatal(err)
	}
	if conflicts.Load() != 3 || writes.Load() != 4 {
		t.Fatalf("conflicts %d writes %d, want 3 and 4", conflicts.Load(), writes.Load())
	}
	if !reflect.DeepEqual(seqs, []uint64{3, 4}) {
		t.Fatalf("seqs %v, want [3 4] after three foreign appends", seqs)
	}
	m := mustRead(t, q)
	if got := locations(m.Entries); !reflect.DeepEqual(got, []string{"other-1", "other-3", "other-5", "mine-0", "mine-1"}) {
		t.Fatalf("entries %v", got)
	}
}

func TestAppendConcurrentProducers(t *testing.T) {
	s := memstore.New()
	q := manifest.NewQueue(s, qpath, fastOpts())
	var wg sync.WaitGroup
	got := make([][]uint64, 8)
	for p := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				seqs, err := q.Append(context.Background(), locs(fmt.Sprintf("p%d-%d", p, i), 1+i%3)...)
				if err != nil {
					t.Error(err)
					return
				}
				got[p] = append(got[p], seqs...)
			}
		}()
	}
	wg.Wait()
	m := mustRead(t, q)
	seen := map[uint64]bool{}
	total := 0
	for _, seqs := range got {
		for i, s := range seqs {
			if i > 0 && s <= seqs[i-1] {
				t.Fatalf("one producer's sequences not increasing: %v", seqs)
			}
			if seen[s] {
				t.Fatalf("sequence %d acked twice", s)
			}
			seen[s] = true
			total++
		}
	}
	if len(m.Entries) != total || m.NextSequence != uint64(total) {
		t.Fatalf("%d entries, next %d, acked %d", len(m.Entries), m.NextSequence, total)
	}
}

// errLost is what a lost response looks like to the caller: the write
// landed, the caller sees an error that is not a conflict.
var errLost = errors.New("connection reset by peer (response lost)")

func TestAppendLostResponseNotAppendedTwice(t *testing.T) {
	s := memstore.New()
	var once atomic.Bool
	s.AfterWrite = func(string) error {
		if once.CompareAndSwap(false, true) {
			return errLost
		}
		return nil
	}
	q := manifest.NewQueue(s, qpath, fastOpts())
	if _, err := q.Append(context.Background(), locs("before", 1)...); err != nil {
		t.Fatal(err)
	}
	if !once.Load() {
		t.Fatal("hook not triggered")
	}
	seqs, err := q.Append(context.Background(), locs("grp", 3)...)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seqs, []uint64{1, 2, 3}) {
		t.Fatalf("seqs %v", seqs)
	}
	m := mustRead(t, q)
	if got := locations(m.Entries); !reflect.DeepEqual(got, []string{"before-0", "grp-0", "grp-1", "grp-2"}) {
		t.Fatalf("entries %v", got)
	}
	// The first append's write landed with a lost response: it must be there once.
	once.Store(false)
	seqs, err = q.Append(context.Background(), locs("lost", 2)...)
	if err != nil {
		t.Fatal(err)
	}
	m = mustRead(t, q)
	if got := locations(m.Entries); !reflect.DeepEqual(got, []string{"before-0", "grp-0", "grp-1", "grp-2", "lost-0", "lost-1"}) {
		t.Fatalf("lost-response append duplicated: %v", got)
	}
	if !reflect.DeepEqual(seqs, []uint64{4, 5}) || m.NextSequence != 6 {
		t.Fatalf("seqs %v next %d", seqs, m.NextSequence)
	}
}

// A group whose write landed with a lost response, and which the consumer
// dequeued (through sequence 1) before the producer re-read.
//   - Partly dequeued (group of 4): the rest of the group is still there, so
//     the write landed: the append succeeded with the sequences it was given.
//   - Fully dequeued (group of 2): cannot be told apart from a write that
//     never landed: it is appended again (at-least-once; the duplicate batch
//     carries the same event ids).
func TestAppendLostResponseThenDequeued(t *testing.T) {
	cases := []struct {
		name        string
		group       int
		wantSeqs    []uint64
		wantEntries []string
		wantNext    uint64
	}{
		{"partly dequeued", 4, []uint64{0, 1, 2, 3}, []string{"g-2", "g-3"}, 4},
		{"fully dequeued is appended again", 2, []uint64{2, 3}, []string{"g-0", "g-1"}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := memstore.New()
			q := manifest.NewQueue(s, qpath, fastOpts())
			ctx := context.Background()
			lease, err := q.Fence(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var fired atomic.Bool
			s.AfterWrite = func(string) error {
				if fired.CompareAndSwap(false, true) {
					// The consumer delivers and dequeues the first two of
					// the group before the producer learns the outcome.
					if _, err := lease.Dequeue(ctx, 1); err != nil {
						t.Errorf("dequeue: %v", err)
					}
					return errLost
				}
				return nil
			}
			seqs, err := q.Append(ctx, locs("g", c.group)...)
			if err != nil {
				t.Fatalf("Append after a lost response failed: %v", err)
			}
			if !reflect.DeepEqual(seqs, c.wantSeqs) {
				t.Fatalf("seqs %v, want %v", seqs, c.wantSeqs)
			}
			m := mustRead(t, q)
			if got := locations(m.Entries); !reflect.DeepEqual(got, c.wantEntries) || m.NextSequence != c.wantNext {
				t.Fatalf("entries %v next %d, want %v next %d", got, m.NextSequence, c.wantEntries, c.wantNext)
			}
		})
	}
}

func TestAppendGivesUpAfterRetryTimeout(t *testing.T) {
	s := memstore.New()
	var attempts atomic.Int64
	s.BeforeWrite = func(string) error { attempts.Add(1); return errors.New("503 slow down") }
	opts := fastOpts()
	opts.RetryTimeout = 100 * time.Millisecond
	q := manifest.NewQueue(s, qpath, opts)
	start := time.Now()
	_, err := q.Append(context.Background(), locs("x", 1)...)
	el := time.Since(start)
	if err == nil {
		t.Fatal("Append succeeded although every write fails")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v does not wrap the deadline", err)
	}
	for _, want := range []string{"append", qpath, "503 slow down"} {
		if !contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	if el < 100*time.Millisecond || el > 2*time.Second {
		t.Fatalf("gave up after %v, RetryTimeout 100ms", el)
	}
	if attempts.Load() < 3 {
		t.Fatalf("only %d attempts", attempts.Load())
	}
	if m := mustRead(t, q); len(m.Entries) != 0 {
		t.Fatalf("entries %v", m.Entries)
	}
	// The caller's own deadline wins when earlier.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	opts.RetryTimeout = time.Minute
	start = time.Now()
	if _, err := manifest.NewQueue(s, qpath, opts).Append(ctx, locs("y", 1)...); err == nil || time.Since(start) > time.Second {
		t.Fatalf("caller deadline ignored: %v after %v", err, time.Since(start))
	}
}

func contains(s, sub string) bool { return len(sub) == 0 || indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestAppendTransientErrorsThenSuccess(t *testing.T) {
	s := memstore.New()
	var n atomic.Int64
	s.BeforeWrite = func(string) error {
		if n.Add(1) <= 3 {
			return errors.New("transient")
		}
		return nil
	}
	var reads atomic.Int64
	s.BeforeRead = func(string) error {
		if reads.Add(1) == 2 {
			return errors.New("read hiccup")
		}
		return nil
	}
	q := manifest.NewQueue(s, qpath, fastOpts())
	seqs, err := q.Append(context.Background(), locs("t", 2)...)
	if err != nil || !reflect.DeepEqual(seqs, []uint64{0, 1}) {
		t.Fatalf("seqs %v err %v", seqs, err)
	}
	if m := mustRead(t, q); len(m.Entries) != 2 {
		t.Fatalf("entries %v", locations(m.Entries))
	}
}

func TestFenceBumpsEpoch(t *testing.T) {
	s := memstore.New()
	q := manifest.NewQueue(s, qpath, fastOpts())
	ctx := context.Background()
	if _, err := q.Append(ctx, locs("a", 3)...); err != nil {
		t.Fatal(err)
	}
	for want := uint64(1); want <= 3; want++ {
		l, err := q.Fence(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l.Epoch() != want {
			t.Fatalf("lease epoch %d, want %d", l.Epoch(), want)
		}
		m := mustRead(t, q)
		if m.Epoch != want || len(m.Entries) != 3 || m.NextSequence != 3 {
			t.Fatalf("after fence: %+v", m)
		}
	}
	// Producers never touch the epoch.
	if _, err := q.Append(ctx, locs("b", 1)...); err != nil {
		t.Fatal(err)
	}
	if m := mustRead(t, q); m.Epoch != 3 {
		t.Fatalf("append changed epoch to %d", m.Epoch)
	}
}

func TestFenceOfMissingManifestCreatesIt(t *testing.T) {
	s := memstore.New()
	q := manifest.NewQueue(s, qpath, fastOpts())
	l, err := q.Fence(context.Background())
	if err != nil || l.Epoch() != 1 {
		t.Fatalf("lease %v err %v", l, err)
	}
	b, _, err := s.Read(context.Background(), qpath)
	if err != nil {
		t.Fatal(err)
	}
	f, err := manifest.ReadFooter(b)
	if err != nil || f.Epoch != 1 || f.EntryCount != 0 {
		t.Fatalf("footer %+v %v", f, err)
	}
}

func TestFencedLeaseCannotDequeueOrRead(t *testing.T) {
	s := memstore.New()
	q := manifest.NewQueue(s, qpath, fastOpts())
	ctx := context.Background()
	if _, err := q.Append(ctx, locs("a", 4)...); err != nil {
		t.Fatal(err)
	}
	old, err := q.Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Read(ctx); err != nil {
		t.Fatalf("current lease Read: %v", err)
	}
	newer, err := q.Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, _, _ := s.Read(ctx, qpath)
	removed, err := old.Dequeue(ctx, 3)
	if !errors.Is(err, manifest.ErrFenced) || removed != nil {
		t.Fatalf("fenced Dequeue = %v, %v; want ErrFenced", removed, err)
	}
	if _, err := old.Read(ctx); !errors.Is(err, manifest.ErrFenced) {
		t.Fatalf("fenced Read: %v", err)
	}
	after, _, _ := s.Read(ctx, qpath)
	if string(before) != string(after) {
		t.Fatal("fenced Dequeue changed the manifest")
	}
	removed, err = newer.Dequeue(ctx, 1)
	if err != nil || !reflect.DeepEqual(seqsOf(removed), []uint64{0, 1}) {
		t.Fatalf("new lease Dequeue = %v, %v", seqsOf(removed), err)
	}
}

// A Dequeue racing a Fence: the fence lands between the dequeue's read and
// its write, so the write conflicts, the re-read sees the new epoch and the
// dequeue fails with ErrFenced, removing nothing.
func TestDequeueRacingFence(t *testing.T) {
	s := memstore.New()
	q := manifest.NewQueue(s, qpath, fastOpts())
	ctx := context.Background()
	if _, err := q.Append(ctx, locs("a", 2)...); err != nil {
		t.Fatal(err)
	}
	old, _ := q.Fence(ctx)
	var fired atomic.Bool
	s.BeforeWrite = func(string) error {
		if fired.CompareAndSwap(false, true) {
			if _, err := q.Fence(ctx); err != nil {
				t.Errorf("fence: %v", err)
			}
		}
		return nil
	}
	if _, err := old.Dequeue(ctx, 1); !errors.Is(err, manifest.ErrFenced) {
		t.Fatalf("Dequeue racing a fence: %v", err)
	}
	if m := mustRead(t, q); len(m.Entries) != 2 || m.Epoch != 2 {
		t.Fatalf("manifest %+v", m)
	}
}

func TestDequeue(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		through uint64
		removed []uint64
		left    []uint64
	}{
		{"first", 0, []uint64{0}, []uint64{1, 2, 3, 4}},
		{"middle", 2, []uint64{0, 1, 2}, []uint64{3, 4}},
		{"all", 4, []uint64{0, 1, 2, 3, 4}, nil},
		{"max", ^uint64(0), []uint64{0, 1, 2, 3, 4}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := memstore.New()
			var writes atomic.Int64
			opts := fastOpts()
			opts.OnWrite = func() { writes.Add(1) }
			q := manifest.NewQueue(s, qpath, opts)
			if _, err := q.Append(ctx, locs("d", 5)...); err != nil {
				t.Fatal(err)
			}
			l, _ := q.Fence(ctx)
			removed, err := l.Dequeue(ctx, tt.through)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(seqsOf(removed), tt.removed) {
				t.Fatalf("removed %v, want %v", seqsOf(removed), tt.removed)
			}
			if removed[0].Location != "d-0" || len(removed[0].Metadata) != 1 {
				t.Fatalf("removed entry lacks its contents: %+v", removed[0])
			}
			m := mustRead(t, q)
			if !reflect.DeepEqual(seqsOf(m.Entries), tt.left) || m.NextSequence != 5 || m.Epoch != 1 {
				t.Fatalf("left %v next %d epoch %d", seqsOf(m.Entries), m.NextSequence, m.Epoch)
			}
			// Dequeuing again removes nothing and writes nothing.
			w := writes.Load()
			again, err := l.Dequeue(ctx, tt.through)
			if err != nil || len(again) != 0 || writes.Load() != w {
				t.Fatalf("second Dequeue = %v, %v, %d writes", again, err, writes.Load()-w)
			}
		})
	}
}

func TestDequeueLostResponseReturnsRemoved(t *testing.T) {
	s := memstore.New()
	q := manifest.NewQueue(s, qpath, fastOpts())
	ctx := context.Background()
	if _, err := q.Append(ctx, locs("d", 4)...); err != nil {
		t.Fatal(err)
	}
	l, _ := q.Fence(ctx)
	var fired atomic.Bool
	s.AfterWrite = func(string) error {
		if fired.CompareAndSwap(false, true) {
			return errLost
		}
		return nil
	}
	removed, err := l.Dequeue(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !fired.Load() {
		t.Fatal("hook not triggered")
	}
	if !reflect.DeepEqual(locations(removed), []string{"d-0", "d-1", "d-2"}) {
		t.Fatalf("removed %v", locations(removed))
	}
	if m := mustRead(t, q); !reflect.DeepEqual(seqsOf(m.Entries), []uint64{3}) {
		t.Fatalf("left %v", seqsOf(m.Entries))
	}
}

// Dequeue through a sequence the lease has not seen yet, while a producer
// appends between the dequeue's conflicting attempt and its retry: every
// entry the dequeue removes is returned, including those appended meanwhile
// (the caller garbage-collects and journals exactly what was returned).
func TestDequeueReturnsEverythingItRemoves(t *testing.T) {
	s := memstore.New()
	q := manifest.NewQueue(s, qpath, fastOpts())
	ctx := context.Background()
	if _, err := q.Append(ctx, locs("a", 2)...); err != nil {
		t.Fatal(err)
	}
	l, _ := q.Fence(ctx)
	var fired atomic.Bool
	s.BeforeWrite = func(string) error {
		if fired.CompareAndSwap(false, true) {
			if _, err := q.Append(ctx, locs("late", 2)...); err != nil {
				t.Errorf("append: %v", err)
			}
		}
		return nil
	}
	removed, err := l.Dequeue(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	m := mustRead(t, q)
	if len(m.Entries) != 0 {
		t.Fatalf("left %v", locations(m.Entries))
	}
	if got := locations(removed); !reflect.DeepEqual(got, []string{"a-0", "a-1", "late-0", "late-1"}) {
		t.Fatalf("removed %v: entries removed but not returned", got)
	}
}

func TestHooksCalled(t *testing.T) {
	s := memstore.New()
	var writes, conflicts atomic.Int64
	opts := fastOpts()
	opts.OnWrite = func() { writes.Add(1) }
	opts.OnConflict = func() { conflicts.Add(1) }
	q := manifest.NewQueue(s, qpath, opts)
	ctx := context.Background()
	if _, err := q.Append(ctx, locs("a", 1)...); err != nil {
		t.Fatal(err)
	}
	l, _ := q.Fence(ctx)
	if _, err := l.Dequeue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if writes.Load() != 3 || conflicts.Load() != 0 {
		t.Fatalf("writes %d conflicts %d, want 3 and 0", writes.Load(), conflicts.Load())
	}
	// A conflicting create: someone else creates the manifest between our
	// read and our create-only write.
	s2 := memstore.New()
	writes.Store(0)
	var fired atomic.Bool
	s2.BeforeWrite = func(name string) error {
		if fired.CompareAndSwap(false, true) {
			b, _, _ := manifest.AppendEntries(manifest.Empty(0), locs("x", 1), 0)
			if _, err := s2.WriteIf(ctx, name, b, ""); err != nil {
				return err
			}
		}
		return nil
	}
	q2 := manifest.NewQueue(s2, qpath, opts)
	if _, err := q2.Append(ctx, locs("y", 1)...); err != nil {
		t.Fatal(err)
	}
	if writes.Load() != 2 || conflicts.Load() != 1 {
		t.Fatalf("writes %d conflicts %d, want 2 and 1", writes.Load(), conflicts.Load())
	}
	_ = cas.ErrConflict
}

// TestAppendRetryDoesNotDecodeEntries: after a failed write the producer
// checks whether its entries landed by walking locations only, so entries
// whose metadata it cannot decode do not stop it (Decode would refuse this
// manifest), and an unchanged next_sequence skips even that walk.
func TestAppendRetryDoesNotDecodeEntries(t *testing.T) {
	// One entry whose metadata count claims more items than it holds.
	body := binary.LittleEndian.AppendUint64(nil, 0) // sequence
	body = binary.LittleEndian.AppendUint16(body, 5)
	body = append(body, "other"...)
	body = binary.LittleEndian.AppendUint32(body, 1000) // metadata_count, no items
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(body)))
	b = append(b, body...)
	// Version 1: a version 2 manifest is checksummed, and its walk would
	// refuse a damaged entry as it should; what is tested here is that the
	// walk does not decode metadata.
	b = manifest.AppendFooter(b, manifest.Footer{EntryCount: 1, NextSequence: 1, Version: manifest.Version1})
	if _, err := manifest.Decode(b); err == nil {
		t.Fatal("the opaque entry decodes; the test needs one that does not")
	}
	errReset := errors.New("connection reset")
	appendOther := func(s *memstore.Store) error {
		cur, v, err := s.Read(context.Background(), qpath)
		if err != nil {
			return err
		}
		out, _, err := manifest.AppendEntries(cur, locs("o", 1), manifest.Version1)
		if err != nil {
			return err
		}
		_, err = s.WriteIf(context.Background(), qpath, out, v)
		return err
	}
	for _, c := range []struct {
		name          string
		before, after func(*memstore.Store) error // first write only
		wantEntries   uint32
	}{
		{"conflict", func(*memstore.Store) error { return fmt.Errorf("%w: injected", cas.ErrConflict) }, nil, 3},
		{"unknown outcome, not landed", func(*memstore.Store) error { return errReset }, nil, 3},
		{"unknown outcome, landed", nil, func(*memstore.Store) error { return errReset }, 3},
		{"unknown outcome, not landed, another producer appended", func(s *memstore.Store) error {
			if err := appendOther(s); err != nil {
				return err
			}
			return errReset
		}, nil, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := memstore.New()
			if _, err := s.WriteIf(context.Background(), qpath, b, ""); err != nil {
				t.Fatal(err)
			}
			var nb, na atomic.Int64
			s.BeforeWrite = func(string) error {
				if c.before != nil && nb.Add(1) == 1 {
					return c.before(s)
				}
				return nil
			}
			s.AfterWrite = func(string) error {
				if c.after != nil && na.Add(1) == 1 {
					return c.after(s)
				}
				return nil
			}
			o := fastOpts()
			o.Version = manifest.Version1
			q := manifest.NewQueue(s, qpath, o)
			seqs, err := q.Append(context.Background(), locs("x", 2)...)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			cur, _, _ := s.Read(context.Background(), qpath)
			f, err := manifest.ReadFooter(cur)
			if err != nil {
				t.Fatal(err)
			}
			if want := []uint64{f.NextSequence - 2, f.NextSequence - 1}; !reflect.DeepEqual(seqs, want) || f.EntryCount != c.wantEntries || uint64(f.EntryCount) != f.NextSequence {
				t.Fatalf("seqs %v, footer %+v, want %d entries and the last two sequences", seqs, f, c.wantEntries)
			}
		})
	}
}
