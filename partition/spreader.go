package partition

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/producer"
)

// Producer is what a Spreader needs of one partition's producer
// (*producer.Producer implements it).
type Producer interface {
	producer.Appender
	Drain()
	Close(ctx context.Context) error
}

// NewProducer builds the producer of partition p. store is the manifest
// store to give its queue: the spreader's view of it, which counts every
// conditional write's outcome to decide fall-over. Typically:
//
//	q := manifest.NewQueue(store, layout.Partition(p).Manifest, producer.QueueOptions(m))
//	return producer.New(bkt, q, producer.Config{DataPrefix: layout.Partition(p).Data, ...}, m, log)
type NewProducer func(p int, store cas.Store) (Producer, error)

// SpreaderConfig tunes a Spreader. Zero fields take their defaults.
type SpreaderConfig struct {
	// Partitions is the partition count (default 1).
	Partitions int
	// Home is the first home partition; negative picks one by FNV-1a of
	// HomeKey (the host name, say) modulo Partitions ("partition: auto").
	Home    int
	HomeKey string
	// MaxConflictRatio: once the home partition has seen at least
	// MinWrites conditional writes since this spreader moved there and
	// more than this fraction of them were refused (conflicts and
	// throttling), the spreader moves. Default 0.75 (at 2 producers per
	// partition near the S3 write budget about 0.57 of writes are refused,
	// BENCHMARKS.md §partitions); negative never moves
	// on conflicts.
	MaxConflictRatio float64
	// MinWrites is the sample the ratio needs. Default 20.
	MinWrites int
	// MinStay is the least time at a home before conflicts move the
	// spreader again (errors move it at once). Default 5s.
	MinStay time.Duration
	// FailAfter is readiness_failure_threshold: an Append that finds its
	// home's producer not ready (producer.Ready(FailAfter): uploads or
	// commits failing that long) moves the home first, so no new request
	// waits on a partition known to fail; Ready uses it too. 0: Appends
	// do not check (the home moves only when an Append fails).
	FailAfter time.Duration
}

func (c *SpreaderConfig) defaults() {
	if c.Partitions <= 0 {
		c.Partitions = 1
	}
	if c.MaxConflictRatio == 0 {
		c.MaxConflictRatio = 0.75
	}
	if c.MinWrites <= 0 {
		c.MinWrites = 20
	}
	if c.MinStay <= 0 {
		c.MinStay = 5 * time.Second
	}
}

// HomeFor is FNV-1a of key modulo n: a stable spread of a fleet over the
// partitions without per-host configuration.
func HomeFor(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// partStats counts one partition's conditional writes as this spreader saw
// them.
type partStats struct {
	writes, refused uint64 // since the spreader last moved there
	errors          uint64 // Appends that failed on it (not back-pressure)
}

// Spreader is a producer.Appender over N partitions. Every Append goes to
// the current home partition, so one process's batches stay in one
// manifest and group commit keeps packing them into one write. The home
// moves (fall-over) when an Append fails on it with anything but
// back-pressure or shutdown, or when more than MaxConflictRatio of its
// recent conditional writes were refused; the new home is the partition
// with the fewest refusals this spreader has seen, ties broken at random,
// so a fleet that started crowded spreads itself out. Appends already in
// flight finish on the partition they started on: a batch never moves.
type Spreader struct {
	cfg  SpreaderConfig
	mk   NewProducer
	now  func() time.Time
	rand func(n int) int

	mu     sync.Mutex
	prods  []Producer // lazily built, nil until first used
	home   int
	since  time.Time
	stats  []partStats
	moves  uint64
	onMove func(from, to int, why string)
	closed bool
	store  cas.Store

	// The spreader's own evidence across partitions, for Ready: Appends
	// that failed and homes left for failing, since the last Append that
	// committed on any partition.
	health producer.FailureEvidence
}

// NewSpreader returns a spreader over the manifests in store; producers are
// built when a partition is first used. onMove, if set, is called (for logs and metrics) whenever the
// home partition changes.
func NewSpreader(cfg SpreaderConfig, store cas.Store, mk NewProducer, onMove func(from, to int, why string)) (*Spreader, error) {
	cfg.defaults()
	if cfg.Partitions > MaxPartitions {
		return nil, fmt.Errorf("partition: Partitions %d above %d", cfg.Partitions, MaxPartitions)
	}
	if cfg.Home >= cfg.Partitions {
		return nil, fmt.Errorf("partition: Home %d is not below Partitions %d", cfg.Home, cfg.Partitions)
	}
	if mk == nil || store == nil {
		return nil, errors.New("partition: nil NewProducer or store")
	}
	home := cfg.Home
	if home < 0 {
		home = HomeFor(cfg.HomeKey, cfg.Partitions)
	}
	s := &Spreader{cfg: cfg, mk: mk, now: time.Now, rand: rand.IntN, prods: make([]Producer, cfg.Partitions),
		stats: make([]partStats, cfg.Partitions), home: home, onMove: onMove, store: store}
	s.since = s.now()
	return s, nil
}

// Home is the partition new Appends go to.
func (s *Spreader) Home() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.home
}

// readier is a producer with readiness (*producer.Producer).
type readier interface{ Ready(time.Duration) error }

// Ready is /readyz for the spreader. It fails only when EVERY partition
// this spreader could write to is failing: each partition's producer
// reports failing (producer.(*Producer).Ready(threshold)) and none is left
// that it has not tried. The body names each failing partition and its
// last error. A spreader shutting down (Drain, Close) is not ready.
//
// Why all and not any: a new request goes to the home, and the home moves
// off a failing partition (at once with FailAfter set, else when an Append
// fails there), so while one partition still takes commits this process
// serves requests. Failing on any partition would take every producer that
// ever homed on one damaged manifest out of rotation, and keep it out until
// the batches stuck there time out: one partition's fault would become
// lost capacity across the fleet, though its requests commit elsewhere.
//
// A partition's evidence expires (producer.Ready: once nothing waits there
// and its last failure is threshold old), so with more than two partitions
// a store refusing every write would never show as every partition failing
// at once: the spreader moves on, and the partitions it left look writable
// again before it has tried the last. So the spreader keeps evidence of its
// own, across partitions: it is not ready either once its Appends have
// been failing, or its homes been left for failing, for threshold with no
// Append committed on any partition since, the last failure less than
// threshold ago. That evidence is passive too, and expires the same way, so
// a producer taken out of rotation comes back and tries again. A store that
// does not answer at all is still caught at once by /readyz's bucket probe.
func (s *Spreader) Ready(threshold time.Duration) error {
	s.mu.Lock()
	prods, closed := append([]Producer(nil), s.prods...), s.closed
	s.mu.Unlock()
	stuck := s.health.Failing(s.now(), threshold, false, "no Append committed on any partition", "failed or left a failing partition")
	if closed {
		return fmt.Errorf("%w: %w", producer.ErrNotReady, producer.ErrClosed)
	}
	writable := false
	var failing, why []string
	for p, pr := range prods {
		r, ok := pr.(readier)
		if !ok {
			writable = true // not tried yet (or no readiness): writable as far as is known
			continue
		}
		err := r.Ready(threshold)
		switch {
		case errors.Is(err, producer.ErrClosed):
			return fmt.Errorf("partition %d: %w", p, err)
		case err == nil:
			writable = true
		default:
			failing = append(failing, itoa(p))
			why = append(why, fmt.Sprintf("partition %d: %s", p, strings.TrimPrefix(err.Error(), producer.ErrNotReady.Error()+": ")))
		}
	}
	if writable {
		return stuck
	}
	return fmt.Errorf("%w: every partition failing (%s): %s", producer.ErrNotReady, strings.Join(failing, ", "), strings.Join(why, "; "))
}

// homeFailing moves the home off p if p's producer has been failing for
// FailAfter (not ready), and says whether it did.
func (s *Spreader) homeFailing(p int, pr Producer) bool {
	r, ok := pr.(readier)
	if s.cfg.FailAfter <= 0 || !ok {
		return false
	}
	err := r.Ready(s.cfg.FailAfter)
	if err == nil || errors.Is(err, producer.ErrClosed) {
		return false
	}
	s.failed(p, err)
	return true
}

// Moves counts home changes.
func (s *Spreader) Moves() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.moves
}

// producerFor returns the producer of p, building it on first use.
func (s *Spreader) producerFor(p int) (Producer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, producer.ErrClosed
	}
	if s.prods[p] != nil {
		return s.prods[p], nil
	}
	pr, err := s.mk(p, &countingStore{s: s, p: p, Store: s.store})
	if err != nil {
		return nil, fmt.Errorf("partition %d: %w", p, err)
	}
	s.prods[p] = pr
	return pr, nil
}

// Append implements producer.Appender on the home partition. With
// FailAfter set, a home whose producer has been failing that long is left
// first (once per Append): the batch goes to the new home instead of
// waiting on a partition known to fail.
func (s *Spreader) Append(ctx context.Context, h format.Header, records [][]byte) error {
	p := s.Home()
	pr, err := s.producerFor(p)
	if err == nil && s.homeFailing(p, pr) {
		p = s.Home()
		pr, err = s.producerFor(p)
	}
	if err != nil {
		if !errors.Is(err, producer.ErrClosed) {
			s.failed(p, err)
		}
		return err
	}
	err = pr.Append(ctx, h, records)
	if err != nil && !errors.Is(err, producer.ErrBackpressure) && !errors.Is(err, producer.ErrClosed) && ctx.Err() == nil {
		s.failed(p, err)
	}
	if err == nil {
		s.health.Succeeded()
	}
	return err
}

// failed moves the home away from p after an Append failed there (or its
// producer was found failing), and records the failure for Ready.
func (s *Spreader) failed(p int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health.Failed(s.now(), fmt.Errorf("partition %d: %w", p, err))
	s.stats[p].errors++
	if s.home == p {
		s.moveLocked(fmt.Sprintf("append failed: %v", err))
	}
}

// observe counts one conditional write on p and moves the home if p is the
// home and refuses too much.
func (s *Spreader) observe(p int, refused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.stats[p]
	st.writes++
	if refused {
		st.refused++
	}
	if p != s.home || s.cfg.MaxConflictRatio < 0 || st.writes < uint64(s.cfg.MinWrites) || s.now().Sub(s.since) < s.cfg.MinStay {
		return
	}
	if float64(st.refused) > s.cfg.MaxConflictRatio*float64(st.writes) {
		s.moveLocked(fmt.Sprintf("%d of %d manifest writes refused", st.refused, st.writes))
	}
}

// moveLocked picks the partition other than the home with the lowest
// refusal ratio (errors count as refusals of every write), at random among
// equals; with one partition it only restarts the sample.
func (s *Spreader) moveLocked(why string) {
	from := s.home
	best, ties := -1, 0
	var bestScore float64
	for p := range s.stats {
		if p == from && len(s.stats) > 1 {
			continue
		}
		st := s.stats[p]
		score := float64(st.errors)
		if st.writes > 0 {
			score += float64(st.refused) / float64(st.writes)
		}
		switch {
		case best < 0 || score < bestScore:
			best, bestScore, ties = p, score, 1
		case score == bestScore:
			ties++
			if s.rand(ties) == 0 {
				best = p
			}
		}
	}
	s.home = best
	s.since = s.now()
	s.stats[best].writes, s.stats[best].refused = 0, 0
	if best != from {
		s.moves++
		if s.onMove != nil {
			s.onMove(from, best, why)
		}
	}
}

// Drain drains every partition's producer (see producer.Producer.Drain).
func (s *Spreader) Drain() {
	s.mu.Lock()
	prods := append([]Producer(nil), s.prods...)
	s.mu.Unlock()
	for _, p := range prods {
		if p != nil {
			p.Drain()
		}
	}
}

// Close closes every partition's producer, in parallel, and returns their
// errors joined.
func (s *Spreader) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	prods := append([]Producer(nil), s.prods...)
	s.mu.Unlock()
	errs := make([]error, len(prods))
	var wg sync.WaitGroup
	for i, p := range prods {
		if p == nil {
			continue
		}
		wg.Go(func() {
			if err := p.Close(ctx); err != nil {
				errs[i] = fmt.Errorf("partition %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// countingStore is the manifest store a partition's producer gets: it
// reports every conditional write's outcome to the spreader.
type countingStore struct {
	s *Spreader
	p int
	cas.Store
}

func (c *countingStore) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	return c.Store.Read(ctx, name)
}

func (c *countingStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	nv, err := c.Store.WriteIf(ctx, name, data, v)
	c.s.observe(c.p, err != nil && ctx.Err() == nil)
	return nv, err
}
