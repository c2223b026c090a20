package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

// synthBucket is a data prefix of n batch files that exist only as a
// formula: file i is named by a ULID of time base+i ms (so names list in
// time order, as the producers' do) and was last modified then. It holds
// no per-file state, so the heap a GC cycle uses is the cycle's own.
// Deletes are counted, not applied: every cycle sees the same bucket.
type synthBucket struct {
	objstore.Bucket // nil: any other method panics
	prefix          string
	n               int
	base            time.Time
	deletes, heads  atomic.Int64
}

var errSynthNotFound = errors.New("synthetic: not found")

func (b *synthBucket) name(i int) string {
	id := ulid.MustNew(ulid.Timestamp(b.base.Add(time.Duration(i)*time.Millisecond)), zeroEntropy{})
	return b.prefix + "/" + id.String() + ".batch"
}

type zeroEntropy struct{}

func (zeroEntropy) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func (b *synthBucket) Iter(ctx context.Context, dir string, f func(string) error, _ ...objstore.IterOption) error {
	if dir != b.prefix+"/" {
		return nil
	}
	for i := range b.n {
		if err := f(b.name(i)); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (b *synthBucket) Attributes(_ context.Context, name string) (objstore.ObjectAttributes, error) {
	b.heads.Add(1)
	s, ok := strings.CutPrefix(name, b.prefix+"/")
	s, ok2 := strings.CutSuffix(s, ".batch")
	id, err := ulid.ParseStrict(s)
	if !ok || !ok2 || err != nil {
		return objstore.ObjectAttributes{}, errSynthNotFound
	}
	return objstore.ObjectAttributes{Size: 1 << 20, LastModified: ulid.Time(id.Time())}, nil
}

func (b *synthBucket) Delete(context.Context, string) error { b.deletes.Add(1); return nil }
func (b *synthBucket) IsObjNotFoundErr(err error) bool      { return errors.Is(err, errSynthNotFound) }
func (b *synthBucket) Get(context.Context, string) (io.ReadCloser, error) {
	return nil, errSynthNotFound
}
func (b *synthBucket) Close() error { return nil }

// heapPeak samples the live heap every 200µs until stopped and returns the
// largest value seen.
func heapPeak() (stop func() uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak }
}

// BenchmarkGCCycle measures one GC cycle over 10k, 100k and 1M batch files
// in a synthetic bucket (half older than the grace period, half younger;
// the manifest references 1,000 of the old ones): time per cycle
// (ns/op), allocation per cycle (B/op) and the peak live heap above the
// heap before the cycle (peak-heap-MiB). The "hold-names" rows are the
// baseline, in the same run: the same listing gathered into a slice of
// every name first, as the cycle did before issue 12.
func BenchmarkGCCycle(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, mode := range []string{"stream", "hold-names"} {
			b.Run(fmt.Sprintf("files=%d/mode=%s", n, mode), func(b *testing.B) {
				grace := 10 * time.Minute
				now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
				// File i is modified at base+i ms; the first half are
				// older than the cutoff.
				base := now.Add(-grace - TimestampSlack - time.Duration(n/2)*time.Millisecond)
				bkt := &synthBucket{prefix: "ingest/data", n: n, base: base}
				store := memstore.New()
				q := manifest.NewQueue(store, "ingest/manifest", manifest.Options{})
				ctx := context.Background()
				var batch []manifest.NewEntry
				for i := 0; i < 1000; i++ {
					batch = append(batch, manifest.NewEntry{Location: bkt.name(i * (n / 2) / 1000)})
				}
				if _, err := q.Append(ctx, batch...); err != nil {
					b.Fatal(err)
				}
				c, err := New(bkt, q, convert.NewRegistry(), sink.NewHTTP("http://127.0.0.1:1", "", sink.HTTPOptions{}), Config{GCGracePeriod: grace}, NewMetrics(nil), nil)
				if err != nil {
					b.Fatal(err)
				}
				c.now = func() time.Time { return now }
				var peak uint64
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					runtime.GC()
					before := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
					metrics.Read(before)
					stop := heapPeak()
					b.StartTimer()
					if mode == "stream" {
						bkt.deletes.Store(0)
						if _, err := c.CollectGarbage(ctx); err != nil {
							b.Fatal(err)
						}
						if got, want := bkt.deletes.Load(), int64(n/2+1-1000); got != want { // files 0..n/2 are at or before the cutoff
							b.Fatalf("deleted %d, want %d", got, want)
						}
					} else {
						var names []string
						if err := bkt.Iter(ctx, "ingest/data/", func(s string) error { names = append(names, s); return nil }); err != nil {
							b.Fatal(err)
						}
						runtime.KeepAlive(names)
					}
					b.StopTimer()
					if p := stop(); p > before[0].Value.Uint64() {
						peak = max(peak, p-before[0].Value.Uint64())
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
				b.ReportMetric(float64(n), "files")
			})
		}
	}
}
