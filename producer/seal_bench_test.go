package producer

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/keptdir"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

// slowBucket and slowStore add a fixed latency to every upload and every
// manifest write: a store whose time is I/O, not CPU, so the seal rule's
// effect shows without the noise of a shared machine's CPU.
// slowBucket also counts uploads.
type slowBucket struct {
	objstore.Bucket
	d       time.Duration
	uploads atomic.Int64
}

func (b *slowBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	time.Sleep(b.d)
	b.uploads.Add(1)
	return b.Bucket.Upload(ctx, name, r, opts...)
}

type slowStore struct {
	cas.Store
	d time.Duration
}

func (s *slowStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	time.Sleep(s.d)
	return s.Store.WriteIf(ctx, name, data, v)
}

// BenchmarkSealRule: closed-loop clients, one 250-byte record per Append,
// against the two-stage pipeline (depth 2: the next batch is uploaded while
// the previous one commits) and, in the same op, the previous rule (depth
// 1: seal only when no batch is unfinished). x-depth1 is the ratio of
// events/s. store=sleep-2ms gives every upload and every manifest write 2 ms
// (about one fsync pair each on a quiet local disk); store=fs is a real
// directory bucket (fsyncs) under keptdir.New(b). Each op runs both rules,
// alternating which goes first.
func BenchmarkSealRule(b *testing.B) {
	for _, store := range []string{"sleep-2ms", "fs"} {
		for _, clients := range []int{1, 4, 16, 64} {
			b.Run(fmt.Sprintf("store=%s/clients=%d", store, clients), func(b *testing.B) {
				const perClient = 200
				var rate [3]float64
				var objects [3]float64
				for i := range b.N {
					// Alternate which rule goes first.
					for _, depth := range [][]int{{1, 2}, {2, 1}}[i%2] {
						r, o := sealRound(b, store, depth, clients, perClient)
						rate[depth] += r
						objects[depth] += o
					}
				}
				n := float64(b.N)
				b.ReportMetric(rate[2]/n, "events/s")
				b.ReportMetric(rate[1]/n, "depth1-events/s")
				b.ReportMetric(rate[2]/rate[1], "x-depth1")
				b.ReportMetric(objects[2]/n, "objects/1k-events")
				b.ReportMetric(objects[1]/n, "depth1-objects/1k-events")
			})
		}
	}
}

// sealRound runs one round on a fresh producer and returns events/s and
// objects per 1,000 events.
func sealRound(b *testing.B, store string, depth, clients, perClient int) (float64, float64) {
	b.Helper()
	var bkt *slowBucket
	var st cas.Store
	switch store {
	case "fs":
		fsb, fss, err := bucket.OpenDir(keptdir.New(b))
		if err != nil {
			b.Fatal(err)
		}
		bkt, st = &slowBucket{Bucket: fsb}, fss
	default:
		bkt = &slowBucket{Bucket: objstore.NewInMemBucket(), d: 2 * time.Millisecond}
		st = &slowStore{Store: memstore.New(), d: 2 * time.Millisecond}
	}
	m := NewMetrics(nil)
	q := manifest.NewQueue(st, manifestPath, manifest.Options{})
	p, err := New(bkt, q, Config{}, m, testLogger(nil))
	if err != nil {
		b.Fatal(err)
	}
	p.depth = depth
	rec := recs("r", 1, 250)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perClient {
				if err := p.Append(context.Background(), format.EventsHeader, rec); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	events := float64(clients * perClient)
	return events / elapsed.Seconds(), float64(bkt.uploads.Load()) / events * 1000
}
