package producer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

// TestLoneRequestIsSealedAtOnce: with no batch in flight, a request's batch
// is sealed at once, not after FlushInterval (issue 10: every ack waited the
// 250 ms timer, so one-event-per-request clients got a few hundred events/s).
func TestLoneRequestIsSealedAtOnce(t *testing.T) {
	bubble(t, func(t *testing.T) {
		e := newEnv(t, Config{FlushInterval: time.Hour})
		for i := range 3 {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := e.p.Append(ctx, format.EventsHeader, recs(fmt.Sprint("lone", i), 1, 10))
			cancel()
			if err != nil {
				t.Fatalf("append %d: %v (with FlushInterval 1h, only group commit answers it)", i, err)
			}
			if took := time.Since(start); took != 0 {
				t.Fatalf("append %d answered after %v: no timer should hold a lone request", i, took)
			}
		}
		if got := e.readCommitted(); len(got) != 3 {
			t.Fatalf("%d batches committed, want one per request", len(got))
		}
	})
}

// TestBatchesGrowUnderASlowStore: while a batch is being written, arriving
// records gather in the open batch, which is sealed when it is done: the
// number of objects follows the store's speed, not the request count.
func TestBatchesGrowUnderASlowStore(t *testing.T) {
	bubble(t, func(t *testing.T) {
		gate := make(chan struct{})
		var once sync.Once
		e := newEnv(t, Config{FlushInterval: time.Hour}, func(e *env) {
			e.bkt.delay = func(name string, n int64) time.Duration {
				if n == 1 {
					<-gate // the first upload waits until every other append is in
				}
				return 0
			}
		})
		const clients = 20
		var wg sync.WaitGroup
		errs := make(chan error, clients+1)
		append1 := func(name string) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			errs <- e.p.Append(ctx, format.EventsHeader, recs(name, 1, 10))
		}
		wg.Add(1)
		go append1("first")
		settled(t, "the first batch sealed", func() bool { return e.p.inFlight() == 1 })
		for i := range clients {
			wg.Add(1)
			go append1(fmt.Sprint("c", i))
		}
		settled(t, "every append in the open batch", func() bool { return e.p.openRecords() == clients })
		once.Do(func() { close(gate) })
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got := e.readCommitted()
		if len(got) != 2 || len(got[0].records) != 1 || len(got[1].records) != clients {
			var sizes []int
			for _, c := range got {
				sizes = append(sizes, len(c.records))
			}
			t.Fatalf("batch sizes %v, want [1 %d]: the second batch should have gathered everything that arrived while the store was busy", sizes, clients)
		}
	})
}

// TestMinSealIntervalCapsSeals: the cost cap spaces seals at least
// MinSealInterval apart, and still answers every request well before
// FlushInterval.
func TestMinSealIntervalCapsSeals(t *testing.T) {
	bubble(t, func(t *testing.T) {
		const gap = 150 * time.Millisecond
		e := newEnv(t, Config{FlushInterval: time.Hour, MinSealInterval: gap})
		for i := range 4 {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := e.p.Append(ctx, format.EventsHeader, recs(fmt.Sprint("capped", i), 1, 10))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			// Each append follows the previous seal at once, so the cap
			// holds it for exactly MinSealInterval (the first counts
			// from New), far below FlushInterval.
			if took := time.Since(start); took != gap {
				t.Fatalf("append %d answered after %v, want MinSealInterval %v", i, took, gap)
			}
		}
		got := e.readCommitted()
		if len(got) != 4 {
			t.Fatalf("%d batches, want 4", len(got))
		}
		// Batch names are ULIDs, whose time is when the upload began, just
		// after the seal.
		var prev time.Time
		for i, c := range got {
			id, err := ulid.ParseStrict(c.entry.Location[len(DefaultDataPrefix)+1 : len(c.entry.Location)-len(".batch")])
			if err != nil {
				t.Fatal(err)
			}
			at := ulid.Time(id.Time())
			if i > 0 && at.Sub(prev) < gap {
				t.Fatalf("batch %d sealed %s after the previous one, below MinSealInterval %s", i, at.Sub(prev), gap)
			}
			prev = at
		}
	})
}

// gatedStore holds every manifest write until its gate is closed.
type gatedStore struct {
	*memstore.Store
	gate chan struct{}
}

func (s *gatedStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	select {
	case <-s.gate:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return s.Store.WriteIf(ctx, name, data, v)
}

// TestUploadOverlapsCommit: while one batch is being committed the next one
// is sealed and uploaded (the two-stage pipeline), but it is acknowledged
// only once it is committed itself, after the one before it; a third batch
// waits in the open batch while two are unfinished.
func TestUploadOverlapsCommit(t *testing.T) {
	bubble(t, func(t *testing.T) {
		gate := make(chan struct{})
		e := newEnv(t, Config{FlushInterval: time.Hour}, func(e *env) {
			e.q = manifest.NewQueue(&gatedStore{Store: e.store, gate: gate}, manifestPath, manifest.Options{
				MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, RetryTimeout: time.Minute,
			})
		})
		first := appendAsync(e.p, format.EventsHeader, recs("first", 1, 10))
		settled(t, "the first batch uploaded", func() bool { return e.bkt.uploads.Load() == 1 })
		second := appendAsync(e.p, format.EventsHeader, recs("second", 2, 10))
		settled(t, "the second batch uploaded while the first is being committed", func() bool { return e.bkt.uploads.Load() == 2 })
		third := appendAsync(e.p, format.EventsHeader, recs("third", 3, 10))
		settled(t, "the third append in the open batch", func() bool { return e.p.openRecords() == 3 })
		notReturned(t, first, "before its batch was committed")
		notReturned(t, second, "before its batch was committed")
		if n := e.bkt.uploads.Load(); n != 2 {
			t.Fatalf("%d uploads with two batches unfinished, want 2: the third batch must wait", n)
		}
		if n := e.p.inFlight(); n != DefaultPipelineDepth {
			t.Fatalf("%d batches unfinished, want %d", n, DefaultPipelineDepth)
		}
		close(gate)
		for i, ch := range []<-chan error{first, second, third} {
			if err := waitErr(t, ch); err != nil {
				t.Fatalf("append %d: %v", i+1, err)
			}
		}
		got := e.readCommitted()
		var sizes []int
		for _, c := range got {
			sizes = append(sizes, len(c.records))
		}
		if !slices.Equal(sizes, []int{1, 2, 3}) {
			t.Fatalf("batch sizes in manifest order %v, want [1 2 3]: one batch per append, in seal order", sizes)
		}
	})
}

// TestPipelineDepthOne: at depth 1 (a directory bucket's) the next batch
// is sealed only once the one before it is committed: records arriving
// meanwhile gather in the open batch, however many, and go in one batch.
func TestPipelineDepthOne(t *testing.T) {
	bubble(t, func(t *testing.T) {
		gate := make(chan struct{})
		e := newEnv(t, Config{FlushInterval: time.Hour, PipelineDepth: 1}, func(e *env) {
			e.q = manifest.NewQueue(&gatedStore{Store: e.store, gate: gate}, manifestPath, manifest.Options{
				MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, RetryTimeout: time.Minute,
			})
		})
		first := appendAsync(e.p, format.EventsHeader, recs("first", 1, 10))
		settled(t, "the first batch uploaded", func() bool { return e.bkt.uploads.Load() == 1 })
		second := appendAsync(e.p, format.EventsHeader, recs("second", 2, 10))
		third := appendAsync(e.p, format.EventsHeader, recs("third", 3, 10))
		settled(t, "the second and third appends in the open batch", func() bool { return e.p.openRecords() == 5 })
		if n := e.bkt.uploads.Load(); n != 1 {
			t.Fatalf("%d uploads while the first batch is being committed, want 1 at depth 1", n)
		}
		if n := e.p.inFlight(); n != 1 {
			t.Fatalf("%d batches unfinished, want 1", n)
		}
		notReturned(t, first, "before its batch was committed")
		close(gate)
		for i, ch := range []<-chan error{first, second, third} {
			if err := waitErr(t, ch); err != nil {
				t.Fatalf("append %d: %v", i+1, err)
			}
		}
		var sizes []int
		for _, c := range e.readCommitted() {
			sizes = append(sizes, len(c.records))
		}
		if !slices.Equal(sizes, []int{1, 5}) {
			t.Fatalf("batch sizes in manifest order %v, want [1 5]: the first alone, then everything that arrived while it was committed", sizes)
		}
	})
}

func (p *Producer) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unfinished
}
