package producer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/bucketq/bucketq/format"
)

// TestLoneRequestIsSealedAtOnce: with no batch in flight, a request's batch
// is sealed at once, not after FlushInterval (issue 10: every ack waited the
// 250 ms timer, so one-event-per-request clients got a few hundred events/s).
func TestLoneRequestIsSealedAtOnce(t *testing.T) {
	e := newEnv(t, Config{FlushInterval: time.Hour})
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := e.p.Append(ctx, format.EventsHeader, recs(fmt.Sprint("lone", i), 1, 10))
		cancel()
		if err != nil {
			t.Fatalf("append %d: %v (with FlushInterval 1h, only group commit answers it)", i, err)
		}
	}
	if got := e.readCommitted(); len(got) != 3 {
		t.Fatalf("%d batches committed, want one per request", len(got))
	}
}

// TestBatchesGrowUnderASlowStore: while a batch is being written, arriving
// records gather in the open batch, which is sealed when it is done: the
// number of objects follows the store's speed, not the request count.
func TestBatchesGrowUnderASlowStore(t *testing.T) {
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
	waitUntil(t, "the first batch sealed", func() bool { return e.p.inFlight() == 1 })
	for i := range clients {
		wg.Add(1)
		go append1(fmt.Sprint("c", i))
	}
	waitUntil(t, "every append in the open batch", func() bool { return e.p.openRecords() == clients })
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
}

// TestMinSealIntervalCapsSeals: the cost cap spaces seals at least
// MinSealInterval apart, and still answers every request well before
// FlushInterval.
func TestMinSealIntervalCapsSeals(t *testing.T) {
	const gap = 150 * time.Millisecond
	e := newEnv(t, Config{FlushInterval: time.Hour, MinSealInterval: gap})
	for i := range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := e.p.Append(ctx, format.EventsHeader, recs(fmt.Sprint("capped", i), 1, 10))
		cancel()
		if err != nil {
			t.Fatal(err)
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
		if i > 0 && at.Sub(prev) < gap-5*time.Millisecond {
			t.Fatalf("batch %d sealed %s after the previous one, below MinSealInterval %s", i, at.Sub(prev), gap)
		}
		prev = at
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *Producer) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unfinished
}
