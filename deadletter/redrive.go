package deadletter

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/backoff"
	"github.com/bucketq/bucketq/internal/oneline"
)

// Redriver defaults.
const (
	// DefaultRequests is redrive's number of sink requests in flight
	// when none is set (the consumer's sink_concurrency is adaptive):
	// redrive is a one-off catch-up, so a fixed moderate number serves it.
	DefaultRequests = 8
	// DefaultMaxRetryAfter caps an honoured Retry-After, as the consumer's.
	DefaultMaxRetryAfter = sink.DefaultMaxRetryAfter
	// DefaultCleanupTimeout bounds the deletes and rewrites that follow
	// an accepted request, which run even once ctx has ended.
	DefaultCleanupTimeout = 30 * time.Second
)

// Verdicts of an Outcome.
const (
	Skipped      = "skipped"     // cannot be re-driven (batch_missing, batch_corrupt, unreadable, ...)
	Damaged      = "damaged"     // fails verification: not sent, deleted or rewritten
	Refused      = "refused"     // conversion or the sink still refuses it; kept
	WouldSend    = "would send"  // dry run: Events are what would be sent
	Redriven     = "re-driven"   // sent and deleted
	Partly       = "partly"      // some listed items sent; rewritten listing those that still fail
	Undeleted    = "undeleted"   // sent, but deleting it failed
	Unrewritten  = "unrewritten" // partly sent, but rewriting it failed
	verdictWidth = 10
)

// Outcome is what became of one dead letter.
type Outcome struct {
	Verdict string // one of the Verdict constants
	Name    string
	Detail  string            // one line saying why, or how many events
	Events  []json.RawMessage // WouldSend: the events
}

// String is the outcome's report line: "<verdict>  <name>: <detail>".
func (o Outcome) String() string {
	return fmt.Sprintf("%-*s %s: %s", verdictWidth, o.Verdict, o.Name, o.Detail)
}

// Result counts the outcomes of a Run.
type Result struct {
	Redriven, Partly, Refused, Skipped int
	// Unfinished: not answered before ctx ended, or sent but not deleted
	// or rewritten, or never reached (NotReached of them).
	Unfinished, NotReached int
	Damaged                int // failed verification: never sent, deleted or rewritten
	Unverified             int // version 1 objects, read without a checksum
}

// SinkRefusedError stops a Run: the sink refuses every request (401, 403,
// 404, ..., any 3xx), which only an operator can fix.
type SinkRefusedError struct{ Err error }

func (e *SinkRefusedError) Error() string {
	return "the sink refuses requests (" + oneline.Short(e.Err.Error(), 200) + ")"
}
func (e *SinkRefusedError) Unwrap() error { return e.Err }

// Redriver sends dead letters back to the sink: a poison_event's event as
// it is, a convert_error's or unknown_signal's records converted again
// with the current Converter exactly as the consumer would have (same ids
// and times). Accepted dead letters are deleted; one listing failed_items
// is rewritten listing only the items that still fail. A request the sink
// refuses is bisected until the refused dead letters (or events) are
// isolated, as the consumer bisects, and answers are read as the consumer
// reads them (sink.ReadFailure).
type Redriver struct {
	Reader    *Reader
	Converter convert.Converter
	Sink      sink.Sink // nil on a dry run
	DryRun    bool
	BatchSize int // events per request; default 500
	// Requests is how many sink requests are in flight (DefaultRequests).
	// Dead letters are independent, so any order is right.
	Requests                              int
	MinBackoff, MaxBackoff, MaxRetryAfter time.Duration
	CleanupTimeout                        time.Duration
	// Report, if set, receives each dead letter's outcome (concurrently
	// never: from the goroutine that called Run).
	Report func(Outcome)
	// OnRetry, if set, is called before each retry of a failed request
	// with the pause; pastDeadline: the pause ends after ctx's deadline,
	// so Run stops instead (context.DeadlineExceeded). Called from
	// several goroutines at once.
	OnRetry func(err error, wait time.Duration, pastDeadline bool)

	res     Result
	fatal   error
	fatalMu sync.Mutex
}

// job is one dead letter to re-drive.
type job struct {
	it      Item
	events  []json.RawMessage
	refused error // the sink's refusal (*sink.HTTPError) of the object's events
	sent    bool

	// A dead letter listing failed_items is re-driven item by item: the
	// items that convert now are sent, and once the sink accepted them the
	// object is rewritten listing only the items that still fail.
	partial  bool
	items    []int                   // partial: the item of each event
	failing  []FailedItem            // partial: listed items that still fail conversion
	sinkNo   map[int]*sink.HTTPError // partial: events the sink refused, by index in events
	answered bool                    // partial: every event was answered (accepted or refused)
}

func (r *Redriver) report(o Outcome) {
	if r.Report != nil {
		r.Report(o)
	}
}

// Run re-drives every dead letter the Reader reads within ctx. Deletes
// and rewrites of dead letters the sink accepted run on parent (bounded by
// CleanupTimeout), so they still happen once ctx has ended. The error is
// a *SinkRefusedError, ctx's error, or the Reader's; nil when every dead
// letter had its outcome (Result says which).
func (r *Redriver) Run(ctx, parent context.Context) (Result, error) {
	if r.BatchSize <= 0 {
		r.BatchSize = 500
	}
	if r.Requests <= 0 {
		r.Requests = DefaultRequests
	}
	if r.MaxRetryAfter <= 0 {
		r.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if r.CleanupTimeout <= 0 {
		r.CleanupTimeout = DefaultCleanupTimeout
	}
	if !r.DryRun && r.Sink == nil {
		return r.res, errors.New("deadletter: Redriver without a Sink (and not a dry run)")
	}
	processed, total, err := r.Reader.Each(ctx, func(items []Item) error {
		var jobs []*job
		for _, it := range items {
			if j := r.prepare(it); j != nil {
				jobs = append(jobs, j)
			}
		}
		if r.DryRun || len(jobs) == 0 {
			return nil
		}
		err := r.send(ctx, jobs)
		var done, rewrite []*job
		for _, j := range jobs {
			if j.partial {
				if !j.answered {
					r.res.Unfinished++
					continue
				}
				l, delivered := j.remaining()
				switch {
				case len(l.FailedItems) == 0:
					done = append(done, j)
				case delivered == 0:
					r.res.Refused++
					r.report(Outcome{Verdict: Refused, Name: j.it.Name, Detail: oneline.Short(l.Error, 200)})
				default:
					j.it.Letter = l
					rewrite = append(rewrite, j)
				}
				continue
			}
			switch {
			case j.sent:
				done = append(done, j)
			case j.refused != nil:
				r.res.Refused++
				r.report(Outcome{Verdict: Refused, Name: j.it.Name, Detail: oneline.Short(j.refused.Error(), 200)})
			default:
				r.res.Unfinished++
			}
		}
		r.deleteSent(parent, done)
		r.rewritePartly(parent, rewrite)
		return err
	})
	if processed < total {
		r.res.NotReached = total - processed
		r.res.Unfinished += total - processed
	}
	if r.fatal != nil {
		return r.res, r.fatal
	}
	return r.res, err
}

// prepare turns a dead letter into the events to send, or reports why it
// cannot be re-driven (nil job).
func (r *Redriver) prepare(it Item) *job {
	skip := func(hint string) *job {
		r.res.Skipped++
		r.report(Outcome{Verdict: Skipped, Name: it.Name, Detail: hint})
		return nil
	}
	if it.Damaged {
		r.res.Damaged++
		r.report(Outcome{Verdict: Damaged, Name: it.Name, Detail: fmt.Sprintf("%s; not sent, deleted or rewritten", it.Err)})
		return nil
	}
	if it.Err != nil {
		return skip(fmt.Sprintf("unreadable (%v); see dead-letters show", it.Err))
	}
	if it.Unverified {
		r.res.Unverified++
	}
	l := it.Letter
	var evs []json.RawMessage
	switch l.Reason {
	case BatchMissing:
		return skip("batch_missing: the batch object is gone, there is nothing to resend; producers' clients must resend, or restore the batch from a backup")
	case BatchCorrupt:
		copyName := l.BatchCopy
		if copyName == "" {
			copyName = "-"
		}
		return skip(fmt.Sprintf("batch_corrupt: the batch bytes are in %s; repair them by hand (bucketq inspect batch) and re-ingest the events", copyName))
	case PoisonEvent:
		if len(l.Event) == 0 || !json.Valid(l.Event) {
			return skip("poison_event holds no valid JSON event (the bytes are in records); it cannot be sent as is")
		}
		evs = []json.RawMessage{l.Event}
	case ConvertError, UnknownSignal:
		c, err := r.convert(l)
		if err != nil {
			r.res.Refused++
			r.report(Outcome{Verdict: Refused, Name: it.Name, Detail: "conversion: " + oneline.Short(err.Error(), 200)})
			return nil
		}
		if c.partial {
			return r.preparePartial(it, c)
		}
		evs = c.events
	case ImportRow, ImportObject:
		return skip(fmt.Sprintf("%s: a source row bucketq import could not enqueue (%s); fix the source object or import.mapping and run the import job again with --force (same ids)", l.Reason, oneline.Short(l.Error, 120)))
	default:
		return skip(fmt.Sprintf("unknown reason %q", l.Reason))
	}
	if r.DryRun {
		r.res.Redriven++
		r.report(Outcome{Verdict: WouldSend, Name: it.Name, Detail: fmt.Sprintf("%d events", len(evs)), Events: evs})
		return nil
	}
	return &job{it: it, events: evs}
}

// preparePartial is prepare for a dead letter listing failed_items: the
// listed items that convert now are sent, those that still fail stay
// listed. It is refused as a whole only when none of them converts.
func (r *Redriver) preparePartial(it Item, c converted) *job {
	if len(c.failing) == len(it.Letter.FailedItems) {
		r.res.Refused++
		f := c.failing[0]
		r.report(Outcome{Verdict: Refused, Name: it.Name, Detail: fmt.Sprintf("conversion: %d items still cannot be converted; first: %s",
			len(c.failing), oneline.Short(f.Position+": "+f.Error, 200))})
		return nil
	}
	if r.DryRun {
		if len(c.failing) == 0 {
			r.res.Redriven++
			r.report(Outcome{Verdict: WouldSend, Name: it.Name, Detail: fmt.Sprintf("%d events", len(c.events)), Events: c.events})
			return nil
		}
		r.res.Partly++
		f := c.failing[0]
		r.report(Outcome{Verdict: WouldSend, Name: it.Name, Events: c.events,
			Detail: fmt.Sprintf("%d events of %d listed items; %d still cannot be converted and would stay listed; first: %s",
				len(c.events), len(it.Letter.FailedItems), len(c.failing), oneline.Short(f.Position+": "+f.Error, 200))})
		return nil
	}
	return &job{it: it, events: c.events, partial: true, items: c.items, failing: c.failing}
}

// converted is a dead letter converted again.
type converted struct {
	events []json.RawMessage
	// partial: the dead letter lists failed_items; items holds the item of
	// each event and failing the listed items that still fail (with the
	// current config's error).
	partial bool
	items   []int
	failing []FailedItem
}

// convert converts the stored records again, with the current conversion
// config, exactly as the consumer would have: same location, sequence,
// record index, header and ingestion time, so ids and times come out the
// same. A dead letter listing failed_items (the consumer delivered the
// record's other items) gives only those items' events, and reports the
// listed items that still fail instead of failing; any other record fails
// whole while any of its items fails. Items that were delivered are not
// sent again, even when the current config would now refuse them.
func (r *Redriver) convert(l Letter) (converted, error) {
	var c converted
	if r.Converter == nil {
		return c, errors.New("no converter configured")
	}
	if l.RecordIndex == nil {
		return c, errors.New("the dead letter has no record_index")
	}
	if l.Header == "" || l.IngestionTimeMs == 0 {
		return c, errors.New("the dead letter has no header or ingestion_time_ms (written by an older bucketq): converting it again would not reproduce the consumer's events")
	}
	raw, err := hex.DecodeString(l.Header)
	if err != nil {
		return c, fmt.Errorf("header %q: %v", l.Header, err)
	}
	h, _, err := format.ParseHeader(raw)
	if err != nil {
		return c, fmt.Errorf("header %q: %v", l.Header, err)
	}
	if len(l.Records) == 0 {
		return c, errors.New("the dead letter holds no records")
	}
	var only map[int]bool // the items to send; nil: all
	if len(l.FailedItems) > 0 {
		if len(l.Records) != 1 {
			return c, fmt.Errorf("the dead letter lists failed_items but holds %d records, want 1", len(l.Records))
		}
		c.partial = true
		only = make(map[int]bool, len(l.FailedItems))
		for _, f := range l.FailedItems {
			only[f.Item] = true
		}
	}
	for k, rec := range l.Records {
		idx := *l.RecordIndex + k
		evs, failed, err := convert.ConvertItems(r.Converter, convert.Record{
			Location: l.Location, Sequence: l.Sequence, Index: idx, Header: h,
			IngestionTimeMs: l.IngestionTimeMs, Data: rec,
		})
		if err != nil {
			return c, fmt.Errorf("record %d: %w", idx, err)
		}
		var still []convert.ItemError
		for _, f := range failed {
			if only == nil || only[f.Item] {
				still = append(still, f)
			}
		}
		if len(still) > 0 && !c.partial {
			return c, fmt.Errorf("record %d: %d items still cannot be converted; first: %w", idx, len(still), still[0])
		}
		stillItem := make(map[int]bool, len(still))
		for _, f := range still {
			stillItem[f.Item] = true
			c.failing = append(c.failing, FailedItem{Item: f.Item, Position: f.Position, Error: f.Err.Error()})
		}
		for j, ev := range evs {
			if only != nil && !only[ev.Item] {
				continue // delivered by the consumer
			}
			if stillItem[ev.Item] {
				continue // the item's other events wait for it to convert whole
			}
			if !json.Valid(ev.JSON) {
				return c, fmt.Errorf("record %d: event %d is not valid JSON", idx, j)
			}
			c.events = append(c.events, ev.JSON)
			c.items = append(c.items, ev.Item)
		}
	}
	return c, nil
}

// remaining is the dead letter of a partial job after delivery: the
// listed items that still fail conversion or whose events the sink refused
// (with the sink's answer), in the listed order, and how many listed items
// were delivered. An item is delivered only when the sink accepted all of
// its events.
func (j *job) remaining() (Letter, int) {
	l := j.it.Letter
	why := make(map[int]string, len(j.failing))
	pos := map[int]string{}
	for _, f := range j.failing {
		why[f.Item], pos[f.Item] = f.Error, f.Position
	}
	for i, he := range j.sinkNo {
		if _, ok := why[j.items[i]]; !ok {
			why[j.items[i]] = "the sink refused its event: " + he.Error()
		}
	}
	var left []FailedItem
	for _, f := range l.FailedItems {
		if e, ok := why[f.Item]; ok {
			if p := pos[f.Item]; p != "" {
				f.Position = p
			}
			f.Error = e
			left = append(left, f)
		}
	}
	delivered := len(l.FailedItems) - len(left)
	if len(left) > 0 {
		l.Error = fmt.Sprintf("record %d of %s (%s): %d items still cannot be delivered after dead-letters redrive delivered %d other listed items; first: %s: %s",
			*l.RecordIndex, l.Location, l.Signal, len(left), delivered, left[0].Position, left[0].Error)
	}
	l.FailedItems = left
	return l, delivered
}

// send delivers the jobs' events in requests of up to BatchSize events; a
// refused request of several dead letters is split in halves until the
// refused ones are isolated (as the consumer bisects). It returns ctx's
// error or the sink's fatal refusal; refused jobs are marked.
func (r *Redriver) send(ctx context.Context, jobs []*job) error {
	// Several requests in flight; each group of jobs is its own, so the
	// senders share nothing but the fatal error. The first error stops the
	// others.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.Requests)
	var group []*job
	n := 0
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		grp := group
		g.Go(func() error { return r.deliver(gctx, grp) })
		group, n = nil, 0
		return gctx.Err()
	}
	for _, j := range jobs {
		if n+len(j.events) > r.BatchSize {
			if err := flush(); err != nil {
				return err
			}
		}
		group = append(group, j)
		n += len(j.events)
	}
	_ = flush()
	return g.Wait()
}

func (r *Redriver) deliver(ctx context.Context, group []*job) error {
	if len(group) == 1 && group[0].partial {
		j := group[0]
		for start := 0; start < len(j.events); start += r.BatchSize {
			if err := r.deliverEvents(ctx, j, start, min(start+r.BatchSize, len(j.events))); err != nil {
				return err
			}
		}
		j.answered = true
		j.sent = len(j.sinkNo) == 0
		return nil
	}
	if len(group) == 1 {
		j := group[0]
		for start := 0; start < len(j.events); start += r.BatchSize {
			refused, err := r.sendRetry(ctx, j.events[start:min(start+r.BatchSize, len(j.events))])
			if err != nil {
				return err
			}
			if refused != nil {
				j.refused = refused
				return nil
			}
		}
		j.sent = true
		return nil
	}
	var evs []json.RawMessage
	for _, j := range group {
		evs = append(evs, j.events...)
	}
	refused, err := r.sendRetry(ctx, evs)
	if err != nil {
		return err
	}
	if refused == nil {
		for _, j := range group {
			j.sent, j.answered = true, true
		}
		return nil
	}
	half := len(group) / 2
	if err := r.deliver(ctx, group[:half]); err != nil {
		return err
	}
	return r.deliver(ctx, group[half:])
}

// deliverEvents sends events [from, to) of a partial job; a refused
// request is split in halves until the refused events are isolated, so the
// items whose events the sink accepts can leave the dead letter.
func (r *Redriver) deliverEvents(ctx context.Context, j *job, from, to int) error {
	refused, err := r.sendRetry(ctx, j.events[from:to])
	if err != nil || refused == nil {
		return err
	}
	if to-from == 1 {
		if j.sinkNo == nil {
			j.sinkNo = map[int]*sink.HTTPError{}
		}
		j.sinkNo[from] = refused
		return nil
	}
	mid := from + (to-from)/2
	if err := r.deliverEvents(ctx, j, from, mid); err != nil {
		return err
	}
	return r.deliverEvents(ctx, j, mid, to)
}

// sendRetry sends one request, reading answers as the consumer does
// (sink.ReadFailure): 2xx delivered; Reject (400, 413, 422) refused;
// Throttle (429, 503) honours Retry-After; Transient (408, 409, 425, other
// 5xx, transport errors) backs off exponentially; Operator (401, 403, 404,
// ..., and any 3xx: the sink never follows a redirect) stops the redrive
// (*SinkRefusedError), since only an operator can fix it. Retries end with
// ctx.
func (r *Redriver) sendRetry(ctx context.Context, evs []json.RawMessage) (refused *sink.HTTPError, err error) {
	bo := backoff.New(r.MinBackoff, r.MaxBackoff)
	for {
		err := r.Sink.Send(ctx, evs)
		if err == nil {
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		f := sink.ReadFailure(err)
		switch f.Class {
		case sink.Reject:
			return f.HTTP, nil
		case sink.Operator:
			fatal := &SinkRefusedError{Err: err}
			r.fatalMu.Lock()
			if r.fatal == nil {
				r.fatal = fatal
			}
			r.fatalMu.Unlock()
			return nil, fatal
		}
		wait := f.Wait(bo.Next, r.MaxRetryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			if r.OnRetry != nil {
				r.OnRetry(err, wait, true)
			}
			return nil, context.DeadlineExceeded
		}
		if r.OnRetry != nil {
			r.OnRetry(err, wait, false)
		}
		if err := backoff.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// deleteSent deletes the dead letters whose events the sink accepted. A
// crash or failure before the delete only means the events are sent again
// by the next redrive: their ids are the same, and the metering API
// deduplicates on (id, source).
func (r *Redriver) deleteSent(parent context.Context, done []*job) {
	if len(done) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), r.CleanupTimeout)
	defer cancel()
	bkt := r.Reader.Bucket
	errs := make([]error, len(done))
	var g errgroup.Group
	g.SetLimit(r.Reader.parallel())
	for i := range done {
		g.Go(func() error {
			errs[i] = bkt.Delete(ctx, done[i].it.Name)
			if errs[i] != nil && bkt.IsObjNotFoundErr(errs[i]) {
				errs[i] = nil // deleted meanwhile: gone either way
			}
			return nil
		})
	}
	_ = g.Wait()
	for i, j := range done {
		if errs[i] != nil {
			r.res.Unfinished++
			r.report(Outcome{Verdict: Undeleted, Name: j.it.Name,
				Detail: fmt.Sprintf("sent, but deleting it failed (%v); a later redrive sends it again (same ids, deduplicated)", errs[i])})
			continue
		}
		r.res.Redriven++
		r.report(Outcome{Verdict: Redriven, Name: j.it.Name, Detail: fmt.Sprintf("%d events", len(j.events))})
	}
}

// rewritePartly rewrites, in place, the dead letters of which some listed
// items were delivered, listing only the items that still fail (each
// job's it.Letter is that new body). It runs only after the sink accepted
// the delivered items' events: a crash or failed write before it only
// means those events are sent again by the next redrive, with the same
// ids, which the metering API deduplicates on (id, source).
func (r *Redriver) rewritePartly(parent context.Context, jobs []*job) {
	if len(jobs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), r.CleanupTimeout)
	defer cancel()
	for _, j := range jobs {
		l := j.it.Letter
		body, err := Encode(l) // a fresh checksum for the shrunk list
		if err == nil {
			err = r.Reader.Bucket.Upload(ctx, j.it.Name, bytes.NewReader(body))
		}
		if err != nil {
			r.res.Unfinished++
			r.report(Outcome{Verdict: Unrewritten, Name: j.it.Name,
				Detail: fmt.Sprintf("sent %d events, but rewriting it failed (%v); a later redrive sends them again (same ids, deduplicated)", len(j.events)-len(j.sinkNo), err)})
			continue
		}
		r.res.Partly++
		f := l.FailedItems[0]
		r.report(Outcome{Verdict: Partly, Name: j.it.Name, Detail: fmt.Sprintf("%d events; %d items still fail and stay listed; first: %s",
			len(j.events)-len(j.sinkNo), len(l.FailedItems), oneline.Short(f.Position+": "+f.Error, 200))})
	}
}
