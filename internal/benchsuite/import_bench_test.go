package benchsuite

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/importer"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/producer"
)

// importObjects is the number of source objects of BenchmarkImport.
const importObjects = 100

// importEvents is the rows per format: BUCKETQ_IMPORT_BENCH_EVENTS, default 1M.
func importEvents(b *testing.B) int {
	if s := os.Getenv("BUCKETQ_IMPORT_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < importObjects {
			b.Fatalf("BUCKETQ_IMPORT_BENCH_EVENTS=%q: want a number ≥ %d", s, importObjects)
		}
		return n
	}
	return 1_000_000
}

// importCSVMapping is the six-field mapping of the CSV phase; the id is
// derived (RFC 0006, "Imported rows").
var importCSVMapping = importer.Mapping{
	Type:    `"llm-tokens"`,
	Source:  `"billing-export"`,
	Subject: `row.customer`,
	Time:    `row.ts`,
	Data:    map[string]string{"tokens": `int(row.tokens)`, "model": `row.model`},
}

// BenchmarkImport: `bucketq import` (package importer, in process, the
// command's defaults: --parallel 4, 1000 rows per Append, a producer with
// the default flush settings) of importObjects gzip objects from the
// source bucket into a fresh queue on the same store, in two phases:
// NDJSON CloudEvents (~250 bytes, AppendEvent) and CSV rows
// (customer,tokens,model,region,ts) through a six-field CEL mapping. The
// baseline, measured in the same op before them, is the producer's own
// ingest rate: the same NDJSON events, already in memory, through
// producer.Append from 4 goroutines in 1000-event appends into a fresh
// queue. x-append is a phase's events/s over the baseline's; peak-RSS-MiB
// is the process's VmHWM over the phase (reset after a GC at its start,
// with the source's bytes no longer held). Use -benchtime=1x.
func BenchmarkImport(b *testing.B) {
	for _, bc := range bucketCases {
		b.Run("bucket="+bc.name, func(b *testing.B) { importBench(b, bc) })
	}
}

func importBench(b *testing.B, bc bucketCase) {
	ctx := context.Background()
	n := importEvents(b)
	src, _ := bc.open(b)
	per := n / importObjects
	n = per * importObjects
	// The source: NDJSON and CSV objects, gzip, written one at a time.
	var srcBytes, csvBytes int64
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for o := range importObjects {
		r := rand.New(rand.NewPCG(uint64(o), 1))
		var nd, cv bytes.Buffer
		zw := gzip.NewWriter(&nd)
		line := make([]byte, 0, 512)
		for i := range per {
			line = AppendEvent(line[:0], fmt.Sprintf("imp-%03d-%07d", o, i), r, t0)
			line = append(line, '\n')
			zw.Write(line)
		}
		zw.Close()
		zw = gzip.NewWriter(&cv)
		zw.Write([]byte("customer,tokens,model,region,ts\n"))
		for range per {
			line = fmt.Appendf(line[:0], "customer-%05d,%d,%s,%s,%s\n", r.IntN(100_000), r.IntN(20000),
				models[r.IntN(len(models))], regions[r.IntN(len(regions))], t0.Add(time.Duration(r.IntN(86400_000))*time.Millisecond).Format("2006-01-02T15:04:05.000Z"))
			zw.Write(line)
		}
		zw.Close()
		srcBytes += int64(nd.Len())
		csvBytes += int64(cv.Len())
		if err := src.Upload(ctx, fmt.Sprintf("ndjson/%03d.ndjson.gz", o), &nd); err != nil {
			b.Fatal(err)
		}
		if err := src.Upload(ctx, fmt.Sprintf("csv/%03d.csv.gz", o), &cv); err != nil {
			b.Fatal(err)
		}
	}
	mapper, err := importer.Compile(importCSVMapping)
	if err != nil {
		b.Fatal(err)
	}

	var appendRate, ndRate, csvRate, ndRSS, csvRSS float64
	b.ResetTimer()
	for range b.N {
		appendRate = importBaseline(b, bc, n)
		ndRate, ndRSS = importPhase(b, bc, src, "ndjson/", nil, n)
		csvRate, csvRSS = importPhase(b, bc, src, "csv/", mapper, n)
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(appendRate, "append-events/s")
	b.ReportMetric(ndRate, "ndjson-events/s")
	b.ReportMetric(ndRate/appendRate, "ndjson-x-append")
	b.ReportMetric(ndRSS, "ndjson-peak-RSS-MiB")
	b.ReportMetric(csvRate, "csv-events/s")
	b.ReportMetric(csvRate/appendRate, "csv-x-append")
	b.ReportMetric(csvRSS, "csv-peak-RSS-MiB")
	b.Logf("%d events per format in %d objects; gzip source %.1f MiB NDJSON, %.1f MiB CSV", n, importObjects, float64(srcBytes)/(1<<20), float64(csvBytes)/(1<<20))
}

func newImportProducer(b *testing.B, bkt objstore.Bucket, store cas.Store) *producer.Producer {
	m := producer.NewMetrics(nil)
	p, err := producer.New(bkt, manifest.NewQueue(store, producer.DefaultManifestPath, producer.QueueOptions(m)), producer.Config{}, m, quiet)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// importBaseline appends the same NDJSON events (regenerated, held in
// memory, not timed) through producer.Append: 4 appenders, 1000 events
// each call, backing off on ErrBackpressure like the importer.
func importBaseline(b *testing.B, bc bucketCase, n int) float64 {
	ctx := context.Background()
	per := n / importObjects
	chunks := make([][][]byte, 0, n/1000+importObjects)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for o := range importObjects {
		r := rand.New(rand.NewPCG(uint64(o), 1))
		var chunk [][]byte
		for i := range per {
			chunk = append(chunk, AppendEvent(nil, fmt.Sprintf("imp-%03d-%07d", o, i), r, t0))
			if len(chunk) == 1000 || i == per-1 {
				chunks = append(chunks, chunk)
				chunk = nil
			}
		}
	}
	bkt, store := bc.open(b)
	p := newImportProducer(b, bkt, store)
	defer p.Close(ctx)
	work := make(chan [][]byte)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for recs := range work {
				wait := 20 * time.Millisecond
				for {
					err := p.Append(ctx, format.EventsHeader, recs)
					if errors.Is(err, producer.ErrBackpressure) {
						time.Sleep(wait)
						wait = min(2*wait, time.Second)
						continue
					}
					if err != nil {
						mu.Lock()
						firstErr = firstOf(firstErr, err)
						mu.Unlock()
					}
					break
				}
			}
		}()
	}
	for _, c := range chunks {
		work <- c
	}
	close(work)
	wg.Wait()
	el := time.Since(start)
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return float64(n) / el.Seconds()
}

func firstOf(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// importPhase imports the objects under prefix into a fresh queue and
// returns events/s and the phase's peak RSS in MiB.
func importPhase(b *testing.B, bc bucketCase, src objstore.Bucket, prefix string, mapper *importer.Mapper, n int) (float64, float64) {
	ctx := context.Background()
	bkt, store := bc.open(b)
	p := newImportProducer(b, bkt, store)
	defer p.Close(ctx)
	im, err := importer.New(importer.Config{
		Source: src, Queue: bkt, Store: store, App: p,
		Job: "bench", Prefix: prefix, Mapper: mapper, MaxErrors: 0, Log: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	if err := ResetPeakRSS(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	sum, err := im.Run(ctx)
	el := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if sum.Events != int64(n) || sum.DeadLettered != 0 {
		b.Fatalf("import of %s: %d events, %d dead-lettered, want %d and 0", prefix, sum.Events, sum.DeadLettered, n)
	}
	rss, err := PeakRSS()
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / el.Seconds(), float64(rss) / (1 << 20)
}
