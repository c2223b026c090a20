package producer_test

import (
	"context"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
	"github.com/bucketq/bucketq/producer"
)

// Append returns once the records are in a batch object and the batch is in
// the manifest: durable and queued. With no batch in flight, that is one
// upload and one manifest write later (group commit), not a timer.
func Example() {
	dir, _ := os.MkdirTemp("", "bucketq-example")
	defer os.RemoveAll(dir)
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		panic(err)
	}
	// The producer's metrics go on the program's own registry (nil: none).
	reg := prometheus.NewRegistry()
	m := producer.NewMetrics(reg)
	q := manifest.NewQueue(memstore.New(), producer.DefaultManifestPath, producer.QueueOptions(m))
	p, err := producer.New(bkt, q, producer.Config{}, m, nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	err = p.Append(ctx, format.EventsHeader, [][]byte{
		[]byte(`{"specversion":"1.0","id":"1","source":"s","type":"api-calls","subject":"c"}`),
	})
	fmt.Println("durable and queued:", err == nil)

	man, _ := q.Read(ctx)
	fmt.Println("entries:", len(man.Entries))
	if err := p.Close(ctx); err != nil {
		panic(err)
	}
	// Output:
	// durable and queued: true
	// entries: 1
}
