package s3store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/s3store"
)

// BenchmarkManifestCommits measures manifest appends against the real S3
// server: P concurrent producers each committing with manifest.Queue.Append,
// either one entry per commit or 8 entries per commit (group commit).
// One op = one Append call. Reported: commits/s, conflicts/op, and
// events/s assuming 500 events per batch (one batch per entry).
//
//	./scripts/with-services.sh go test -run '^$' -bench ManifestCommits ./manifest/cas/s3store/
func BenchmarkManifestCommits(b *testing.B) {
	const eventsPerBatch = 500
	cfg := s3store.TestConfigFromEnv(b)
	store, err := s3store.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, group := range []int{1, 8} {
		for _, producers := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("group=%d/producers=%d", group, producers), func(b *testing.B) {
				var conflicts, writes atomic.Int64
				q := manifest.NewQueue(store, fmt.Sprintf("bench/%s/manifest", b.Name()), manifest.Options{
					RetryTimeout: 5 * time.Minute,
					OnConflict:   func() { conflicts.Add(1) },
					OnWrite:      func() { writes.Add(1) },
				})
				ctx := context.Background()
				var next atomic.Int64
				var wg sync.WaitGroup
				errs := make(chan error, producers)
				b.ResetTimer()
				start := time.Now()
				for p := 0; p < producers; p++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							entries := make([]manifest.NewEntry, group)
							for e := range entries {
								entries[e] = manifest.NewEntry{Location: fmt.Sprintf("ingest/data/p%d-%d-%d", p, i, e)}
							}
							if _, err := q.Append(ctx, entries...); err != nil {
								errs <- err
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				commitsPerSec := float64(b.N) / elapsed.Seconds()
				b.ReportMetric(commitsPerSec, "commits/s")
				b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/op")
				b.ReportMetric(commitsPerSec*float64(group*eventsPerBatch), "events/s")
				b.ReportMetric(0, "ns/op") // wall time per op is not meaningful with concurrency; see commits/s
			})
		}
	}
}
