package modeltest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

const mpath = "ingest/manifest"

// seed returns the model's seed: BUCKETQ_MODEL_SEED or the clock. It is
// logged on failure so a failing run can be replayed (goroutine scheduling
// still varies; the seed fixes every random choice of the model).
func seed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("BUCKETQ_MODEL_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("BUCKETQ_MODEL_SEED: %v", err)
		}
		s = n
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("model seed %d (replay with BUCKETQ_MODEL_SEED=%d)", s, s)
		}
	})
	return s
}

// lockedRand is a seeded source shared by goroutines.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRand(seed, stream uint64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(seed, stream))}
}

func (l *lockedRand) Float64() float64 { l.mu.Lock(); defer l.mu.Unlock(); return l.r.Float64() }
func (l *lockedRand) IntN(n int) int   { l.mu.Lock(); defer l.mu.Unlock(); return l.r.IntN(n) }
func (l *lockedRand) Dur(max time.Duration) time.Duration {
	return time.Duration(l.IntN(int(max) + 1))
}

// who tells the recording store which model actor a write comes from; the
// queue passes the caller's context through to the store.
type who struct {
	kind  string // "append", "fence", "dequeue"
	actor string
	epoch uint64 // lease epoch for dequeue
	locs  []string
}

type whoKey struct{}

func withWho(ctx context.Context, w who) context.Context { return context.WithValue(ctx, whoKey{}, w) }

// recStore wraps memstore and checks every write that lands against the
// protocol: one transition per write, of the kind its writer performs.
type recStore struct {
	inner *memstore.Store
	model *model

	mu   sync.Mutex
	last *manifest.Manifest
	// faults on Read (memstore hooks are used for writes)
	readErr func() error
}

func (r *recStore) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	if r.readErr != nil {
		if err := r.readErr(); err != nil {
			return nil, "", err
		}
	}
	return r.inner.Read(ctx, name)
}

func (r *recStore) peek(name string) ([]byte, cas.Version) {
	b, v, err := r.inner.Read(context.Background(), name)
	if err != nil && !errors.Is(err, cas.ErrNotExist) {
		panic(err)
	}
	return b, v
}

func (r *recStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, before := r.peek(name)
	nv, err := r.inner.WriteIf(ctx, name, data, v)
	cur, after := r.peek(name)
	if after != before {
		w, _ := ctx.Value(whoKey{}).(who)
		r.model.landed(w, r.last, cur)
		m, derr := manifest.Decode(cur)
		if derr == nil {
			r.last = m
		}
	}
	return nv, err
}

// model is the reference state and the record of what every actor saw.
type model struct {
	t  *testing.T
	mu sync.Mutex

	violations []string
	writes     int
	dupAppends int // locations appended again after all their copies were dequeued

	everSeq   map[uint64]string   // every sequence that ever landed → location
	appended  map[string][]uint64 // location → sequences it landed with
	acked     map[string]uint64   // Append returned nil: location → sequence
	delivered map[string]uint64   // location → epoch of the lease that delivered it first
	dequeued  map[string]int      // location → times a successful Dequeue returned it
	maxFenced atomic.Uint64       // highest epoch a Fence has returned
	stats     map[string]int
	fencedBy  map[uint64]string // epoch → consumer a Fence returned it to
}

func newModel(t *testing.T) *model {
	return &model{t: t, everSeq: map[uint64]string{}, appended: map[string][]uint64{}, acked: map[string]uint64{},
		delivered: map[string]uint64{}, dequeued: map[string]int{}, stats: map[string]int{}, fencedBy: map[uint64]string{}}
}

func (m *model) violate(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.violations) < 20 {
		m.violations = append(m.violations, fmt.Sprintf(format, args...))
	}
}

func (m *model) count(k string) { m.mu.Lock(); m.stats[k]++; m.mu.Unlock() }

// landed checks the transition prev → cur made by one write of w.
func (m *model) landed(w who, prev *manifest.Manifest, curB []byte) {
	cur, err := manifest.Decode(curB)
	if err != nil {
		m.violate("write by %s %s left an undecodable manifest: %v", w.kind, w.actor, err)
		return
	}
	if prev == nil {
		prev = &manifest.Manifest{}
	}
	m.mu.Lock()
	m.writes++
	m.mu.Unlock()
	if cur.Epoch < prev.Epoch {
		m.violate("epoch decreased from %d to %d by %s %s", prev.Epoch, cur.Epoch, w.kind, w.actor)
	}
	if cur.NextSequence < prev.NextSequence {
		m.violate("next_sequence decreased from %d to %d by %s %s", prev.NextSequence, cur.NextSequence, w.kind, w.actor)
	}
	present := map[string]bool{}
	for _, e := range prev.Entries {
		present[e.Location] = true
	}
	switch w.kind {
	case "append":
		n := len(cur.Entries) - len(prev.Entries)
		if cur.Epoch != prev.Epoch || n <= 0 || !sameEntries(cur.Entries[:len(prev.Entries)], prev.Entries) {
			m.violate("append by %s is not a pure append: %d → %d entries, epoch %d → %d", w.actor, len(prev.Entries), len(cur.Entries), prev.Epoch, cur.Epoch)
			return
		}
		added := cur.Entries[len(prev.Entries):]
		if got := entryLocs(added); !slices.Equal(got, w.locs) {
			m.violate("append by %s wrote %v, it asked for %v", w.actor, got, w.locs)
		}
		if cur.NextSequence != prev.NextSequence+uint64(n) {
			m.violate("append by %s moved next_sequence %d → %d for %d entries", w.actor, prev.NextSequence, cur.NextSequence, n)
		}
		m.mu.Lock()
		for i, e := range added {
			if e.Sequence != prev.NextSequence+uint64(i) {
				m.violations = append(m.violations, fmt.Sprintf("append by %s gave %s sequence %d, want %d", w.actor, e.Location, e.Sequence, prev.NextSequence+uint64(i)))
			}
			if l, ok := m.everSeq[e.Sequence]; ok {
				m.violations = append(m.violations, fmt.Sprintf("sequence %d reused: %s, earlier %s", e.Sequence, e.Location, l))
			}
			m.everSeq[e.Sequence] = e.Location
			if present[e.Location] {
				m.violations = append(m.violations, fmt.Sprintf("location %s appended while still queued (duplicate entry)", e.Location))
			}
			if len(m.appended[e.Location]) > 0 {
				m.dupAppends++
			}
			m.appended[e.Location] = append(m.appended[e.Location], e.Sequence)
		}
		m.mu.Unlock()
	case "fence":
		if cur.Epoch != prev.Epoch+1 || cur.NextSequence != prev.NextSequence || !sameEntries(cur.Entries, prev.Entries) {
			m.violate("fence by %s is not epoch+1 alone: epoch %d → %d, %d → %d entries", w.actor, prev.Epoch, cur.Epoch, len(prev.Entries), len(cur.Entries))
		}
	case "dequeue":
		n := len(prev.Entries) - len(cur.Entries)
		if cur.Epoch != prev.Epoch || cur.NextSequence != prev.NextSequence || n <= 0 || !sameEntries(cur.Entries, prev.Entries[n:]) {
			m.violate("dequeue by %s is not a pure dequeue of a prefix", w.actor)
			return
		}
		if prev.Epoch != w.epoch {
			m.violate("dequeue by %s with lease epoch %d landed on a manifest at epoch %d (fenced consumer dequeued)", w.actor, w.epoch, prev.Epoch)
		}
		m.mu.Lock()
		for _, e := range prev.Entries[:n] {
			if _, ok := m.delivered[e.Location]; !ok {
				m.violations = append(m.violations, fmt.Sprintf("dequeue by %s removed %s (sequence %d) which no consumer delivered: LOST", w.actor, e.Location, e.Sequence))
			}
		}
		m.mu.Unlock()
	default:
		m.violate("write by unknown actor %+v", w)
	}
}

func sameEntries(a, b []manifest.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Sequence != b[i].Sequence || a[i].Location != b[i].Location {
			return false
		}
	}
	return true
}

func entryLocs(es []manifest.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Location
	}
	return out
}

type modelConfig struct {
	producers, consumers int
	appends              int // per producer
	crashProb            float64
	transientProb        float64
	spuriousConflict     float64
	lostProb             float64
	lostAsConflictProb   float64
	readErrProb          float64
}

var errTransient = errors.New("injected transient error (503)")
var errLost = errors.New("injected lost response")

func TestModelMemstore(t *testing.T) {
	cfg := modelConfig{producers: 6, consumers: 2, appends: 1000, crashProb: 0.1, transientProb: 0.05, spuriousConflict: 0.03, lostProb: 0.05, lostAsConflictProb: 0.02, readErrProb: 0.02}
	if testing.Short() {
		cfg.appends = 60
	}
	runModel(t, cfg, seed(t))
}

// TestModelMemstoreHeavyFaults runs fewer operations with far more faults.
func TestModelMemstoreHeavyFaults(t *testing.T) {
	cfg := modelConfig{producers: 4, consumers: 3, appends: 600, crashProb: 0.3, transientProb: 0.25, spuriousConflict: 0.1, lostProb: 0.25, lostAsConflictProb: 0.1, readErrProb: 0.1}
	runModel(t, cfg, seed(t))
}

func runModel(t *testing.T, cfg modelConfig, seed uint64) {
	md := newModel(t)
	faults := newRand(seed, 1)
	mem := memstore.New()
	store := &recStore{inner: mem, model: md}
	mem.BeforeWrite = func(string) error {
		switch p := faults.Float64(); {
		case p < cfg.transientProb:
			md.count("fault transient")
			return errTransient
		case p < cfg.transientProb+cfg.spuriousConflict:
			md.count("fault spurious conflict")
			return fmt.Errorf("%w: injected", cas.ErrConflict)
		}
		return nil
	}
	mem.AfterWrite = func(string) error {
		switch p := faults.Float64(); {
		case p < cfg.lostProb:
			// The response is lost; the caller learns it after a timeout,
			// while other actors already see the write.
			md.count("fault lost response")
			time.Sleep(faults.Dur(time.Millisecond))
			return errLost
		case p < cfg.lostProb+cfg.lostAsConflictProb:
			// A retried request answered 412 although the first try landed.
			md.count("fault lost response as conflict")
			return fmt.Errorf("%w: injected after landing", cas.ErrConflict)
		}
		return nil
	}
	store.readErr = func() error {
		if faults.Float64() < cfg.readErrProb {
			md.count("fault read")
			return errTransient
		}
		return nil
	}
	opts := manifest.Options{MinBackoff: 20 * time.Microsecond, MaxBackoff: 500 * time.Microsecond, RetryTimeout: 20 * time.Second}
	q := manifest.NewQueue(store, mpath, opts)

	// crashCtx returns a context that a "crash" cancels at a random moment
	// with probability crashProb.
	crashCtx := func(r *lockedRand, w who) (context.Context, func() bool) {
		ctx, cancel := context.WithCancel(withWho(context.Background(), w))
		var crashed atomic.Bool
		var timer *time.Timer
		if r.Float64() < cfg.crashProb {
			timer = time.AfterFunc(r.Dur(400*time.Microsecond), func() { crashed.Store(true); cancel() })
		}
		return ctx, func() bool {
			if timer != nil {
				timer.Stop()
			}
			cancel()
			return crashed.Load()
		}
	}

	start := time.Now()
	var producersDone sync.WaitGroup
	for p := 0; p < cfg.producers; p++ {
		producersDone.Add(1)
		go func() {
			defer producersDone.Done()
			r := newRand(seed, uint64(100+p))
			var lastSeq uint64
			haveLast := false
			for i := 0; i < cfg.appends; i++ {
				time.Sleep(r.Dur(100 * time.Microsecond)) // batching time
				n := 1
				if r.Float64() < 0.4 {
					n = 2 + r.IntN(4)
				}
				entries := make([]manifest.NewEntry, n)
				w := who{kind: "append", actor: fmt.Sprintf("producer %d op %d", p, i)}
				for k := range entries {
					entries[k] = manifest.NewEntry{Location: fmt.Sprintf("ingest/data/p%d-%d-%d.batch", p, i, k), Metadata: []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: int64(i), Payload: []byte{1, 4, 2, 0}}}}
					w.locs = append(w.locs, entries[k].Location)
				}
				ctx, done := crashCtx(r, w)
				seqs, err := q.Append(ctx, entries...)
				crashed := done()
				if err != nil && crashed && r.Float64() < 0.5 {
					// Not a process crash but a call deadline: the
					// producer still holds the batch and recommits it.
					md.count("recommit")
					w.actor += " recommit"
					seqs, err = q.Recommit(withWho(context.Background(), w), entries...)
					crashed = false
				}
				switch {
				case err == nil:
					if len(seqs) != n {
						md.violate("%s: %d sequences for %d entries", w.actor, len(seqs), n)
						continue
					}
					for k, s := range seqs {
						if k > 0 && s != seqs[k-1]+1 {
							md.violate("%s: group sequences %v not consecutive", w.actor, seqs)
						}
						if haveLast && s <= lastSeq {
							md.violate("%s: sequence %d after this producer's earlier %d", w.actor, s, lastSeq)
						}
						lastSeq, haveLast = s, true
						md.mu.Lock()
						md.acked[entries[k].Location] = s
						md.mu.Unlock()
					}
					md.count("append ok")
				case crashed:
					// The producer process died: the request is abandoned
					// (the client retries with a new batch, a new location).
					md.count("append crashed")
				default:
					md.violate("%s failed without a crash: %v", w.actor, err)
				}
			}
		}()
	}

	stop := make(chan struct{})
	var consumersDone sync.WaitGroup
	for c := 0; c < cfg.consumers; c++ {
		consumersDone.Add(1)
		go func() {
			defer consumersDone.Done()
			r := newRand(seed, uint64(200+c))
			for restart := 0; ; restart++ {
				select {
				case <-stop:
					return
				default:
				}
				consume(q, md, r, cfg, crashCtx, fmt.Sprintf("consumer %d run %d", c, restart), stop)
			}
		}()
	}
	producersDone.Wait()
	close(stop)
	consumersDone.Wait()

	// A last consumer drains what is left, with write faults still on.
	store.readErr = nil
	final := who{kind: "fence", actor: "final consumer"}
	lease, err := q.Fence(withWho(context.Background(), final))
	if err != nil {
		t.Fatalf("final fence: %v", err)
	}
	md.maxFenced.Store(max(md.maxFenced.Load(), lease.Epoch()))
	m, err := lease.Read(context.Background())
	if err != nil {
		t.Fatalf("final read: %v", err)
	}
	md.mu.Lock()
	for _, e := range m.Entries {
		if _, ok := md.delivered[e.Location]; !ok {
			md.delivered[e.Location] = lease.Epoch()
		}
	}
	md.mu.Unlock()
	if len(m.Entries) > 0 {
		ctx := withWho(context.Background(), who{kind: "dequeue", actor: "final consumer", epoch: lease.Epoch()})
		if _, err := lease.Dequeue(ctx, m.Entries[len(m.Entries)-1].Sequence); err != nil {
			t.Fatalf("final dequeue: %v", err)
		}
	}
	end, err := q.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(end.Entries) != 0 {
		t.Errorf("final manifest still has %d entries", len(end.Entries))
	}

	// No loss: every acked location was delivered (removal of undelivered
	// entries is caught per write above), with its acked sequence landed.
	md.mu.Lock()
	defer md.mu.Unlock()
	for loc, s := range md.acked {
		if _, ok := md.delivered[loc]; !ok {
			md.violations = append(md.violations, fmt.Sprintf("acked %s (sequence %d) was never delivered: LOST", loc, s))
		}
		if !slices.Contains(md.appended[loc], s) {
			md.violations = append(md.violations, fmt.Sprintf("acked %s with sequence %d, but it landed with %v", loc, s, md.appended[loc]))
		}
	}
	twice := 0
	for loc, n := range md.dequeued {
		if n > 1 {
			twice++
			if len(md.appended[loc]) < n {
				md.violations = append(md.violations, fmt.Sprintf("%s returned by %d dequeues but appended %d times", loc, n, len(md.appended[loc])))
			}
		}
	}
	t.Logf("%v: %d manifest writes, %d acked locations, %d re-appended after dequeue (at-least-once), %d dequeued twice, stats %v",
		time.Since(start).Round(time.Millisecond), md.writes, len(md.acked), md.dupAppends, twice, md.stats)
	if md.stats["append ok"] == 0 || md.stats["dequeue ok"] == 0 || md.stats["fenced"] == 0 {
		md.violations = append(md.violations, "model did not exercise appends, dequeues and fencing")
	}
	for _, v := range md.violations {
		t.Error(v)
	}
}

// consume is one consumer process lifetime: fence, then read, deliver a
// random prefix, maybe crash, dequeue it; until fenced, crashed or stopped.
func consume(q *manifest.Queue, md *model, r *lockedRand, cfg modelConfig,
	crashCtx func(*lockedRand, who) (context.Context, func() bool), actor string, stop chan struct{}) {
	ctx, done := crashCtx(r, who{kind: "fence", actor: actor})
	lease, err := q.Fence(ctx)
	crashed := done()
	if err != nil {
		if !crashed {
			md.violate("%s: fence failed without a crash: %v", actor, err)
		}
		md.count("consumer crashed in fence")
		return
	}
	// Concurrent fences may return out of order, but each epoch is
	// returned to one consumer only (the write lands epoch+1 alone).
	md.mu.Lock()
	if prev, ok := md.fencedBy[lease.Epoch()]; ok {
		md.violations = append(md.violations, fmt.Sprintf("%s: Fence returned epoch %d, already returned to %s", actor, lease.Epoch(), prev))
	}
	md.fencedBy[lease.Epoch()] = actor
	md.mu.Unlock()
	for {
		old := md.maxFenced.Load()
		if lease.Epoch() <= old || md.maxFenced.CompareAndSwap(old, lease.Epoch()) {
			break
		}
	}
	md.count("fence ok")
	for round := 0; ; round++ {
		select {
		case <-stop:
			return
		default:
		}
		m, err := lease.Read(context.Background())
		if errors.Is(err, manifest.ErrFenced) {
			md.count("fenced")
			return
		}
		if err != nil {
			continue // injected read fault; the consumer polls again
		}
		if len(m.Entries) == 0 {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		k := 1 + r.IntN(len(m.Entries))
		batch := m.Entries[:k]
		// Deliver (at least once) before dequeuing.
		md.mu.Lock()
		for _, e := range batch {
			if _, ok := md.delivered[e.Location]; !ok {
				md.delivered[e.Location] = lease.Epoch()
			}
		}
		md.mu.Unlock()
		if r.Float64() < cfg.crashProb/4 {
			md.count("consumer crashed before dequeue")
			return // crash after delivery, before dequeue: redelivered later
		}
		through := batch[k-1].Sequence
		fencedBefore := md.maxFenced.Load() > lease.Epoch()
		dctx, ddone := crashCtx(r, who{kind: "dequeue", actor: actor, epoch: lease.Epoch()})
		removed, err := lease.Dequeue(dctx, through)
		crashed := ddone()
		switch {
		case err == nil:
			if fencedBefore {
				md.violate("%s: Dequeue with epoch %d succeeded after a Fence to epoch %d had returned", actor, lease.Epoch(), md.maxFenced.Load())
			}
			if got, want := entryLocs(removed), entryLocs(batch); !slices.Equal(got, want) {
				md.violate("%s: Dequeue(%d) returned %v, the delivered prefix was %v", actor, through, got, want)
			}
			md.mu.Lock()
			for _, e := range removed {
				md.dequeued[e.Location]++
			}
			md.mu.Unlock()
			md.count("dequeue ok")
		case errors.Is(err, manifest.ErrFenced):
			md.count("fenced")
			return
		case crashed:
			md.count("consumer crashed in dequeue")
			return
		default:
			md.violate("%s: Dequeue failed without a crash: %v", actor, err)
			return
		}
		if r.Float64() < 0.05 {
			md.count("consumer restart")
			return // a restarted consumer fences again (and fences its peers)
		}
	}
}
