package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
)

// entryState tracks one entry from its fetch until it is complete.
type entryState struct {
	e           manifest.Entry
	outstanding int  // events handed to the sink buffer, not yet delivered
	closed      bool // every record converted or dead-lettered
}

func (s *entryState) complete() bool { return s.closed && s.outstanding == 0 }

// pendingEvent is one converted event waiting in the sink buffer.
type pendingEvent struct {
	ev  json.RawMessage
	st  *entryState
	rec int // record index in the batch
	idx int // event index among the record's events
}

// run is the state of one Run: it lives in one goroutine.
type run struct {
	c     *Consumer
	lease *manifest.Lease

	next     uint64           // next sequence to start
	inflight []*entryState    // started, not yet complete, in order
	waiting  []manifest.Entry // read from the manifest, not yet started
	buf      []pendingEvent

	haveComplete, haveDequeued       bool
	completeThrough, dequeuedThrough uint64
	lastDequeue                      time.Time // last dequeue attempt

	// With a journal: the complete entries not yet dequeued, in order, and
	// how far they are journaled (journal.go).
	done             []manifest.Entry
	haveJournaled    bool
	journaledThrough uint64

	// Sink requests in flight: flush starts a sender goroutine per sink
	// batch when the limiter allows; each sends its results to results
	// (buffered for every slot, so a sender never blocks), which only the
	// run goroutine reads to mark events delivered. Senders use sctx, which
	// Run cancels after the loop.
	lim     *limiter
	results chan batchResult
	senders sync.WaitGroup
	sctx    context.Context
	batches uint64 // sink batches started, numbering them from 1
	ss      *senderState

	// The lag gauge's source, shared with refreshLag: the ingestion time
	// (Unix ms) of the oldest undelivered entry; lagHave is false when
	// nothing is undelivered, lagMs <= 0 when the entry has no time.
	lagMu   sync.Mutex
	lagHave bool
	lagMs   int64
}

// Run fences older consumers and delivers the queue until ctx is done
// (returning nil after a clean stop: the sink requests in flight are
// abandoned and nothing undelivered is dequeued) or until a newer consumer
// fences this one (returning an error wrapping manifest.ErrFenced).
func (c *Consumer) Run(ctx context.Context) error {
	// The breaker gauge describes this run: closed until it holds an
	// event, and closed once it stops (it no longer holds anything).
	c.m.SinkBreakerOpen.Set(0)
	defer c.m.SinkBreakerOpen.Set(0)
	c.setLease(leaseFencing, 0, nil)
	var lease *manifest.Lease
	fenced := false
	defer func() {
		if !fenced {
			c.setLease(leaseStopped, 0, nil)
		}
	}()
	for b := c.newBackoff(); ; {
		var err error
		lease, err = c.q.Fence(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		var ce *manifest.CorruptError
		if errors.As(err, &ce) {
			return fmt.Errorf("manifest %s is damaged; nothing was delivered or deleted. Check it with `bucketq inspect manifest --verify`, repair it with `bucketq repair manifest` (README: when the manifest is damaged): %w", c.q.Path(), err)
		}
		c.setLease(leaseFencing, 0, err)
		wait := b.Next()
		c.log.Warn("fencing the queue failed; retrying", "manifest", c.q.Path(), "error", err, "wait", wait)
		if sleep(ctx, wait) != nil {
			return nil
		}
	}
	c.m.ConsumerEpoch.Set(float64(lease.Epoch()))
	c.setLease(leaseHeld, lease.Epoch(), nil)
	c.log.Info("consumer started", "manifest", c.q.Path(), "epoch", lease.Epoch())

	var wg sync.WaitGroup
	gcCtx, stopGC := context.WithCancel(ctx)
	if !c.cfg.DisableGC {
		wg.Add(1)
		go func() { defer wg.Done(); c.gcLoop(gcCtx) }()
	}
	defer func() { stopGC(); wg.Wait() }()

	lim := newLimiter(c.cfg.SinkConcurrency, c.cfg.MaxSinkConcurrency, c.m)
	sctx, stopSenders := context.WithCancel(ctx)
	r := &run{c: c, lease: lease, lim: lim, results: make(chan batchResult, lim.max), sctx: sctx, ss: newSenderState()}
	lagCtx, stopLag := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); r.refreshLag(lagCtx) }()
	err := r.loop(ctx)
	if errors.Is(err, manifest.ErrFenced) {
		fenced = true
		c.setLease(leaseFenced, lease.Epoch(), nil)
	}
	stopLag()
	// Abandon the requests in flight (their events stay queued), but mark
	// delivered what was delivered before they stopped: the final dequeue
	// then spares the next consumer their redelivery.
	stopSenders()
	r.senders.Wait()
	for len(r.results) > 0 {
		r.completeDelivered(<-r.results)
	}
	if errors.Is(err, manifest.ErrFenced) {
		c.log.Error("consumer fenced by a newer consumer; stopping", "manifest", c.q.Path(), "epoch", lease.Epoch(), "error", err)
		return err // the caller names the consumer; ErrFenced names the manifest
	}
	if ctx.Err() != nil {
		// Dequeue what was delivered, to spare the next consumer the
		// redelivery; best effort, bounded.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := r.dequeue(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			c.log.Warn("final dequeue failed; delivered entries will be redelivered", "error", err)
		}
		cancel()
		c.log.Info("consumer stopped", "manifest", c.q.Path(), "epoch", lease.Epoch())
		return nil
	}
	return err
}

// loop returns only ctx errors and ErrFenced; everything else is retried.
func (r *run) loop(ctx context.Context) error {
	c := r.c
	corruptLogged := false // log a damaged manifest once per stretch
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		man, err := r.lease.Read(ctx)
		if err != nil {
			if errors.Is(err, manifest.ErrFenced) {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ce *manifest.CorruptError
			if errors.As(err, &ce) {
				if !corruptLogged {
					corruptLogged = true
					c.log.Error("MANIFEST IS DAMAGED: delivery and GC are stalled until it is repaired (bucketq repair manifest)", "manifest", c.q.Path(), "error", err)
				}
			} else {
				c.log.Warn("reading manifest failed; retrying", "manifest", c.q.Path(), "error", err)
			}
			if err := sleep(ctx, c.cfg.PollInterval); err != nil {
				return err
			}
			continue
		}
		if corruptLogged {
			corruptLogged = false
			c.log.Info("manifest readable again; delivery resumed", "manifest", c.q.Path())
		}
		c.m.QueueLength.Set(float64(len(man.Entries)))
		r.waiting = man.From(r.next)
		r.updateLag()
		if len(r.waiting) == 0 {
			if err := r.dequeue(ctx); err != nil {
				return err
			}
			if err := sleep(ctx, c.cfg.PollInterval); err != nil {
				return err
			}
			continue
		}
		if err := r.process(ctx); err != nil {
			return err
		}
	}
}

// process delivers r.waiting in order.
func (r *run) process(ctx context.Context) error {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	order := r.c.prefetch(fctx, r.waiting)
	for len(r.waiting) > 0 {
		// While the next batch is fetched, take in the sink's answers.
		var ch chan fetchResult
		for ch == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case ch = <-order:
			case br := <-r.results:
				if err := r.complete(ctx, br); err != nil {
					return err
				}
			}
		}
		var res fetchResult
		for got := false; !got; {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case res = <-ch:
				got = true
			case br := <-r.results:
				if err := r.complete(ctx, br); err != nil {
					return err
				}
			}
		}
		if res.err != nil && !res.missing {
			return res.err // ctx ended
		}
		e := r.waiting[0]
		r.waiting = r.waiting[1:]
		st := &entryState{e: e}
		r.inflight = append(r.inflight, st)
		r.next = e.Sequence + 1
		if err := r.handleEntry(ctx, st, res); err != nil {
			return err
		}
		st.closed = true
		r.advance()
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	// Wait for every request in flight before the manifest is read again.
	for r.lim.active() > 0 {
		if err := r.await(ctx); err != nil {
			return err
		}
	}
	return r.dequeueIfDue(ctx)
}

type fetchResult struct {
	data    []byte
	missing bool
	err     error // the not-found error when missing, else ctx's error
}

// prefetch fetches entries in the background, at most Prefetch at a time,
// and hands out their results in entry order.
func (c *Consumer) prefetch(ctx context.Context, entries []manifest.Entry) <-chan chan fetchResult {
	order := make(chan chan fetchResult, c.cfg.Prefetch-1)
	go func() {
		for _, e := range entries {
			ch := make(chan fetchResult, 1)
			select {
			case order <- ch:
			case <-ctx.Done():
				return
			}
			go func() { ch <- c.fetch(ctx, e) }()
		}
	}()
	return order
}

// fetch gets one batch, retrying transient errors until ctx ends. A batch
// reported missing twice, MinBackoff apart, is missing.
func (c *Consumer) fetch(ctx context.Context, e manifest.Entry) fetchResult {
	b := c.newBackoff()
	notFound := 0
	for {
		start := time.Now()
		data, err := c.get(ctx, e.Location)
		if err == nil {
			c.m.FetchDuration.Observe(time.Since(start).Seconds())
			c.m.BatchesCollected.Inc()
			c.m.BytesCollected.Add(float64(len(data)))
			return fetchResult{data: data}
		}
		if ctx.Err() != nil {
			return fetchResult{err: ctx.Err()}
		}
		if c.bkt.IsObjNotFoundErr(err) {
			notFound++
			if notFound >= 2 {
				return fetchResult{missing: true, err: err}
			}
		} else {
			c.log.Warn("fetching batch failed; retrying", "location", e.Location, "sequence", e.Sequence, "error", err)
		}
		if err := sleep(ctx, b.Next()); err != nil {
			return fetchResult{err: err}
		}
	}
}

func (c *Consumer) get(ctx context.Context, name string) ([]byte, error) {
	rc, err := c.bkt.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// metadataRange is the records [start, end) of one metadata item.
type metadataRange struct {
	h          format.Header
	start, end int
	ingestMs   int64
}

// ranges checks an entry's metadata against the batch's record count.
func ranges(e manifest.Entry, n int) ([]metadataRange, error) {
	if len(e.Metadata) == 0 {
		if n == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("entry has no metadata item for its %d records", n)
	}
	out := make([]metadataRange, 0, len(e.Metadata))
	for i, md := range e.Metadata {
		h, _, err := format.ParseHeader(md.Payload)
		if err != nil {
			return nil, fmt.Errorf("metadata item %d: %w", i, err)
		}
		start, end := int(md.StartIndex), n
		if i+1 < len(e.Metadata) {
			end = int(e.Metadata[i+1].StartIndex)
		}
		if i == 0 && start != 0 {
			return nil, fmt.Errorf("metadata item 0 starts at record %d: records before it have no header", start)
		}
		if start > end || end > n {
			return nil, fmt.Errorf("metadata item %d covers records [%d, %d) of a batch of %d", i, start, end, n)
		}
		out = append(out, metadataRange{h: h, start: start, end: end, ingestMs: md.IngestionTimeMs})
	}
	return out, nil
}

// handleEntry converts one fetched entry into the sink buffer, flushing
// as the buffer fills, and dead-letters what cannot be delivered.
func (r *run) handleEntry(ctx context.Context, st *entryState, res fetchResult) error {
	c := r.c
	e := st.e
	if res.missing {
		return r.unreadable(ctx, e, deadletter.BatchMissing, res.err, nil)
	}
	records, rs, err := decodeEntry(e, res.data)
	if err != nil {
		return r.unreadable(ctx, e, deadletter.BatchCorrupt, err, res.data)
	}
	c.m.EntriesCollected.Add(float64(len(records)))
	for _, rg := range rs {
		for i := rg.start; i < rg.end; i++ {
			// Item by item: an OTLP request whose items partly fail
			// still delivers its other items' events; the failed ones are
			// dead-lettered with the record (deadLetterItems).
			evs, failed, err := ConvertRecord(c.conv, e, rg.h, rg.ingestMs, i, records[i])
			if errors.Is(err, convert.ErrNoConverter) {
				if err := r.deadLetterRange(ctx, e, rg, i, records[i:rg.end], err); err != nil {
					return err
				}
				break
			}
			if err != nil {
				if err := r.deadLetterRecord(ctx, e, rg.h, i, records[i], err); err != nil {
					return err
				}
				continue
			}
			if len(failed) > 0 {
				if err := r.deadLetterItems(ctx, e, rg.h, i, records[i], failed, len(evs)); err != nil {
					return err
				}
			}
			c.m.EventsConverted.WithLabelValues(rg.h.Signal.String()).Add(float64(len(evs)))
			for j, ev := range evs {
				r.buf = append(r.buf, pendingEvent{ev: ev.JSON, st: st, rec: i, idx: j})
				st.outstanding++
				if len(r.buf) >= c.cfg.SinkBatchSize {
					if err := r.flush(ctx); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// checkEvents refuses converter output that no sink could send, so one
// bad converter result is dead-lettered instead of stalling the queue. It is
// the one JSON validation on the delivery path: converters and sinks rely on
// it.
func checkEvents(evs []convert.Event) error {
	for j, ev := range evs {
		if !json.Valid(ev.JSON) {
			return fmt.Errorf("event %d of the record is not valid JSON", j)
		}
	}
	return nil
}

// flush hands the sink buffer to a sender goroutine as soon as the limiter
// allows one more request in flight (and no event is held by the breaker:
// then nothing after it is sent), taking in the sink's answers meanwhile.
//
// The limit bounds the batches started since the oldest unresolved one,
// not only those in flight: a batch that keeps failing (a 5xx on its body,
// a bisection) lets at most limit-1 later batches be delivered past it, so
// what is delivered but not yet dequeueable, and redelivered after a
// crash, stays within limit × SinkBatchSize events.
func (r *run) flush(ctx context.Context) error {
	if len(r.buf) == 0 {
		return nil
	}
	for !r.startable() {
		if err := r.await(ctx); err != nil {
			return err
		}
	}
	r.batches++
	b := &sinkBatch{n: r.batches, evs: r.buf}
	r.buf = nil
	r.senders.Add(1)
	go func() {
		defer r.senders.Done()
		r.results <- batchResult{b: b, err: r.sendBatch(r.sctx, b)}
	}()
	return nil
}

// startable takes a sender slot unless an event is held or the next batch
// would be more than the limit past the oldest unresolved one.
func (r *run) startable() bool {
	r.ss.mu.Lock()
	held, front := r.ss.held, r.ss.front
	r.ss.mu.Unlock()
	if held {
		return false
	}
	if r.batches+1-front > uint64(r.lim.current()) {
		r.lim.full()
		return false
	}
	return r.lim.acquire()
}

// awaitTick bounds how long await waits without an answer: it re-checks
// the limit and writes a due dequeue (an outage or a hold may last hours;
// the entries completed before it are acked meanwhile).
const awaitTick = 100 * time.Millisecond

// await takes in one sink batch result, or waits at most awaitTick and
// dequeues if due.
func (r *run) await(ctx context.Context) error {
	t := time.NewTimer(min(awaitTick, r.c.cfg.PollInterval))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case br := <-r.results:
		return r.complete(ctx, br)
	case <-t.C:
		return r.dequeueIfDue(ctx)
	}
}

// batchResult is the end of one sender: nil when every event of the batch
// was delivered or dead-lettered, else ctx's error or ErrFenced.
type batchResult struct {
	b   *sinkBatch
	err error
}

// complete releases a result's slot and marks its events delivered, then
// dequeues what became complete (at most once per DequeueInterval). An
// entry completes only when all its events and those of every entry before
// it are done (advance), whatever order the sink answered in.
func (r *run) complete(ctx context.Context, br batchResult) error {
	if br.err != nil {
		r.lim.release()
		return br.err
	}
	r.completeDelivered(br)
	return r.dequeueIfDue(ctx)
}

func (r *run) completeDelivered(br batchResult) {
	r.lim.release()
	if br.err != nil {
		return
	}
	for _, p := range br.b.evs {
		p.st.outstanding--
	}
	r.advance()
}

// dequeueIfDue dequeues unless the last dequeue attempt was less than
// DequeueInterval ago: while the consumer is busy, one manifest write per
// interval acks everything completed in it.
func (r *run) dequeueIfDue(ctx context.Context) error {
	if time.Since(r.lastDequeue) < r.c.cfg.DequeueInterval {
		return nil
	}
	return r.dequeue(ctx)
}

// advance moves complete entries off the head of inflight.
func (r *run) advance() {
	for len(r.inflight) > 0 && r.inflight[0].complete() {
		r.completeThrough = r.inflight[0].e.Sequence
		r.haveComplete = true
		if r.c.cfg.Journal != nil {
			r.done = append(r.done, r.inflight[0].e)
		}
		r.inflight = r.inflight[1:]
	}
	r.updateLag()
}

// dequeue removes complete entries from the manifest. It returns only
// ErrFenced and ctx errors; other failures are logged and retried at the
// next flush or poll.
func (r *run) dequeue(ctx context.Context) error {
	if !r.haveComplete || (r.haveDequeued && r.completeThrough <= r.dequeuedThrough) {
		return nil
	}
	c := r.c
	through := r.completeThrough
	r.lastDequeue = time.Now()
	// Journal before the dequeue CAS (RFC 0004): a crash between the two
	// leaves a journaled entry still queued, never a dequeued one
	// missing from the journal.
	if err := r.journal(ctx, through); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Warn("journal write failed; the dequeue waits and will retry", "manifest", c.q.Path(), "through", through, "error", err)
		return nil
	}
	removed, err := r.lease.Dequeue(ctx, through)
	if err != nil {
		if errors.Is(err, manifest.ErrFenced) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Warn("dequeue failed; will retry", "manifest", c.q.Path(), "through", through, "error", err)
		return nil
	}
	r.haveDequeued, r.dequeuedThrough = true, through
	r.journaled(ctx, through, removed)
	c.m.Acks.Add(float64(len(removed)))
	c.m.ConsumerLastDequeue.Set(float64(through))
	c.log.Debug("dequeued", "through", through, "entries", len(removed))
	return nil
}

// updateLag records the oldest undelivered entry's ingestion time as the
// lag's source and sets the gauge from it.
func (r *run) updateLag() {
	var oldest *manifest.Entry
	switch {
	case len(r.inflight) > 0:
		oldest = &r.inflight[0].e
	case len(r.waiting) > 0:
		oldest = &r.waiting[0]
	}
	var ms int64
	if oldest != nil {
		for i, md := range oldest.Metadata {
			if i == 0 || md.IngestionTimeMs < ms {
				ms = md.IngestionTimeMs
			}
		}
	}
	r.lagMu.Lock()
	r.lagHave, r.lagMs = oldest != nil, ms
	r.lagMu.Unlock()
	r.publishLag()
}

// publishLag sets the lag gauge: now minus the recorded ingestion time, 0
// when nothing is undelivered; an entry without a time leaves it as is.
func (r *run) publishLag() {
	r.lagMu.Lock()
	defer r.lagMu.Unlock()
	switch {
	case !r.lagHave:
		r.c.m.ConsumerLagSeconds.Set(0)
	case r.lagMs > 0:
		lag := r.c.now().Sub(time.UnixMilli(r.lagMs)).Seconds()
		r.c.m.ConsumerLagSeconds.Set(max(lag, 0))
	}
}

// lagRefresh bounds how stale the lag gauge gets while the consumer waits.
const lagRefresh = time.Second

// refreshLag keeps the lag gauge growing while the run goroutine waits on
// something other than the manifest (a failing sink, fetch or dead-letter
// write, each retried forever): it republishes the lag every PollInterval
// (at most lagRefresh) until ctx ends.
func (r *run) refreshLag(ctx context.Context) {
	t := time.NewTicker(min(r.c.cfg.PollInterval, lagRefresh))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.publishLag()
		}
	}
}

// senderState is what the sender goroutines of one run share (under mu):
// the breaker of the 400 policy and the order in which it sees refusals.
//
// Batches are numbered in the order flush starts them, which is queue
// order. The breaker counts events refused alone in a row in queue order,
// so a batch that meets a 400 (413, 422) waits its turn before bisecting:
// until every earlier batch is resolved (delivered or dead-lettered), so
// it starts from the count its predecessors left, and it is then the only
// sender reading or changing the count (it is the owner). A batch the sink
// accepted whole resets the count when the front of resolved batches
// passes it. Batches answered 2xx need no turn: they run concurrently.
type senderState struct {
	mu sync.Mutex
	// front is the highest batch number through which every batch is
	// resolved; ahead are the batches resolved beyond it (all accepted
	// whole: a bisected batch resolves only at the front); moved is closed
	// and replaced whenever front moves.
	front uint64
	ahead map[uint64]bool
	moved chan struct{}

	// refusedAlone counts the events the sink refused alone (400, 413,
	// 422 on a one-event request) in a row, in queue order, across
	// batches, with no event delivered in between (see holding).
	refusedAlone int
	held         bool // an event is held: nothing after it is started
	leaseChecked time.Time
}

func newSenderState() *senderState {
	return &senderState{ahead: map[uint64]bool{}, moved: make(chan struct{})}
}

// sinkBatch is one sink request's events, as flush cut them.
type sinkBatch struct {
	n   uint64
	evs []pendingEvent
	// owner: the batch waited its turn (a 400) and is bisecting; only
	// its sender goroutine touches it.
	owner bool
}

// turn waits until every batch before n is resolved.
func (s *senderState) turn(ctx context.Context, n uint64) error {
	for {
		s.mu.Lock()
		if s.front+1 >= n {
			s.mu.Unlock()
			return nil
		}
		moved := s.moved
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-moved:
		}
	}
}

// resolve records that every event of b was delivered or dead-lettered.
func (s *senderState) resolve(b *sinkBatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.n != s.front+1 {
		s.ahead[b.n] = true
		return
	}
	if !b.owner {
		s.refusedAlone = 0 // accepted whole
	}
	s.front = b.n
	for s.ahead[s.front+1] {
		delete(s.ahead, s.front+1)
		s.front++
		s.refusedAlone = 0
	}
	close(s.moved)
	s.moved = make(chan struct{})
}

// holding reports whether the breaker is open: MaxConsecutivePoison events
// in a row were refused alone, so a further refusal is taken as the sink
// refusing everything (a misrouted URL, a gateway answering 400 to every
// body, a wrong API version) rather than as one more poison event. Then
// the refused event is held (retried every AuthRetryInterval, not
// dead-lettered) until the sink accepts it: a billing pipeline stops and
// shouts instead of dead-lettering the whole queue. r.ss.mu is held.
func (r *run) holding() bool {
	max := r.c.cfg.MaxConsecutivePoison
	return max > 0 && r.ss.refusedAlone >= max
}

// sendBatch is one sender goroutine: it delivers b and records it resolved.
func (r *run) sendBatch(ctx context.Context, b *sinkBatch) error {
	if err := r.deliver(ctx, b, b.evs); err != nil {
		return err
	}
	r.ss.resolve(b)
	return nil
}

// deliver sends evs (all or part of b) until they are delivered or
// dead-lettered as poison. It returns only ctx's error, or ErrFenced when a
// newer consumer took over while the sink was failing. Several run at once,
// one per batch in flight; the limiter paces them all.
//
// A 400 (413, 422) makes b wait its turn (senderState), then bisects evs in
// order, so the events refused alone are met in queue order and each
// delivery resets the breaker's count. Once the breaker is open, bisection
// still descends (log2 n requests) to the first undelivered event, which is
// then held: retried alone every AuthRetryInterval; no batch after it is
// started, dead-lettered or dequeued (those already in flight finish).
func (r *run) deliver(ctx context.Context, b *sinkBatch, evs []pendingEvent) error {
	c := r.c
	s := r.ss
	raws := make([]json.RawMessage, len(evs))
	for i, p := range evs {
		raws[i] = p.ev
	}
	bo := c.newBackoff()
	for {
		// No request starts during a Retry-After or an operator hold,
		// whichever sender was told.
		if err := r.lim.wait(ctx); err != nil {
			return err
		}
		start := time.Now()
		var status int
		var err error
		if ss, ok := c.snk.(sink.StatusSender); ok {
			status, err = ss.SendStatus(ctx, raws)
		} else {
			err = c.snk.Send(ctx, raws)
		}
		rtt := time.Since(start)
		c.m.SinkDuration.Observe(rtt.Seconds())
		if err == nil {
			r.lim.observe(rtt)
			label := "ok"
			if status != 0 {
				label = strconv.Itoa(status)
			}
			c.m.SinkRequests.WithLabelValues(label).Inc()
			c.m.SinkEvents.WithLabelValues("sent").Add(float64(len(evs)))
			if b.owner {
				s.mu.Lock()
				if s.held {
					c.log.Warn("sink accepts events again; resuming delivery (events it refuses alone are dead-lettered again)",
						"first_location", evs[0].st.e.Location, "first_sequence", evs[0].st.e.Sequence, "events", len(evs))
				}
				s.refusedAlone, s.held = 0, false
				s.mu.Unlock()
				c.m.SinkBreakerOpen.Set(0)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		first := evs[0]
		logArgs := []any{"events", len(evs), "first_location", first.st.e.Location, "first_sequence", first.st.e.Sequence, "error", err}
		var wait time.Duration
		result := "retried" // the sink_events label of evs if they are retried
		// Classified and timed as redrive does (sink.Failure).
		f := sink.ReadFailure(err)
		if he := f.HTTP; he != nil {
			c.m.SinkRequests.WithLabelValues(strconv.Itoa(he.Status)).Inc()
			switch f.Class {
			case sink.Reject:
				r.lim.observe(rtt) // an answer in time: not back-pressure
				if !b.owner {
					if err := s.turn(ctx, b.n); err != nil {
						return err
					}
					b.owner = true
				}
				if len(evs) > 1 {
					half := len(evs) / 2
					c.log.Warn("sink rejected a batch; bisecting to isolate the rejected events", append(logArgs, "status", he.Status)...)
					if err := r.deliver(ctx, b, evs[:half]); err != nil {
						return err
					}
					return r.deliver(ctx, b, evs[half:])
				}
				s.mu.Lock()
				holding := r.holding()
				s.mu.Unlock()
				if !holding {
					if err := r.deadLetterPoison(ctx, first, he); err != nil {
						return err
					}
					s.mu.Lock()
					s.refusedAlone++
					s.mu.Unlock()
					return nil
				}
				wait, result = c.cfg.AuthRetryInterval, "held"
				s.mu.Lock()
				s.held = true
				refused := s.refusedAlone
				s.mu.Unlock()
				c.m.SinkBreakerOpen.Set(1)
				c.log.Error("SINK REFUSES EVERY EVENT: too many events in a row refused alone; "+
					"holding the queue instead of dead-lettering it (check the sink URL, proxy and API version; "+
					"events already dead-lettered can be re-sent with `bucketq dead-letters redrive`)",
					"location", first.st.e.Location, "sequence", first.st.e.Sequence, "record", first.rec, "event", first.idx,
					"status", he.Status, "response", he.Body, "consecutive_refused", refused,
					"max_consecutive_poison", c.cfg.MaxConsecutivePoison, "wait", wait)
			case sink.Throttle:
				r.lim.backPressure()
				wait = f.Wait(bo.Next, c.cfg.MaxRetryAfter)
				if f.RetryAfter(c.cfg.MaxRetryAfter) > 0 {
					// A Retry-After is about the sink, not this request:
					// every sender pauses.
					r.lim.pause(time.Now().Add(wait))
				}
				c.log.Warn("sink throttled or unavailable; waiting", append(logArgs, "status", he.Status, "wait", wait)...)
			case sink.Operator:
				// Holds the queue: no sender retries before the interval.
				wait = c.cfg.AuthRetryInterval
				r.lim.pause(time.Now().Add(wait))
				args := append(logArgs, "status", he.Status, "wait", wait)
				if he.Location != "" {
					args = append(args, "redirect_location", he.Location) // a 3xx: redirects are never followed
				}
				c.log.Error("SINK REFUSES REQUESTS: check the sink URL and token; delivery is stalled and will retry", args...)
			default:
				r.lim.backPressure()
				wait = f.Wait(bo.Next, c.cfg.MaxRetryAfter)
				c.log.Warn("sink failed; retrying", append(logArgs, "status", he.Status, "wait", wait)...)
			}
		} else {
			c.m.SinkRequests.WithLabelValues("error").Inc()
			r.lim.backPressure()
			wait = f.Wait(bo.Next, c.cfg.MaxRetryAfter)
			c.log.Warn("sink request failed; retrying", append(logArgs, "wait", wait)...)
		}
		c.m.SinkEvents.WithLabelValues(result).Add(float64(len(evs)))
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		// A newer consumer may have taken over while the sink was down:
		// stop instead of delivering alongside it. (The run goroutine
		// acks what completed before these events meanwhile: await.)
		s.mu.Lock()
		check := time.Since(s.leaseChecked) >= c.cfg.PollInterval
		if check {
			s.leaseChecked = time.Now()
		}
		s.mu.Unlock()
		if check {
			if _, err := r.lease.Read(ctx); errors.Is(err, manifest.ErrFenced) {
				return err
			}
		}
	}
}
