package manifest_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

// counted is a memstore whose reads, writes and conflicts are counted.
type counted struct {
	*memstore.Store
	reads, writes, conflicts atomic.Int64
}

func newCounted() (*counted, manifest.Options) {
	c := &counted{Store: memstore.New()}
	c.BeforeRead = func(string) error { c.reads.Add(1); return nil }
	o := fastOpts()
	o.OnWrite = func() { c.writes.Add(1) }
	o.OnConflict = func() { c.conflicts.Add(1) }
	return c, o
}

// newGuessPair returns a counted store, the queue under test on it (its
// writes and conflicts counted) and another writer of the same manifest.
func newGuessPair() (*counted, *manifest.Queue, *manifest.Queue) {
	s, o := newCounted()
	return s, manifest.NewQueue(s, qpath, o), manifest.NewQueue(s.Store, qpath, fastOpts())
}

func (c *counted) counts() [3]int64 {
	return [3]int64{c.reads.Swap(0), c.writes.Swap(0), c.conflicts.Swap(0)}
}

// TestAppendBuildsOnItsLastWrite: an Append after a successful one writes
// without reading (one request per commit instead of two, the manifest's
// only writer), and the manifest holds every entry once, in order.
func TestAppendBuildsOnItsLastWrite(t *testing.T) {
	s, o := newCounted()
	q := manifest.NewQueue(s, qpath, o)
	ctx := context.Background()
	var want []string
	for i := range 10 {
		es := locs(string(rune('a'+i)), 2)
		seqs, err := q.Append(ctx, es...)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(seqs, []uint64{uint64(2 * i), uint64(2*i + 1)}) {
			t.Fatalf("append %d: seqs %v", i, seqs)
		}
		wantReads := int64(0)
		if i == 0 {
			wantReads = 1
		}
		if got := s.counts(); got != [3]int64{wantReads, 1, 0} {
			t.Fatalf("append %d: reads, writes, conflicts = %v, want [%d 1 0]", i, got, wantReads)
		}
		want = append(want, es[0].Location, es[1].Location)
	}
	if got := locations(mustRead(t, q).Entries); !reflect.DeepEqual(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
}

// TestAppendGuessConflicts: when another writer (a second producer, the
// consumer's dequeue) wrote since, the guess conflicts once, the Append
// reads and lands after the other's entries, and the next 16 Appends read
// first instead of guessing again; then guessing resumes.
func TestAppendGuessConflicts(t *testing.T) {
	s, q, other := newGuessPair()
	ctx := context.Background()
	if _, err := q.Append(ctx, locs("mine", 1)...); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Append(ctx, locs("other", 1)...); err != nil {
		t.Fatal(err)
	}
	s.counts()
	seqs, err := q.Append(ctx, locs("again", 1)...)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seqs, []uint64{2}) {
		t.Fatalf("seqs %v, want [2] after the other's entry", seqs)
	}
	if got := s.counts(); got != [3]int64{1, 2, 1} {
		t.Fatalf("reads, writes, conflicts = %v, want one stale guess then a read: [1 2 1]", got)
	}
	for i := range 16 {
		if _, err := q.Append(ctx, locs("cold", 1)...); err != nil {
			t.Fatal(err)
		}
		if got := s.counts(); got != [3]int64{1, 1, 0} {
			t.Fatalf("append %d after the conflict: reads, writes, conflicts = %v, want [1 1 0]", i, got)
		}
	}
	if _, err := q.Append(ctx, locs("warm", 1)...); err != nil {
		t.Fatal(err)
	}
	if got := s.counts(); got != [3]int64{0, 1, 0} {
		t.Fatalf("17th append after the conflict: reads, writes, conflicts = %v, want a guess again: [0 1 0]", got)
	}
	m := mustRead(t, q)
	if m.NextSequence != 20 || len(m.Entries) != 20 {
		t.Fatalf("manifest next_sequence %d with %d entries, want 20 and 20", m.NextSequence, len(m.Entries))
	}
}

// TestAppendGuessAfterConsumerWrites: the queue's own Fence and Dequeue
// drop the guess (they are not Appends), so the next Append reads rather
// than conflicting, and a failed write of unknown outcome drops it too:
// the retry reads and finds the landed entries instead of appending them
// twice.
func TestAppendGuessAfterConsumerWrites(t *testing.T) {
	s, o := newCounted()
	q := manifest.NewQueue(s, qpath, o)
	ctx := context.Background()
	if _, err := q.Append(ctx, locs("a", 2)...); err != nil {
		t.Fatal(err)
	}
	l, err := q.Fence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Dequeue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	s.counts()
	if _, err := q.Append(ctx, locs("b", 1)...); err != nil {
		t.Fatal(err)
	}
	if got := s.counts(); got != [3]int64{1, 1, 0} {
		t.Fatalf("append after the queue's own dequeue: reads, writes, conflicts = %v, want [1 1 0]", got)
	}

	// The next write lands but its response is lost.
	var lose atomic.Bool
	lose.Store(true)
	s.AfterWrite = func(string) error {
		if lose.CompareAndSwap(true, false) {
			return errors.New("connection reset")
		}
		return nil
	}
	seqs, err := q.Append(ctx, locs("lost", 1)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(ctx, locs("after", 1)...); err != nil {
		t.Fatal(err)
	}
	m := mustRead(t, q)
	if got := locations(m.Entries); !reflect.DeepEqual(got, []string{"a-1", "b-0", "lost-0", "after-0"}) || !reflect.DeepEqual(seqs, []uint64{3}) {
		t.Fatalf("entries %v, lost append seqs %v; want a-1 b-0 lost-0 after-0 and [3]", got, seqs)
	}
}

// TestAppendGuessBacksOffUnderContention: each stale guess in a row
// doubles how many Appends read first (16, 32, 64, ...), so a producer
// among many on one manifest wastes few writes on guesses; one guess that
// lands sets it back to 16.
func TestAppendGuessBacksOffUnderContention(t *testing.T) {
	s, q, other := newGuessPair()
	ctx := context.Background()
	appendQ := func(what string, want [3]int64) {
		t.Helper()
		if _, err := q.Append(ctx, locs(what, 1)...); err != nil {
			t.Fatal(err)
		}
		if got := s.counts(); got != want {
			t.Fatalf("%s: reads, writes, conflicts = %v, want %v", what, got, want)
		}
	}
	others := 0
	staleGuess := func(what string) {
		t.Helper()
		// Locations are unique, as a producer's are: an Append that finds
		// its location already there takes it for its own landed write.
		others++
		if _, err := other.Append(ctx, locs(fmt.Sprintf("other%d", others), 1)...); err != nil {
			t.Fatal(err)
		}
		s.counts()
		appendQ(what, [3]int64{1, 2, 1}) // the guess conflicts, then a read and a write
	}
	appendQ("first", [3]int64{1, 1, 0})
	for _, cold := range []int{16, 32, 64} {
		staleGuess(fmt.Sprintf("stale guess before %d cold", cold))
		for i := range cold {
			appendQ(fmt.Sprintf("cold %d of %d", i+1, cold), [3]int64{1, 1, 0})
		}
	}
	appendQ("a guess that lands", [3]int64{0, 1, 0})
	staleGuess("stale again after one landed")
	for i := range 16 {
		appendQ(fmt.Sprintf("cold %d of 16 after the reset", i+1), [3]int64{1, 1, 0})
	}
	appendQ("guessing again", [3]int64{0, 1, 0})
}
