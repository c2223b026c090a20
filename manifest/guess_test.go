package manifest_test

import (
	"context"
	"errors"
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
	s, o := newCounted()
	q := manifest.NewQueue(s, qpath, o)
	other := manifest.NewQueue(s.Store, qpath, fastOpts())
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
