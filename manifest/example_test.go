package manifest_test

import (
	"context"
	"fmt"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

// The queue lives in one object rewritten with conditional writes:
// producers append batch locations, one consumer fences older consumers,
// reads the entries in order and dequeues what it delivered.
func ExampleQueue() {
	ctx := context.Background()
	q := manifest.NewQueue(memstore.New(), "ingest/manifest", manifest.Options{})

	events := []manifest.Metadata{{Payload: format.EventsHeader.Bytes()}}
	seqs, err := q.Append(ctx,
		manifest.NewEntry{Location: "ingest/data/a.batch", Metadata: events},
		manifest.NewEntry{Location: "ingest/data/b.batch", Metadata: events})
	if err != nil {
		panic(err)
	}
	fmt.Println("appended", seqs)

	lease, err := q.Fence(ctx) // the consumer's start: epoch 1
	if err != nil {
		panic(err)
	}
	m, err := lease.Read(ctx)
	if err != nil {
		panic(err)
	}
	for _, e := range m.Entries {
		fmt.Println("deliver", e.Sequence, e.Location)
	}
	removed, err := lease.Dequeue(ctx, m.Entries[0].Sequence)
	if err != nil {
		panic(err)
	}
	fmt.Println("dequeued", len(removed), "epoch", lease.Epoch())
	// Output:
	// appended [0 1]
	// deliver 0 ingest/data/a.batch
	// deliver 1 ingest/data/b.batch
	// dequeued 1 epoch 1
}
