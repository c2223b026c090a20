// Package replay re-sends history from the journal (RFC 0004): it selects
// journaled entries by sequence range or ingestion-time range, re-reads
// their batch files and sends their records through the consumer's decode
// and convert steps (consumer.EntryRecords, consumer.ConvertRecord) to a
// sink. It is read-only on the bucket: no fence, no manifest write, no GC,
// no dead letters. Replayed events are the delivered ones byte for byte
// (same id and source), so the metering API deduplicates them.
package replay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/thanos-io/objstore"
	"golang.org/x/time/rate"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/backoff"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
)

// CommitBound is how far listing order may stray from ingestion-time
// order: a batch is committed at most flush_interval + the producer's
// commit timeout (250 ms + 2 min by default) after its first record's
// ingestion time, plus clock skew. Segments are chosen by time with this
// margin; records are then kept by their exact ingestion time.
const CommitBound = 5 * time.Minute

// Selection says which history to replay: a sequence range or an
// ingestion-time range (exactly one), and filters on the events.
type Selection struct {
	BySeq          bool
	FromSeq, ToSeq uint64 // inclusive; ToSeq 0 with BySeq = up to the newest journaled
	From, To       time.Time
	// Filters: an event passes when each non-empty list contains its
	// value (CloudEvents type, source, subject; the record's signal).
	Types, Sources, Subjects, Signals []string
}

// Key identifies the selection in a checkpoint: a resume must replay the
// same one.
func (s Selection) Key() string {
	var b strings.Builder
	if s.BySeq {
		fmt.Fprintf(&b, "seq=%d..%d", s.FromSeq, s.ToSeq)
	} else {
		fmt.Fprintf(&b, "time=%s..%s", s.From.UTC().Format(time.RFC3339Nano), s.To.UTC().Format(time.RFC3339Nano))
	}
	for _, f := range []struct {
		n string
		v []string
	}{{"type", s.Types}, {"source", s.Sources}, {"subject", s.Subjects}, {"signal", s.Signals}} {
		if len(f.v) > 0 {
			v := slices.Clone(f.v)
			sort.Strings(v)
			fmt.Fprintf(&b, " %s=%s", f.n, strings.Join(v, ","))
		}
	}
	return b.String()
}

// Config is what a replay reads from and sends to.
type Config struct {
	Bucket        objstore.Bucket
	JournalPrefix string
	Converter     convert.Converter
	Sink          sink.Sink // nil on a dry run
	BatchSize     int       // events per sink request; default 500
	Rate          float64   // events per second; 0 = unlimited
	Prefetch      int       // batch files fetched ahead; default 4
	// Checkpoint is a file recording how far the replay got; with Resume
	// a replay of the same selection continues after it.
	Checkpoint string
	Resume     bool
	// Progress, if set, is called after every entry and sink request.
	Progress func(Progress)
	// DryRun, if set, makes Run send nothing and write the plan there:
	// one line per entry and the first events that would be sent.
	DryRun io.Writer
	Retry  sink.RetryPolicy
	Log    *slog.Logger
	// SinkConcurrency is the sink requests in flight: 0 adapts as the
	// consumer does (consumer.SinkLimiter), up to MaxSinkConcurrency
	// (default consumer.DefaultMaxSinkConcurrency); 1 sends one at a time.
	SinkConcurrency, MaxSinkConcurrency int
	// Metrics, if set, gets the sink concurrency gauges.
	Metrics *consumer.Metrics
}

// Progress is how far a replay got.
type Progress struct {
	EntriesDone, EntriesTotal int
	EventsSent                int
	Start                     time.Time
}

// Problem is one thing that was not replayed: a missing batch file, a
// sequence no segment holds, a record no converter could convert, an event
// the sink refused.
type Problem struct {
	Kind     string // "batch_missing", "gap", "convert_error", "refused", "stray_object"
	Sequence uint64
	Location string
	Detail   string
}

func (p Problem) String() string {
	s := p.Kind
	switch p.Kind {
	case "gap":
		return s + ": " + p.Detail
	case "stray_object":
		return s + ": " + p.Location + ": " + p.Detail
	}
	s += fmt.Sprintf(": sequence %d", p.Sequence)
	if p.Location != "" {
		s += " " + p.Location
	}
	if p.Detail != "" {
		s += ": " + p.Detail
	}
	return s
}

// Summary is what a replay did.
type Summary struct {
	Segments        int
	Entries         int // selected entries, this run
	BatchesRead     int
	Records         int
	EventsSent      int // delivered (or, on a dry run, would be sent)
	EventsFiltered  int // converted but left out by a filter
	RecordsOutside  int // in a selected batch but outside the time window
	ResumedAfter    *uint64
	Problems        []Problem
	ProblemsOmitted int // beyond maxProblems, counted only
}

// maxProblems bounds the listed problems (memory); the rest are counted.
const maxProblems = 1000

func (s *Summary) problem(p Problem) {
	if len(s.Problems) >= maxProblems {
		s.ProblemsOmitted++
		return
	}
	s.Problems = append(s.Problems, p)
}

// OK reports whether everything selected was sent.
func (s *Summary) OK() bool { return len(s.Problems) == 0 && s.ProblemsOmitted == 0 }

// ErrBadCheckpoint is returned when --resume finds a checkpoint of another
// selection, or none that it can read.
var ErrBadCheckpoint = errors.New("replay: checkpoint")

// planned is one selected entry and, by time, which metadata items are in
// the window (nil: all).
type planned struct {
	e     manifest.Entry
	items []bool
}

// planAttempts is how many listings plan tries when chosen segments
// vanish before it reads them. Segments read in an earlier attempt are
// kept, so each attempt reads only what the new listing added (the merged
// segments GC wrote meanwhile) and a GC cycle shorter than one full read
// of the journal still lets plan finish.
const planAttempts = 10

// plan lists the journal and returns the selected entries in sequence
// order, deduplicated across overlapping segments (a consumer that died
// between a segment write and its dequeue, or a GC cycle that died
// between writing a merged segment and deleting its inputs, leaves
// overlapping segments). A chosen segment deleted since the listing was
// expired or merged by GC into a segment the listing did not show: plan
// lists again.
func plan(ctx context.Context, j *journal.Journal, sel Selection, sum *Summary) ([]planned, error) {
	read := map[string][]manifest.Entry{}
	for attempt := 1; ; attempt++ {
		var s Summary
		out, err := planOnce(ctx, j, sel, &s, read)
		if j.Gone(err) && attempt < planAttempts {
			continue
		}
		sum.Segments = s.Segments
		for _, p := range s.Problems {
			sum.problem(p)
		}
		sum.ProblemsOmitted += s.ProblemsOmitted
		return out, err
	}
}

// planOnce is one attempt of plan, from one listing. read holds the
// entries of segments read by earlier attempts, by name; a segment's
// content never changes under its name, so they need no second read.
func planOnce(ctx context.Context, j *journal.Journal, sel Selection, sum *Summary, read map[string][]manifest.Entry) ([]planned, error) {
	segs, stray, err := j.ListStray(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range stray {
		sum.problem(Problem{Kind: "stray_object", Location: name, Detail: "under the journal prefix but not named FIRST-LAST" + ".journal (renamed or foreign); not read, so the sequences it may hold are not replayed"})
	}
	listed := make(map[string]bool, len(segs))
	for _, s := range segs {
		listed[s.Name] = true
	}
	for name := range read {
		if !listed[name] {
			delete(read, name) // merged or expired: its entries are elsewhere or gone
		}
	}
	var chosen []journal.SegmentRef
	if sel.BySeq {
		for _, s := range segs {
			if s.Last >= sel.FromSeq && (sel.ToSeq == 0 || s.First <= sel.ToSeq) {
				chosen = append(chosen, s)
			}
		}
	} else {
		chosen, err = byTime(ctx, j, segs, sel)
		if err != nil {
			return nil, err
		}
	}
	if err := j.ReadNew(ctx, chosen, read); err != nil {
		return nil, err
	}
	sum.Segments = len(chosen)
	bySeq := map[uint64]planned{}
	from, to := sel.From.UnixMilli(), sel.To.UnixMilli()
	for _, s := range chosen {
		for _, e := range read[s.Name] {
			if _, dup := bySeq[e.Sequence]; dup {
				continue
			}
			if sel.BySeq {
				if e.Sequence < sel.FromSeq || (sel.ToSeq != 0 && e.Sequence > sel.ToSeq) {
					continue
				}
				bySeq[e.Sequence] = planned{e: e}
				continue
			}
			items := make([]bool, len(e.Metadata))
			any := false
			for i, md := range e.Metadata {
				items[i] = md.IngestionTimeMs >= from && md.IngestionTimeMs < to
				any = any || items[i]
			}
			if any {
				bySeq[e.Sequence] = planned{e: e, items: items}
			}
		}
	}
	out := make([]planned, 0, len(bySeq))
	for _, p := range bySeq {
		out = append(out, p)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].e.Sequence < out[b].e.Sequence })
	if sel.BySeq && len(out) > 0 {
		// Sequences are consecutive: one no segment holds is still queued,
		// was dequeued while the journal was off, or expired.
		want, last := sel.FromSeq, out[len(out)-1].e.Sequence
		if sel.ToSeq != 0 {
			last = sel.ToSeq
		}
		gap := func(a, b uint64) {
			sum.problem(Problem{Kind: "gap", Detail: fmt.Sprintf("sequences %d..%d are in no journal segment (still queued, dequeued while the journal was off, or expired)", a, b)})
		}
		for _, p := range out {
			if p.e.Sequence > want {
				gap(want, p.e.Sequence-1)
			}
			want = p.e.Sequence + 1
		}
		if want <= last {
			gap(want, last)
		}
	} else if sel.BySeq && sel.ToSeq != 0 {
		sum.problem(Problem{Kind: "gap", Detail: fmt.Sprintf("sequences %d..%d are in no journal segment (still queued, dequeued while the journal was off, or expired)", sel.FromSeq, sel.ToSeq)})
	}
	return out, nil
}

// byTime chooses the segments that may hold records of [From, To).
// Listing order is ingestion-time order to within CommitBound, but only
// among segments that do not overlap: a merged segment and inputs that a
// GC cycle died before deleting, or a consumer's segment and the one its
// successor journaled again, make a footer's times jump back in listing
// order, and a binary search over them can land past the window. So the
// two binary searches run over the frontier — each segment whose last
// sequence is above every listed one before it; every other segment lies
// inside a frontier segment's sequence range — and every listed segment
// meeting the sequence range they bound is chosen.
func byTime(ctx context.Context, j *journal.Journal, segs []journal.SegmentRef, sel Selection) ([]journal.SegmentRef, error) {
	var front []int
	for i, s := range segs {
		if len(front) == 0 || s.Last > segs[front[len(front)-1]].Last {
			front = append(front, i)
		}
	}
	footers := make(map[int]journal.Footer)
	var ferr error
	footer := func(k int) journal.Footer {
		if f, ok := footers[k]; ok || ferr != nil {
			return f
		}
		f, err := j.ReadFooter(ctx, segs[front[k]].Name)
		if err != nil {
			ferr = err
		}
		footers[k] = f
		return f
	}
	lo := sel.From.Add(-CommitBound).UnixMilli()
	hi := sel.To.Add(CommitBound).UnixMilli()
	first := sort.Search(len(front), func(k int) bool { return footer(k).MaxIngestionTimeMs >= lo })
	end := sort.Search(len(front), func(k int) bool { return footer(k).MinIngestionTimeMs >= hi })
	if ferr != nil {
		return nil, ferr
	}
	if first >= end {
		return nil, nil
	}
	a, b := segs[front[first]].First, segs[front[end-1]].Last
	var chosen []journal.SegmentRef
	for _, s := range segs {
		if s.Last >= a && s.First <= b {
			chosen = append(chosen, s)
		}
	}
	return chosen, nil
}

// Run replays sel. It returns the summary, and an error only when it could
// not go on: the journal or the bucket failing, a damaged segment or batch
// (named), the sink refusing requests, ctx ending (the checkpoint then
// says how far it got).
func Run(ctx context.Context, cfg Config, sel Selection) (*Summary, error) {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 4
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Sink == nil && cfg.DryRun == nil {
		return nil, errors.New("replay: no sink")
	}
	j, err := journal.Open(cfg.Bucket, cfg.JournalPrefix)
	if err != nil {
		return nil, err
	}
	sum := &Summary{}
	var ck *checkpoint
	if cfg.Checkpoint != "" && cfg.DryRun == nil {
		// The journal is part of what a checkpoint is of: sequences are
		// per partition, so a checkpoint of partition 0 resumed on
		// partition 1 would skip that partition's entries below it.
		ck, err = openCheckpoint(cfg.Checkpoint, sel.Key()+" journal="+cfg.JournalPrefix, cfg.Resume)
		if err != nil {
			return nil, err
		}
		if ck.Have && sel.BySeq && sel.ToSeq != 0 && ck.Through > sel.ToSeq {
			return nil, fmt.Errorf("%w: %s: through_sequence %d is past --to-seq %d; the file was edited or belongs to another replay", ErrBadCheckpoint, cfg.Checkpoint, ck.Through, sel.ToSeq)
		}
		if ck.Have {
			v := ck.Through
			sum.ResumedAfter = &v
		}
	} else if cfg.Resume {
		return nil, fmt.Errorf("%w: --resume needs a checkpoint file", ErrBadCheckpoint)
	}
	entries, err := plan(ctx, j, sel, sum)
	if err != nil {
		return sum, err
	}
	if sum.ResumedAfter != nil {
		i := sort.Search(len(entries), func(i int) bool { return entries[i].e.Sequence > *sum.ResumedAfter })
		entries = entries[i:]
	}
	sum.Entries = len(entries)
	s := &sender{cfg: cfg, sel: sel, sum: sum, ck: ck, start: time.Now(), total: len(entries), ahead: map[uint64]bool{}}
	if cfg.Sink != nil {
		s.lim = consumer.NewSinkLimiter(cfg.SinkConcurrency, cfg.MaxSinkConcurrency, cfg.Metrics)
		s.snk = &pacedSink{Sink: cfg.Sink, lim: s.lim}
	}
	if cfg.Rate > 0 {
		s.rate = rate.NewLimiter(rate.Limit(cfg.Rate), max(cfg.BatchSize, int(cfg.Rate)))
	}
	s.progress()
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Senders use sctx: the first one to fail stops the others.
	sctx, stopSenders := context.WithCancel(ctx)
	s.sctx, s.stopSenders = sctx, stopSenders
	// On an early return the requests in flight are abandoned (the
	// checkpoint has not moved past their events), and what was answered
	// before is recorded: a resume need not re-send it.
	defer func() {
		stopSenders()
		s.senders.Wait()
		if err := s.checkpoint(); err != nil {
			cfg.Log.Warn("replay: saving the checkpoint on the way out failed", "error", err)
		}
	}()
	for f := range prefetch(fctx, cfg.Bucket, entries, cfg.Prefetch) {
		r := <-f
		if r.err != nil {
			return sum, r.err
		}
		if err := s.entry(ctx, r); err != nil {
			return sum, err
		}
		s.done++
		s.progress()
	}
	if err := s.flush(ctx); err != nil {
		return sum, err
	}
	if err := s.wait(); err != nil {
		return sum, err
	}
	if ck != nil {
		ck.Complete = true
		if err := ck.save(); err != nil {
			return sum, err
		}
	}
	s.progress()
	return sum, nil
}

type fetched struct {
	p       planned
	data    []byte
	missing bool
	err     error
}

// prefetch fetches entries' batch files, at most n at a time, handing
// them out in entry order.
func prefetch(ctx context.Context, bkt objstore.Bucket, entries []planned, n int) <-chan chan fetched {
	order := make(chan chan fetched, n-1)
	go func() {
		defer close(order)
		for _, p := range entries {
			ch := make(chan fetched, 1)
			select {
			case order <- ch:
			case <-ctx.Done():
				return
			}
			go func() { ch <- fetch(ctx, bkt, p) }()
		}
	}()
	return order
}

// fetchAttempts is how often fetch tries a batch file; between attempts it
// pauses with fetchBackoff (from 100ms, doubling: about 3s in all).
const fetchAttempts = 6

func fetchBackoff() *backoff.Backoff { return backoff.New(100*time.Millisecond, 1600*time.Millisecond) }

// fetch reads one batch file, retrying transient errors a few times. A
// file not found is missing (expired or deleted), not an error.
func fetch(ctx context.Context, bkt objstore.Bucket, p planned) fetched {
	var err error
	bo := fetchBackoff()
	for attempt := 1; ; attempt++ {
		var rc io.ReadCloser
		rc, err = bkt.Get(ctx, p.e.Location)
		if err == nil {
			var b []byte
			b, err = io.ReadAll(rc)
			rc.Close()
			if err == nil {
				return fetched{p: p, data: b}
			}
		}
		if bkt.IsObjNotFoundErr(err) {
			return fetched{p: p, missing: true}
		}
		if ctx.Err() != nil {
			return fetched{p: p, err: ctx.Err()}
		}
		if attempt == fetchAttempts {
			return fetched{p: p, err: fmt.Errorf("replay: read batch %s (sequence %d): %w", p.e.Location, p.e.Sequence, err)}
		}
		if backoff.Sleep(ctx, bo.Next()) != nil {
			return fetched{p: p, err: ctx.Err()}
		}
	}
}

// pending is one converted event waiting for the next sink request.
type pending struct {
	ev  json.RawMessage
	seq uint64
}

type sender struct {
	cfg   Config
	sel   Selection
	sum   *Summary
	ck    *checkpoint
	rate  *rate.Limiter
	start time.Time
	total int
	done  int

	buf    []pending
	closed []closedEntry // entries whose events are all in buf or in started batches, in order
	shown  int           // events printed on a dry run

	// Sink requests in flight, paced by the consumer's limiter: flush
	// numbers each batch from 1 and hands it to a sender goroutine; the
	// checkpoint moves only past entries whose batches, and all before
	// them, are answered (front).
	lim         *consumer.SinkLimiter
	snk         sink.Sink
	sctx        context.Context
	stopSenders context.CancelFunc
	senders     sync.WaitGroup
	batches     uint64

	mu      sync.Mutex // guards the fields below, shared with the senders
	front   uint64     // every batch through front is answered
	ahead   map[uint64]bool
	sent    int       // events delivered, not yet added to sum
	refused []Problem // not yet added to sum
	err     error     // the first sender's failure
}

// closedEntry is an entry whose events are all in batches numbered at
// most last.
type closedEntry struct {
	seq  uint64
	last uint64
}

func (s *sender) progress() {
	if s.cfg.Progress != nil {
		s.cfg.Progress(Progress{EntriesDone: s.done, EntriesTotal: s.total, EventsSent: s.sum.EventsSent, Start: s.start})
	}
}

// ceFields are the CloudEvents attributes the filters look at.
type ceFields struct {
	Type    string `json:"type"`
	Source  string `json:"source"`
	Subject string `json:"subject"`
}

func match(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }

// entry converts one fetched entry's selected records into the buffer.
func (s *sender) entry(ctx context.Context, f fetched) error {
	e := f.p.e
	if f.missing {
		s.sum.problem(Problem{Kind: "batch_missing", Sequence: e.Sequence, Location: e.Location, Detail: "the batch file is gone (expired past journal_retention, or deleted)"})
		return s.close(ctx, e.Sequence)
	}
	s.sum.BatchesRead++
	records, ranges, err := consumer.EntryRecords(e, f.data)
	if err != nil {
		return fmt.Errorf("replay: batch %s of sequence %d is damaged; nothing guesses around it (bucketq inspect batch): %w", e.Location, e.Sequence, err)
	}
	filtering := len(s.sel.Types)+len(s.sel.Sources)+len(s.sel.Subjects) > 0
	var lines []string
	for k, rg := range ranges {
		if f.p.items != nil && !f.p.items[k] {
			s.sum.RecordsOutside += rg.End - rg.Start
			continue
		}
		if !match(s.sel.Signals, rg.Header.Signal.String()) {
			s.sum.RecordsOutside += rg.End - rg.Start
			continue
		}
		for i := rg.Start; i < rg.End; i++ {
			s.sum.Records++
			evs, failed, err := consumer.ConvertRecord(s.cfg.Converter, e, rg.Header, rg.IngestionTimeMs, i, records[i])
			if err != nil {
				s.sum.problem(Problem{Kind: "convert_error", Sequence: e.Sequence, Location: e.Location, Detail: fmt.Sprintf("record %d: %v", i, err)})
				continue
			}
			for _, it := range failed {
				s.sum.problem(Problem{Kind: "convert_error", Sequence: e.Sequence, Location: e.Location, Detail: fmt.Sprintf("record %d: %v", i, it)})
			}
			for _, ev := range evs {
				if filtering {
					var ce ceFields
					if json.Unmarshal(ev.JSON, &ce) != nil || !match(s.sel.Types, ce.Type) || !match(s.sel.Sources, ce.Source) || !match(s.sel.Subjects, ce.Subject) {
						s.sum.EventsFiltered++
						continue
					}
				}
				if s.cfg.DryRun != nil {
					s.sum.EventsSent++
					if s.shown < 5 {
						s.shown++
						lines = append(lines, "    "+string(ev.JSON))
					}
					continue
				}
				s.buf = append(s.buf, pending{ev: ev.JSON, seq: e.Sequence})
				if len(s.buf) >= s.cfg.BatchSize {
					if err := s.flush(ctx); err != nil {
						return err
					}
				}
			}
		}
	}
	if s.cfg.DryRun != nil {
		fmt.Fprintf(s.cfg.DryRun, "would send sequence %d %s (%d records)\n", e.Sequence, e.Location, len(records))
		for _, l := range lines {
			fmt.Fprintln(s.cfg.DryRun, l)
		}
	}
	return s.close(ctx, e.Sequence)
}

// close records that every event of entry seq is buffered or sent; with
// nothing buffered it is done, and the checkpoint moves past it.
func (s *sender) close(ctx context.Context, seq uint64) error {
	last := s.batches
	if len(s.buf) > 0 {
		last++ // the batch flush will start next
	}
	s.closed = append(s.closed, closedEntry{seq: seq, last: last})
	return s.checkpoint()
}

// flush hands the buffer to a sender goroutine (rate-limited, and once
// the limiter has a slot), then moves the checkpoint past every entry
// whose events are all answered.
func (s *sender) flush(ctx context.Context) error {
	if len(s.buf) == 0 {
		return nil
	}
	if err := s.failed(); err != nil {
		return err
	}
	if s.rate != nil {
		if err := s.rate.WaitN(ctx, min(len(s.buf), s.rate.Burst())); err != nil {
			return err
		}
	}
	if err := s.lim.Acquire(s.sctx); err != nil {
		if e := s.failed(); e != nil {
			return e
		}
		return err
	}
	s.batches++
	n, buf := s.batches, s.buf
	s.buf = nil
	s.senders.Add(1)
	go func() {
		defer s.senders.Done()
		defer s.lim.Release()
		s.send(n, buf)
	}()
	return s.checkpoint()
}

// send is one sender goroutine: it delivers batch n and records the answer.
func (s *sender) send(n uint64, buf []pending) {
	evs := make([]json.RawMessage, len(buf))
	for i, p := range buf {
		evs[i] = p.ev
	}
	refused, err := sink.SendRetrying(s.sctx, s.snk, evs, s.cfg.Retry)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = fmt.Errorf("replay: sink: %w", err)
			s.stopSenders()
		}
		return
	}
	for _, r := range refused {
		p := buf[r.Index]
		var ce struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(p.ev, &ce)
		s.refused = append(s.refused, Problem{Kind: "refused", Sequence: p.seq, Detail: fmt.Sprintf("event id %q: %v", ce.ID, r.Err)})
	}
	s.sent += len(evs) - len(refused)
	if n != s.front+1 {
		s.ahead[n] = true
		return
	}
	s.front = n
	for s.ahead[s.front+1] {
		delete(s.ahead, s.front+1)
		s.front++
	}
}

// failed is the first sender's failure, if any.
func (s *sender) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// wait waits for every sender, takes in their answers and moves the
// checkpoint; it returns the first sender's failure.
func (s *sender) wait() error {
	s.senders.Wait()
	if err := s.failed(); err != nil {
		return err
	}
	return s.checkpoint()
}

// checkpoint takes in the senders' answers, then saves the highest entry
// all of whose events are answered: those closed with no batch, or with
// their last batch and every batch before it answered.
func (s *sender) checkpoint() error {
	s.mu.Lock()
	front := s.front
	sent, refused := s.sent, s.refused
	s.sent, s.refused = 0, nil
	s.mu.Unlock()
	if sent > 0 || len(refused) > 0 {
		s.sum.EventsSent += sent
		slices.SortStableFunc(refused, func(a, b Problem) int { return cmp.Compare(a.Sequence, b.Sequence) })
		for _, p := range refused {
			s.sum.problem(p)
		}
		s.progress()
	}
	n := sort.Search(len(s.closed), func(i int) bool { return s.closed[i].last > front })
	if n == 0 {
		return nil
	}
	through := s.closed[n-1].seq
	s.closed = s.closed[n:]
	if s.ck == nil {
		return nil
	}
	s.ck.Have, s.ck.Through = true, through
	return s.ck.save()
}

// pacedSink reports each request's outcome to the limiter, as the
// consumer's senders do: an answer in time (2xx, or a refusal of the body)
// is a round trip; a throttle, a 5xx or a failed request is back-pressure.
type pacedSink struct {
	sink.Sink
	lim *consumer.SinkLimiter
}

func (p *pacedSink) Send(ctx context.Context, events []json.RawMessage) error {
	start := time.Now()
	err := p.Sink.Send(ctx, events)
	rtt := time.Since(start)
	switch f := sink.ReadFailure(err); {
	case err == nil:
		p.lim.Observe(rtt)
	case ctx.Err() != nil:
	case f.HTTP != nil && (f.Class == sink.Reject || f.Class == sink.Operator):
		p.lim.Observe(rtt)
	default:
		p.lim.BackPressure()
	}
	return err
}
