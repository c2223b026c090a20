package s3store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/s3store"
	"github.com/bucketq/bucketq/producer"
)

// eventsPerAppend is the OpenMeter batch size: one producer Append carries
// this many ~250-byte events.
const eventsPerAppend = 500

// BenchmarkManifestCommits measures manifest commits against the real S3
// server with P = 1, 4, 16 producers on one manifest, while a consumer-like
// dequeuer (a fenced lease) removes every committed entry every 100 ms, so
// the manifest stays small and each CAS rewrites about the same amount
// whatever b.N is (max-manifest-entries shows it).
//
//   - mode=entry, the baseline without group commit: each producer calls
//     manifest.Queue.Append with one entry; one op = one such commit.
//   - mode=producer: P real producers (producer.New, default config but
//     64 KiB uncompressed batches so each 500-event Append is one batch, and a data
//     bucket that discards uploads so only the manifest is measured), each
//     fed by 8 concurrent closed-loop appenders of 500 ~250-byte events; the
//     producer's commit loop groups the batches uploaded while a CAS is in
//     flight into its next one. One op = one Append acknowledged (500
//     events durable in the manifest); events/s is measured from the acks.
//
// Reported: commits/s (successful manifest writes by the producers),
// conflicts/commit (producer CAS conflicts per successful commit),
// entries/commit (group size), events/s (producer mode), and the dequeuer's
// own dequeues/s and conflicts, counted apart.
//
//	./scripts/with-services.sh go test -run '^$' -bench ManifestCommits ./manifest/cas/s3store/
func BenchmarkManifestCommits(b *testing.B) {
	cfg := storetest.S3Config(b)
	store, err := s3store.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var run atomic.Int64
	for _, mode := range []string{"entry", "producer"} {
		for _, producers := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("mode=%s/producers=%d", mode, producers), func(b *testing.B) {
				path := fmt.Sprintf("bench/commits-%s-%d-%d/manifest", mode, producers, run.Add(1))
				if mode == "entry" {
					benchEntryCommits(b, store, path, producers)
				} else {
					benchProducerCommits(b, store, path, producers)
				}
			})
		}
	}
}

// dequeuer is the consumer's side of the manifest, reduced to what keeps
// it bounded: fence once, then every interval read and dequeue everything.
type dequeuer struct {
	dequeues, writes, conflicts atomic.Int64
	maxEntries                  atomic.Int64
	stop                        context.CancelFunc
	done                        chan error
}

func startDequeuer(b *testing.B, store cas.Store, path string) *dequeuer {
	d := &dequeuer{done: make(chan error, 1)}
	q := manifest.NewQueue(store, path, manifest.Options{
		OnWrite:    func() { d.writes.Add(1) },
		OnConflict: func() { d.conflicts.Add(1) },
	})
	lease, err := q.Fence(context.Background())
	if err != nil {
		b.Fatalf("fence: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				d.done <- nil
				return
			case <-t.C:
			}
			m, err := lease.Read(ctx)
			if err == nil && len(m.Entries) > 0 {
				if n := int64(len(m.Entries)); n > d.maxEntries.Load() {
					d.maxEntries.Store(n)
				}
				_, err = lease.Dequeue(ctx, m.Entries[len(m.Entries)-1].Sequence)
				d.dequeues.Add(1)
			}
			if err != nil && ctx.Err() == nil {
				d.done <- fmt.Errorf("dequeuer: %w", err)
				return
			}
		}
	}()
	return d
}

func (d *dequeuer) finish(b *testing.B, elapsed time.Duration) {
	d.stop()
	if err := <-d.done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(d.dequeues.Load())/elapsed.Seconds(), "dequeues/s")
	b.ReportMetric(float64(d.conflicts.Load()), "dequeue-conflicts")
	b.ReportMetric(float64(d.maxEntries.Load()), "max-manifest-entries")
}

// benchEntryCommits: P goroutines, each its own Queue, one entry per Append.
func benchEntryCommits(b *testing.B, store cas.Store, path string, producers int) {
	var conflicts, writes atomic.Int64
	d := startDequeuer(b, store, path)
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	b.ResetTimer()
	start := time.Now()
	for p := range producers {
		q := manifest.NewQueue(store, path, manifest.Options{
			RetryTimeout: 5 * time.Minute,
			OnConflict:   func() { conflicts.Add(1) },
			OnWrite:      func() { writes.Add(1) },
		})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := q.Append(ctx, manifest.NewEntry{Location: fmt.Sprintf("ingest/data/p%d-%d.batch", p, i)}); err != nil {
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
	d.finish(b, elapsed)
	commits := float64(b.N)
	b.ReportMetric(commits/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(conflicts.Load())/commits, "conflicts/commit")
	b.ReportMetric(1, "entries/commit")
	b.ReportMetric(0, "ns/op") // wall time per op means little with concurrency; see commits/s
}

// discardBucket is a data bucket that accepts every upload and keeps
// nothing, so the producer benchmark measures the manifest alone.
type discardBucket struct{ objstore.Bucket }

func (discardBucket) Upload(_ context.Context, _ string, r io.Reader, _ ...objstore.ObjectUploadOption) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// appendersPerProducer is how many closed-loop Append callers feed each
// producer: enough batches in flight for the commit loop to group them.
const appendersPerProducer = 8

// benchProducerCommits: P producers with their commit loops.
func benchProducerCommits(b *testing.B, store cas.Store, path string, producers int) {
	records := make([][]byte, eventsPerAppend)
	for i := range records {
		records[i] = fmt.Appendf(nil, `{"specversion":"1.0","type":"api-calls","id":"ev-%06d","source":"gateway-eu-1","subject":"customer-%05d","time":"2026-01-01T00:00:00.000Z","data":{"method":"GET","route":"/v1/orders/{id}","status":200,"duration_ms":%d,"region":"eu-west-1"}}`, i, i%1000, i%2000)
	}
	d := startDequeuer(b, store, path)
	ps := make([]*producer.Producer, producers)
	ms := make([]*producer.Metrics, producers)
	for i := range ps {
		ms[i] = producer.NewMetrics(nil)
		q := manifest.NewQueue(store, path, producer.QueueOptions(ms[i]))
		p, err := producer.New(discardBucket{objstore.NewInMemBucket()}, q, producer.Config{
			FlushSizeBytes: 64 << 10, // each 500-event Append (~120 KiB) is one batch
			Compression:    "none",   // no zstd CPU: the manifest is what is measured
			CommitTimeout:  5 * time.Minute,
		}, ms[i], slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		ps[i] = p
	}
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, producers*appendersPerProducer)
	b.ResetTimer()
	start := time.Now()
	for _, p := range ps {
		for range appendersPerProducer {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					if err := p.Append(ctx, format.EventsHeader, records); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var commits, entries, conflicts, records64 float64
	for i, p := range ps {
		if err := p.Close(cctx); err != nil && !errors.Is(err, context.Canceled) {
			b.Fatalf("close producer %d: %v", i, err)
		}
		n, sum := histogram(b, ms[i].CommitGroupEntries)
		commits += n
		entries += sum
		_, r := histogram(b, ms[i].BatchRecords)
		records64 += r
		conflicts += counter(b, ms[i].ManifestConflicts)
	}
	if want := float64(b.N) * eventsPerAppend; records64 != want {
		b.Fatalf("producers committed %v records, %v were acknowledged", records64, want)
	}
	d.finish(b, elapsed)
	b.ReportMetric(commits/elapsed.Seconds(), "commits/s")
	b.ReportMetric(conflicts/commits, "conflicts/commit")
	b.ReportMetric(entries/commits, "entries/commit")
	b.ReportMetric(float64(b.N)*eventsPerAppend/elapsed.Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

func histogram(b *testing.B, h prometheus.Histogram) (count, sum float64) {
	var pb dto.Metric
	if err := h.Write(&pb); err != nil {
		b.Fatal(err)
	}
	return float64(pb.GetHistogram().GetSampleCount()), pb.GetHistogram().GetSampleSum()
}

func counter(b *testing.B, c prometheus.Counter) float64 {
	var pb dto.Metric
	if err := c.Write(&pb); err != nil {
		b.Fatal(err)
	}
	return pb.GetCounter().GetValue()
}
