package partition

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
	"github.com/bucketq/bucketq/producer"
)

// objectLimits is what a store allows one object name.
type objectLimits struct {
	name        string
	writesPerS  int           // conditional writes accepted per object per second
	writeLat    time.Duration // one conditional write
	readLat     time.Duration // one manifest read
	uploadLat   time.Duration // one batch PUT (distinct names: not limited)
	dequeueEach time.Duration // the consumer's dequeue interval
	measure     time.Duration
}

var (
	// S3 Standard: ~15 conditional writes/s per key at 58–68 ms each
	// (RFC 0002, anchors (d) D1), 503 SlowDown beyond.
	s3Standard = objectLimits{name: "s3", writesPerS: 15, writeLat: 60 * time.Millisecond, readLat: 20 * time.Millisecond,
		uploadLat: 50 * time.Millisecond, dequeueEach: time.Second, measure: 6 * time.Second}
	// GCS: "one write per second" to the same object name, 500–700 ms per
	// conditional write; 429 beyond. A 1 s dequeue interval alone would
	// spend the whole budget, so the consumer dequeues every 5 s.
	gcsLike = objectLimits{name: "gcs", writesPerS: 1, writeLat: 500 * time.Millisecond, readLat: 50 * time.Millisecond,
		uploadLat: 100 * time.Millisecond, dequeueEach: 5 * time.Second, measure: 30 * time.Second}
)

var errSlowDown = errors.New("503 SlowDown: reduce your request rate")

// limitedStore is a cas.Store that gives each object the limits of a cloud
// store: every write takes writeLat, and an object accepts at most
// writesPerS write attempts in any second (conflicting ones included, as
// they spend the same budget); beyond that it answers 503. It records the
// most writes that landed on one object within one second.
type limitedStore struct {
	inner *memstore.Store
	lim   objectLimits

	mu       sync.Mutex
	attempts map[string][]time.Time // attempts within the last second
	landed   map[string][]time.Time
	maxRate  int // most landed writes on one object in one second
	slowDown atomic.Int64
}

func newLimitedStore(lim objectLimits) *limitedStore {
	return &limitedStore{inner: memstore.New(), lim: lim, attempts: map[string][]time.Time{}, landed: map[string][]time.Time{}}
}

func window(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= time.Second {
		i++
	}
	return ts[i:]
}

func (s *limitedStore) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	if !sleepCtx(ctx, s.lim.readLat) {
		return nil, "", ctx.Err()
	}
	return s.inner.Read(ctx, name)
}

func (s *limitedStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	if !sleepCtx(ctx, s.lim.writeLat) {
		return "", ctx.Err()
	}
	now := time.Now()
	s.mu.Lock()
	a := window(s.attempts[name], now)
	if len(a) >= s.lim.writesPerS {
		s.attempts[name] = a
		s.mu.Unlock()
		s.slowDown.Add(1)
		return "", errSlowDown
	}
	s.attempts[name] = append(a, now)
	nv, err := s.inner.WriteIf(ctx, name, data, v)
	if err == nil {
		l := append(window(s.landed[name], now), now)
		s.landed[name] = l
		s.maxRate = max(s.maxRate, len(l))
	}
	s.mu.Unlock()
	return nv, err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// slowBucket uploads after a delay and keeps nothing: the simulation is
// about the manifests, not the batch bytes.
type slowBucket struct {
	objstore.Bucket
	lat time.Duration
}

func (b slowBucket) Upload(ctx context.Context, _ string, r io.Reader, _ ...objstore.ObjectUploadOption) error {
	_, _ = io.Copy(io.Discard, r)
	if !sleepCtx(ctx, b.lat) {
		return ctx.Err()
	}
	return nil
}

// Fall-over settings of the home=auto runs (BUCKETQ_SCALE_MINSTAY,
// BUCKETQ_SCALE_RATIO override them for experiments).
var (
	simMinStay          = envDuration("BUCKETQ_SCALE_MINSTAY", 0)
	simMaxConflictRatio = envFloat("BUCKETQ_SCALE_RATIO", 0)
)

func envDuration(k string, d time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(k)); err == nil {
		return v
	}
	return d
}

func envFloat(k string, f float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(k), 64); err == nil {
		return v
	}
	return f
}

// simResult is one run's totals over the measured window.
type simResult struct {
	commits, batches, events, conflicts, slowDowns float64 // per second
	maxObjRate                                     int
	moves                                          uint64
}

// simulate runs nProducers spreaders over n partitions on a store with
// lim's limits, each fed by appenders that append as fast as commits
// come back, with one dequeuer per partition; it returns rates over
// lim.measure after a warm-up.
func simulate(b *testing.B, lim objectLimits, n, nProducers int, autoHome bool) simResult {
	const (
		appenders      = 32  // concurrent Appends per producer process
		recordsPerCall = 100 // records per Append
		recordBytes    = 100
	)
	store := newLimitedStore(lim)
	bkt := slowBucket{Bucket: objstore.NewInMemBucket(), lat: lim.uploadLat}
	layout := Layout{Manifest: "ingest/manifest", Data: "ingest/data", DeadLetter: "ingest/dead-letter"}
	quiet := slog.New(slog.DiscardHandler)
	var writes, conflicts atomic.Int64
	pms := make([]*producer.Metrics, 0, nProducers*n)
	var pmMu sync.Mutex

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup

	// One consumer per partition: dequeue everything every interval.
	for p := range n {
		wg.Go(func() {
			q := manifest.NewQueue(store, layout.Partition(p).Manifest, manifest.Options{})
			lease, err := q.Fence(ctx)
			if err != nil {
				return
			}
			for sleepCtx(ctx, lim.dequeueEach) {
				m, err := lease.Read(ctx)
				if err != nil || len(m.Entries) == 0 {
					continue
				}
				_, _ = lease.Dequeue(ctx, m.Entries[len(m.Entries)-1].Sequence)
			}
		})
	}

	spreaders := make([]*Spreader, nProducers)
	for i := range nProducers {
		cfg := SpreaderConfig{Partitions: n, Home: i % n}
		if autoHome {
			cfg.Home, cfg.HomeKey = -1, fmt.Sprintf("ingest-%d.zone-%c", i, 'a'+i%4)
			cfg.MinStay, cfg.MaxConflictRatio = simMinStay, simMaxConflictRatio
		}
		s, err := NewSpreader(cfg, store, func(p int, st cas.Store) (Producer, error) {
			m := producer.NewMetrics(nil)
			pmMu.Lock()
			pms = append(pms, m)
			pmMu.Unlock()
			opts := manifest.Options{OnWrite: func() { writes.Add(1) }, OnConflict: func() { conflicts.Add(1) }}
			q := manifest.NewQueue(st, layout.Partition(p).Manifest, opts)
			return producer.New(bkt, q, producer.Config{DataPrefix: layout.Partition(p).Data, Compression: "none"}, m, quiet)
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		spreaders[i] = s
	}
	var events atomic.Int64
	recs := make([][]byte, recordsPerCall)
	for i := range recs {
		recs[i] = make([]byte, recordBytes)
	}
	h := format.Header{}
	for _, s := range spreaders {
		for range appenders {
			wg.Go(func() {
				for ctx.Err() == nil {
					if err := s.Append(ctx, h, recs); err == nil {
						events.Add(recordsPerCall)
					}
				}
			})
		}
	}

	sum := func() (batches, commits float64) {
		pmMu.Lock()
		defer pmMu.Unlock()
		for _, m := range pms {
			batches += counterValue(m.BatchSent)
			commits += histCount(m.CommitGroupEntries)
		}
		return
	}
	time.Sleep(lim.measure / 4) // warm up
	b0, c0 := sum()
	e0, w0, k0, s0 := events.Load(), writes.Load(), conflicts.Load(), store.slowDown.Load()
	start := time.Now()
	time.Sleep(lim.measure)
	el := time.Since(start).Seconds()
	b1, c1 := sum()
	e1, _, k1, s1 := events.Load(), writes.Load(), conflicts.Load(), store.slowDown.Load()
	_ = w0
	var moves uint64
	for _, s := range spreaders {
		moves += s.Moves()
	}
	cancel()
	closeCtx, cc := context.WithTimeout(context.Background(), 10*time.Second)
	for _, s := range spreaders {
		_ = s.Close(closeCtx)
	}
	cc()
	wg.Wait()
	store.mu.Lock()
	maxRate := store.maxRate
	store.mu.Unlock()
	return simResult{
		commits: (c1 - c0) / el, batches: (b1 - b0) / el, events: float64(e1-e0) / el,
		conflicts: float64(k1-k0) / el, slowDowns: float64(s1-s0) / el, maxObjRate: maxRate, moves: moves,
	}
}

// BenchmarkPartitionScale is the scale simulation of RFC 0005: 16
// producer processes push as fast as commits come back, over 1–16
// partitions of a store that limits each object like S3 Standard (15
// conditional writes/s, 60 ms each, 503 beyond) or GCS (1 write/s, 500 ms).
// Real producers (group commit) and manifest queues, simulated latencies;
// it runs in wall time, once per sub-benchmark (use -benchtime 1x):
//
//	go test -run '^$' -bench BenchmarkPartitionScale -benchtime 1x ./partition
//
// BUCKETQ_SCALE_STORES=s3 (or gcs) limits the run to one store.
func BenchmarkPartitionScale(b *testing.B) {
	stores := []objectLimits{s3Standard, gcsLike}
	if v := os.Getenv("BUCKETQ_SCALE_STORES"); v != "" {
		stores = stores[:0]
		for _, l := range []objectLimits{s3Standard, gcsLike} {
			if l.name == v {
				stores = append(stores, l)
			}
		}
	}
	const producers = 16
	for _, lim := range stores {
		for _, home := range []string{"spread", "auto"} {
			if home == "auto" && lim.name != "s3" {
				continue
			}
			var base float64
			for _, n := range []int{1, 2, 4, 8, 16} {
				b.Run(fmt.Sprintf("store=%s/home=%s/partitions=%d", lim.name, home, n), func(b *testing.B) {
					var r simResult
					for b.Loop() {
						r = simulate(b, lim, n, producers, home == "auto")
					}
					if n == 1 {
						base = r.batches
					}
					b.ReportMetric(r.commits, "commits/s")
					b.ReportMetric(r.batches, "batches/s")
					b.ReportMetric(r.events, "events/s")
					b.ReportMetric(r.conflicts/max(r.commits, 1e-9), "conflicts/commit")
					b.ReportMetric(r.slowDowns, "503s/s")
					b.ReportMetric(float64(r.maxObjRate), "max-writes/s/object")
					b.ReportMetric(float64(r.moves), "home-moves")
					// Share of the partitions' write budget spent on commits.
					b.ReportMetric(r.commits/float64(n*lim.writesPerS), "x-budget")
					if base > 0 {
						b.ReportMetric(r.batches/(base*float64(n)), "x-linear")
					}
				})
			}
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func histCount(h prometheus.Histogram) float64 {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		return 0
	}
	return float64(m.GetHistogram().GetSampleCount())
}
