package manifest

import (
	"context"
	"testing"

	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

func TestRecommitDoesNotDuplicateLandedAppend(t *testing.T) {
	ctx := context.Background()
	q := NewQueue(memstore.New(), "m", Options{})
	first, err := q.Append(ctx, NewEntry{Location: "a"}, NewEntry{Location: "b"})
	if err != nil {
		t.Fatal(err)
	}
	// The caller did not learn that its Append landed and retries.
	again, err := q.Recommit(ctx, NewEntry{Location: "a"}, NewEntry{Location: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 2 || again[0] != first[0] || again[1] != first[1] {
		t.Fatalf("recommit sequences %v, first append %v", again, first)
	}
	// A recommit of entries that never landed appends them.
	fresh, err := q.Recommit(ctx, NewEntry{Location: "c"})
	if err != nil || len(fresh) != 1 || fresh[0] != 2 {
		t.Fatalf("recommit of new entry: %v %v", fresh, err)
	}
	m, _ := q.Read(ctx)
	if len(m.Entries) != 3 || m.NextSequence != 3 {
		t.Fatalf("manifest has %d entries, next %d; want 3, 3", len(m.Entries), m.NextSequence)
	}
}
