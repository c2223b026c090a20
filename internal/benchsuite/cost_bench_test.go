package benchsuite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/producer"
)

// Cost growth load: a fixed total rate, split evenly over the producers.
const (
	costRate     = 100_000 // events/s, all producers together
	costDuration = 3 * time.Second
)

// costBaseline holds the producers=1 figures of the current run, per
// bucket, for the x-1-producer ratios (sub-benchmarks run in order).
var costBaseline = map[string]costFigures{}

type costFigures struct{ objects, casWrites float64 }

// BenchmarkCostGrowth: P separate producers (producer.New, zstd, default
// flush settings) on one manifest share a fixed total load of costRate
// events/s in 500-event appends (open loop) for costDuration; then every
// producer is closed. Reported per 1M events: objects uploaded (PUTs),
// manifest CAS writes, conflicts and reads, counted on the bucket and the
// store. The baseline is the producers=1 case of the same run; x-1-producer
// is the ratio to it.
func BenchmarkCostGrowth(b *testing.B) {
	recs := make([][][]byte, 64)
	for i := range recs {
		_, recs[i] = EventBatch(fmt.Sprintf("cost-%d", i), eventsPerRequest, uint64(i))
	}
	for _, bc := range bucketCases {
		for _, producers := range []int{1, 4, 16} {
			// seal=timer is the rule before group commit (a batch sealed
			// flush_interval after its first record); seal=group is group
			// commit with the command's min_seal_interval for the store.
			for _, seal := range []string{"timer", "group"} {
				minSeal := time.Hour
				if seal == "group" {
					minSeal = 0
					if bc.name != "fs" {
						minSeal = 100 * time.Millisecond // config.ObjectStoreMinSealInterval
					}
				}
				b.Run(fmt.Sprintf("bucket=%s/producers=%d/seal=%s", bc.name, producers, seal), func(b *testing.B) {
					costBench(b, bc, producers, minSeal, recs)
				})
			}
		}
	}
}

func costBench(b *testing.B, bc bucketCase, producers int, minSeal time.Duration, recs [][][]byte) {
	rawBkt, rawStore := bc.open(b)
	bkt := &CountingBucket{Bucket: rawBkt}
	store := &CountingStore{Store: rawStore}
	appends := int(costRate * costDuration.Seconds() / eventsPerRequest)
	interval := time.Duration(float64(time.Second) * eventsPerRequest / costRate)
	var events int64
	var lat []time.Duration
	b.ResetTimer()
	for it := range b.N {
		path := fmt.Sprintf("cost/%d/manifest", it)
		ps := make([]*producer.Producer, producers)
		ms := make([]*producer.Metrics, producers)
		for i := range ps {
			m := producer.NewMetrics(nil)
			ms[i] = m
			var err error
			ps[i], err = producer.New(bkt, manifest.NewQueue(store, path, producer.QueueOptions(m)),
				producer.Config{Compression: "zstd", DataPrefix: fmt.Sprintf("cost/%d/data", it), MinSealInterval: minSeal}, m, quiet)
			if err != nil {
				b.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		start := time.Now()
		for a := range appends {
			if d := time.Until(start.Add(time.Duration(a) * interval)); d > 0 {
				time.Sleep(d)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				err := ps[a%producers].Append(context.Background(), format.EventsHeader, recs[a%len(recs)])
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					firstErr = errors.Join(firstErr, err)
				}
				lat = append(lat, time.Since(t0))
			}()
		}
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for _, p := range ps {
			firstErr = errors.Join(firstErr, p.Close(ctx))
		}
		cancel()
		if firstErr != nil {
			b.Fatal(firstErr)
		}
		// Every acknowledged record is committed, and the manifest
		// references one entry per committed batch.
		var records, batches float64
		for _, m := range ms {
			records += histSum(b, m.BatchRecords)
			batches += counterValue(b, m.BatchSent)
		}
		if want := float64(appends * eventsPerRequest); records != want {
			b.Fatalf("producers committed %v records, %v were acknowledged", records, want)
		}
		man, err := manifest.NewQueue(store, path, manifest.Options{}).Read(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if float64(len(man.Entries)) != batches {
			b.Fatalf("manifest holds %d entries, producers committed %v batches", len(man.Entries), batches)
		}
		events += int64(appends) * eventsPerRequest
	}
	b.StopTimer()
	perM := 1e6 / float64(events)
	f := costFigures{objects: float64(bkt.Uploads.Load()) * perM, casWrites: float64(store.Writes.Load()) * perM}
	b.ReportMetric(f.objects, "objects/1M-events")
	b.ReportMetric(f.casWrites, "CAS-writes/1M-events")
	b.ReportMetric(float64(store.Conflicts.Load())*perM, "CAS-conflicts/1M-events")
	b.ReportMetric(float64(store.Reads.Load())*perM, "CAS-reads/1M-events")
	b.ReportMetric(float64(bkt.UploadBytes.Load())/float64(events), "stored-bytes/event")
	slices.Sort(lat)
	b.ReportMetric(Quantile(lat, 0.99).Seconds()*1000, "ack-p99-ms")
	// The ideal: every object a full 4 MiB batch, one CAS write per object.
	b.ReportMetric(1e6*float64(avgRecordBytes(recs)+4)/float64(producer.DefaultFlushSizeBytes), "full-batch-objects/1M-events")
	key := fmt.Sprintf("%s/%v", bc.name, minSeal)
	if producers == 1 {
		costBaseline[key] = f
	} else if base, ok := costBaseline[key]; ok && base.objects > 0 && base.casWrites > 0 {
		b.ReportMetric(f.objects/base.objects, "objects-x-1-producer")
		b.ReportMetric(f.casWrites/base.casWrites, "CAS-writes-x-1-producer")
	}
}

func avgRecordBytes(recs [][][]byte) float64 {
	var n, bytes int
	for _, rs := range recs {
		for _, r := range rs {
			n++
			bytes += len(r)
		}
	}
	return float64(bytes) / float64(n)
}
