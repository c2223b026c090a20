package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/importer"
)

// Dead-letter reasons (consumer.DeadLetter.Reason).
const (
	dlPoison        = "poison_event"
	dlConvert       = "convert_error"
	dlUnknownSignal = "unknown_signal"
	dlBatchMissing  = "batch_missing"
	dlBatchCorrupt  = "batch_corrupt"
	// Written by bucketq import (importer.ReasonRow, ReasonObject).
	dlImportRow    = importer.ReasonRow
	dlImportObject = importer.ReasonObject
)

var dlReasons = []string{dlPoison, dlConvert, dlUnknownSignal, dlBatchMissing, dlBatchCorrupt, dlImportRow, dlImportObject}

// Tuning of dead-letters; variables so tests can shorten them.
var (
	dlChunk         = 1000 // objects read (and re-driven) per round
	dlReaders       = 8    // parallel GETs and DELETEs
	dlMinBackoff    = 200 * time.Millisecond
	dlMaxBackoff    = 30 * time.Second
	dlMaxRetryAfter = 10 * time.Minute
	dlDeleteTimeout = 30 * time.Second
)

// deadLettersHelpLines are the flags of dead-letters beyond its config
// options (config.RolesDeadLetters).
func deadLettersHelpLines() []string {
	return []string{
		fmt.Sprintf("  %-34s %s", "--reason REASON", "(list, redrive) only dead letters with this reason: "+strings.Join(dlReasons, ", ")),
		fmt.Sprintf("  %-34s %s", "--json", "(list) print one JSON document instead of a table"),
		fmt.Sprintf("  %-34s %s", "--dry-run", "(redrive) convert and print what would be sent; send and delete nothing"),
		fmt.Sprintf("  %-34s %s", "--timeout DURATION", "(redrive) bound on the whole redrive, retries of 429/5xx included (default 10m)"),
	}
}

// deadLettersCommand runs `bucketq dead-letters list|show|redrive`.
func deadLettersCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv config.Env) error {
	// Only the options dead-letters reads are flags: a consumer-only flag
	// (--listen, --prefetch, ...) is an error rather than silently ignored.
	// A config file shared with consume still loads (keys of other
	// commands are ignored there).
	fl := config.NewFlags("dead-letters", config.RolesDeadLetters)
	reason := fl.String("reason", "", "only dead letters with this reason")
	asJSON := fl.Bool("json", false, "print JSON")
	dryRun := fl.Bool("dry-run", false, "print what would be sent")
	timeout := fl.Duration("timeout", 10*time.Minute, "bound on the redrive")
	pos, err := fl.Parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return &config.Error{Msg: `dead-letters: want "list", "show NAME" or "redrive"`}
	}
	sub := pos[0]
	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })
	only := func(flagName string, subs ...string) error {
		if set[flagName] && !containsString(subs, sub) {
			return &config.Error{Msg: fmt.Sprintf("dead-letters %s: --%s applies to dead-letters %s", sub, flagName, strings.Join(subs, ", "))}
		}
		return nil
	}
	switch {
	case sub == "list" || sub == "redrive":
		if len(pos) > 1 {
			return &config.Error{Msg: fmt.Sprintf("dead-letters %s: unexpected argument %q", sub, pos[1])}
		}
	case sub == "show":
		if len(pos) != 2 {
			return &config.Error{Msg: "dead-letters show: want exactly one NAME (as dead-letters list prints it)"}
		}
		if err := config.ObjectArg("dead-letters show NAME", pos[1]); err != nil {
			return err
		}
	default:
		return &config.Error{Msg: fmt.Sprintf("dead-letters: unknown action %q (want list, show or redrive)", sub)}
	}
	for _, c := range []struct {
		flag string
		subs []string
	}{{"reason", []string{"list", "redrive"}}, {"json", []string{"list"}}, {"dry-run", []string{"redrive"}}, {"timeout", []string{"redrive"}}} {
		if err := only(c.flag, c.subs...); err != nil {
			return err
		}
	}
	if *reason != "" && !containsString(dlReasons, *reason) {
		return &config.Error{Msg: fmt.Sprintf("dead-letters: --reason %q: want one of %s", *reason, strings.Join(dlReasons, ", "))}
	}
	if *timeout <= 0 {
		return &config.Error{Msg: fmt.Sprintf("dead-letters: --timeout %s: want a positive duration", *timeout)}
	}
	cfg, err := fl.Load(getenv)
	if err != nil {
		return err
	}
	var conv convert.Converter
	if sub == "redrive" {
		if conv, err = newConverter(cfg); err != nil {
			return err
		}
		if !*dryRun && (cfg.Sink == "stdout" || cfg.Sink == "-") {
			return &config.Error{Msg: "dead-letters redrive: the sink is stdout (the default): set --sink to the metering API " +
				"(or file:/dev/stdout to print the events), since re-driven dead letters are deleted"}
		}
	}
	// openBucket refuses a missing bucket directory: reading dead letters
	// must not create one.
	log := cfg.Logger(stderr)
	bkt, _, err := openBucket(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer bkt.Close()
	// Redrive's senders run concurrently and report retries on stderr.
	d := &deadLetters{bkt: bkt, prefix: strings.Trim(cfg.DeadLetterPrefix, "/") + "/", reason: *reason, stderr: &lockedWriter{w: stderr}}

	switch sub {
	case "show":
		return d.show(ctx, pos[1], stdout)
	case "list":
		return d.list(ctx, stdout, *asJSON)
	}
	r := &redriver{deadLetters: d, conv: conv, batchSize: cfg.SinkBatchSize, requests: cfg.SinkConcurrency, dryRun: *dryRun, out: stdout}
	if r.requests <= 0 {
		r.requests = redriveConcurrency
	}
	if !*dryRun {
		snk, err := sink.FromURL(cfg.Sink, cfg.SinkToken, log)
		if err != nil {
			return &config.Error{Msg: fmt.Sprintf("config key %q: %v", "sink", err)}
		}
		defer snk.Close()
		r.snk = snk
		if strings.HasPrefix(cfg.Sink, "file:") {
			// The events may go to our own stdout: the report goes aside.
			r.out = stderr
		}
	}
	rctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	return r.run(rctx, ctx, *timeout)
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// deadLetters reads the dead-letter prefix.
type deadLetters struct {
	bkt    objstore.Bucket
	prefix string // with a trailing slash
	reason string // filter; "" = all
	stderr io.Writer
}

// dlItem is one dead-letter object as read.
type dlItem struct {
	name string
	dl   consumer.DeadLetter
	err  error // the object could not be read or decoded
	// damaged: err is consumer.ErrDeadLetterDamaged (a checksum mismatch,
	// not JSON, an unknown version): never sent, deleted or rewritten.
	damaged bool
	// unverified: a version 1 object (no checksum), read as before.
	unverified bool
}

// reasonFromName is the reason the consumer's naming gives an object,
// "" when the name does not say.
func reasonFromName(name string) string {
	base := path.Base(name)
	switch {
	case strings.HasPrefix(base, "poison-"):
		return dlPoison
	case strings.HasPrefix(base, "convert-"):
		return dlConvert
	case strings.HasPrefix(base, "unknown_signal-"):
		return dlUnknownSignal
	case strings.HasPrefix(base, dlImportRow+"-"):
		return dlImportRow
	case strings.HasPrefix(base, dlImportObject+"-"):
		return dlImportObject
	case base == dlBatchMissing+".json":
		return dlBatchMissing
	case base == dlBatchCorrupt+".json":
		return dlBatchCorrupt
	}
	return ""
}

// names lists the dead-letter objects (the .json ones; batch copies are
// reached through their marker), in name order, which is sequence order.
// With a reason filter, objects whose name says another reason are left
// out without being read.
func (d *deadLetters) names(ctx context.Context) ([]string, error) {
	var out []string
	seen := 0
	err := d.bkt.Iter(ctx, d.prefix, func(name string) error {
		seen++
		if seen%10000 == 0 {
			fmt.Fprintf(d.stderr, "dead-letters: listed %d objects under %s\n", seen, d.prefix)
		}
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(path.Base(name), ".") {
			return nil
		}
		if r := reasonFromName(name); d.reason != "" && r != "" && r != d.reason {
			return nil
		}
		out = append(out, name)
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", d.prefix, err)
	}
	sort.Strings(out)
	return out, nil
}

// read gets and decodes names with a few parallel GETs, in order.
func (d *deadLetters) read(ctx context.Context, names []string) []dlItem {
	items := make([]dlItem, len(names))
	var g errgroup.Group
	g.SetLimit(dlReaders)
	for i := range names {
		g.Go(func() error { items[i] = d.readOne(ctx, names[i]); return nil })
	}
	_ = g.Wait()
	return items
}

func (d *deadLetters) readOne(ctx context.Context, name string) dlItem {
	it := dlItem{name: name}
	b, err := d.get(ctx, name)
	if err != nil {
		it.err = err
		return it
	}
	it.dl, it.err = consumer.DecodeDeadLetter(b)
	if it.err != nil {
		it.damaged = errors.Is(it.err, consumer.ErrDeadLetterDamaged)
		return it
	}
	it.unverified = it.dl.Version == 0
	return it
}

func (d *deadLetters) get(ctx context.Context, name string) ([]byte, error) {
	rc, err := d.bkt.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// each reads the dead letters in rounds of dlChunk objects and calls fn
// with the ones that match the reason filter (and every unreadable one),
// reporting progress on stderr when there are several rounds.
func (d *deadLetters) each(ctx context.Context, fn func([]dlItem) error) (processed, total int, err error) {
	names, err := d.names(ctx)
	if err != nil {
		return 0, 0, err
	}
	for start := 0; start < len(names); start += dlChunk {
		end := min(start+dlChunk, len(names))
		items := d.read(ctx, names[start:end])
		if err := ctx.Err(); err != nil {
			return start, len(names), err
		}
		kept := items[:0]
		for _, it := range items {
			if it.err == nil && d.reason != "" && it.dl.Reason != d.reason {
				continue
			}
			kept = append(kept, it)
		}
		if err := fn(kept); err != nil {
			return end, len(names), err
		}
		if len(names) > dlChunk {
			fmt.Fprintf(d.stderr, "dead-letters: %d/%d objects done\n", end, len(names))
		}
	}
	return len(names), len(names), nil
}

// show prints one dead letter as indented JSON. name is the object name,
// or a name relative to the dead-letter prefix. A dead letter that fails
// its checksum is still printed, after a warning on stderr, and show
// returns the error; one without a checksum (version 1) gets a note.
func (d *deadLetters) show(ctx context.Context, name string, stdout io.Writer) error {
	b, err := d.get(ctx, name)
	if err != nil && d.bkt.IsObjNotFoundErr(err) && !strings.HasPrefix(name, d.prefix) {
		if b2, err2 := d.get(ctx, d.prefix+name); err2 == nil {
			b, err = b2, nil
			name = d.prefix + strings.TrimPrefix(name, "/")
		}
	}
	if err != nil {
		if d.bkt.IsObjNotFoundErr(err) {
			return fmt.Errorf("dead letter %s: no such object in the bucket", name)
		}
		return fmt.Errorf("reading dead letter %s: %w", name, err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(b), "", "  "); err != nil {
		return fmt.Errorf("dead letter %s (%d bytes) is not JSON, so it was changed or damaged: %w", name, len(b), err)
	}
	out.WriteByte('\n')
	dl, verr := consumer.DecodeDeadLetter(b)
	switch {
	case verr != nil:
		verr = fmt.Errorf("dead letter %s: %w", name, verr)
		fmt.Fprintf(d.stderr, "WARNING: %v\nWARNING: do not trust what follows; redrive will not send, delete or rewrite this object\n", verr)
	case dl.Version == 0:
		fmt.Fprintf(d.stderr, "note: dead letter %s has no checksum (version 1, written by an older bucketq): not verified\n", name)
	}
	if _, err := stdout.Write(out.Bytes()); err != nil {
		return err
	}
	return verr
}

// listEntry is one line of `dead-letters list --json`.
type listEntry struct {
	Name            string    `json:"name"`
	Reason          string    `json:"reason"`
	Location        string    `json:"location,omitempty"`
	Sequence        uint64    `json:"sequence"`
	RecordIndex     *int      `json:"record_index,omitempty"`
	RecordCount     int       `json:"record_count,omitempty"`
	FailedItems     int       `json:"failed_items,omitempty"`
	EventIndex      *int      `json:"event_index,omitempty"`
	Status          int       `json:"status,omitempty"`
	Error           string    `json:"error,omitempty"`
	DeadLetteredAt  time.Time `json:"dead_lettered_at,omitzero"`
	IngestionTimeMs int64     `json:"ingestion_time_ms,omitempty"`
}

// unreadableReason is the reason shown for an object that could not be
// read, damagedReason for one that fails verification (ErrDeadLetterDamaged).
const (
	unreadableReason = "unreadable"
	damagedReason    = "damaged"
)

func (d *deadLetters) list(ctx context.Context, stdout io.Writer, asJSON bool) error {
	counts := map[string]int{}
	total := 0
	var entries []listEntry
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "NAME\tREASON\tLOCATION\tSEQUENCE\tRECORD\tEVENT\tSTATUS\tERROR")
	}
	_, _, err := d.each(ctx, func(items []dlItem) error {
		for _, it := range items {
			e := listEntry{Name: it.name, Reason: unreadableReason}
			if it.err != nil {
				e.Error = it.err.Error()
				if it.damaged {
					e.Reason = damagedReason
				}
			} else {
				dl := it.dl
				e = listEntry{Name: it.name, Reason: dl.Reason, Location: dl.Location, Sequence: dl.Sequence,
					RecordIndex: dl.RecordIndex, RecordCount: dl.RecordCount, FailedItems: len(dl.FailedItems), EventIndex: dl.EventIndex, Status: dl.Status,
					Error: dl.Error, DeadLetteredAt: dl.DeadLettered, IngestionTimeMs: dl.IngestionTimeMs}
				if e.Error == "" && dl.Response != "" {
					e.Error = dl.Response
				}
			}
			counts[e.Reason]++
			total++
			if asJSON {
				entries = append(entries, e)
				continue
			}
			rec, ev, status := "-", "-", "-"
			if e.RecordIndex != nil {
				rec = fmt.Sprint(*e.RecordIndex)
				if e.RecordCount > 1 {
					rec = fmt.Sprintf("%d-%d", *e.RecordIndex, *e.RecordIndex+e.RecordCount-1)
				}
			}
			if e.EventIndex != nil {
				ev = fmt.Sprint(*e.EventIndex)
			}
			if e.Status != 0 {
				status = fmt.Sprint(e.Status)
			}
			seq := fmt.Sprint(e.Sequence)
			if it.err != nil {
				seq = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Reason, orDash(e.Location), seq, rec, ev, status, orDash(shortText(e.Error, 80)))
		}
		return tw.Flush()
	})
	if err != nil {
		return err
	}
	if asJSON {
		if entries == nil {
			entries = []listEntry{}
		}
		b, err := json.Marshal(struct {
			Prefix      string         `json:"prefix"`
			Total       int            `json:"total"`
			ByReason    map[string]int `json:"by_reason"`
			DeadLetters []listEntry    `json:"dead_letters"`
		}{d.prefix, total, counts, entries})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	fmt.Fprintf(stdout, "%d dead letters under %s%s\n", total, d.prefix, byReason(counts))
	return damagedError(counts[damagedReason])
}

// damagedError is the error of a command that met n damaged dead letters.
func damagedError(n int) error {
	if n == 0 {
		return nil
	}
	return fmt.Errorf("dead-letters: %d dead letters were changed or damaged after bucketq wrote them (checksum mismatch or not valid): "+
		"they are never re-sent, deleted or rewritten; see dead-letters show NAME and repair or remove them by hand", n)
}

// byReason formats counts as ": reason n, reason n" in a fixed order.
func byReason(counts map[string]int) string {
	var parts []string
	for _, r := range append(append([]string(nil), dlReasons...), unreadableReason, damagedReason) {
		if counts[r] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, counts[r]))
		}
	}
	var other []string
	for r, n := range counts {
		if !containsString(dlReasons, r) && r != unreadableReason && r != damagedReason {
			other = append(other, fmt.Sprintf("%s %d", r, n))
		}
	}
	sort.Strings(other)
	parts = append(parts, other...)
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortText is the first line of s, at most n runes, tabs as spaces.
func shortText(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i] + " …"
	}
	s = strings.ReplaceAll(s, "\t", " ")
	if utf8.RuneCountInString(s) > n {
		r := []rune(s)
		s = string(r[:n-1]) + "…"
	}
	return s
}

// redriver sends dead letters back to the sink.
type redriver struct {
	*deadLetters
	conv      convert.Converter
	snk       sink.Sink // nil on a dry run
	batchSize int
	// requests is how many sink requests redrive keeps in flight:
	// sink_concurrency, or redriveConcurrency when it is adaptive. Dead
	// letters are independent, so any order is right.
	requests int
	dryRun   bool
	out      io.Writer

	redriven, partly, refused, skipped, unfinished int
	damaged                                        int   // failed verification: never sent, deleted or rewritten
	unverified                                     int   // version 1 objects, read without a checksum
	fatal                                          error // the sink refuses every request (401, 403, 404, ...)
	fatalMu                                        sync.Mutex
}

// redriveConcurrency is redrive's number of requests in flight when
// sink_concurrency is adaptive: redrive is a one-off catch-up, so a fixed
// moderate number serves it (the consumer adapts, as it runs for ever).
const redriveConcurrency = 8

// job is one dead letter to re-drive.
type job struct {
	it      dlItem
	events  []json.RawMessage
	refused error // the sink's refusal (*sink.HTTPError) of the object's events
	sent    bool

	// A dead letter listing failed_items is re-driven item by item: the
	// items that convert now are sent, and once the sink accepted them the
	// object is rewritten listing only the items that still fail.
	partial  bool
	items    []int                   // partial: the item of each event
	failing  []consumer.FailedItem   // partial: listed items that still fail conversion
	sinkNo   map[int]*sink.HTTPError // partial: events the sink refused, by index in events
	answered bool                    // partial: every event was answered (accepted or refused)
}

// run re-drives every matching dead letter within ctx (bounded by
// --timeout). Deletes of dead letters the sink accepted run on parent, so
// they still happen (bounded) once the timeout has passed.
func (r *redriver) run(ctx, parent context.Context, timeout time.Duration) error {
	processed, total, err := r.each(ctx, func(items []dlItem) error {
		var jobs []*job
		for _, it := range items {
			if j := r.prepare(it); j != nil {
				jobs = append(jobs, j)
			}
		}
		if r.dryRun || len(jobs) == 0 {
			return nil
		}
		err := r.send(ctx, jobs)
		var done, rewrite []*job
		for _, j := range jobs {
			if j.partial {
				if !j.answered {
					r.unfinished++
					continue
				}
				dl, delivered := j.remaining()
				switch {
				case len(dl.FailedItems) == 0:
					done = append(done, j)
				case delivered == 0:
					r.refused++
					fmt.Fprintf(r.out, "refused    %s: %s\n", j.it.name, shortText(dl.Error, 200))
				default:
					j.it.dl = dl
					rewrite = append(rewrite, j)
				}
				continue
			}
			switch {
			case j.sent:
				done = append(done, j)
			case j.refused != nil:
				r.refused++
				fmt.Fprintf(r.out, "refused    %s: %s\n", j.it.name, shortText(j.refused.Error(), 200))
			default:
				r.unfinished++
			}
		}
		r.deleteSent(parent, done)
		r.rewritePartly(parent, rewrite)
		return err
	})
	if processed < total {
		fmt.Fprintf(r.out, "not reached %d dead-letter objects\n", total-processed)
		r.unfinished += total - processed
	}
	verb, partVerb := "re-driven", "partly re-driven"
	if r.dryRun {
		verb, partVerb = "would re-drive", "would partly re-drive"
	}
	fmt.Fprintf(r.out, "%s %d, %s %d, still refused %d, skipped %d", verb, r.redriven, partVerb, r.partly, r.refused, r.skipped)
	if r.unfinished > 0 {
		fmt.Fprintf(r.out, ", not finished %d", r.unfinished)
	}
	if r.damaged > 0 {
		fmt.Fprintf(r.out, ", damaged %d", r.damaged)
	}
	fmt.Fprintln(r.out)
	if r.unverified > 0 {
		fmt.Fprintf(r.stderr, "dead-letters: %d dead letters have no checksum (version 1, written by an older bucketq) and were read without verifying\n", r.unverified)
	}
	switch {
	case r.fatal != nil:
		return r.fatal
	case errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil:
		return fmt.Errorf("dead-letters redrive: stopped after --timeout %s; %d dead letters not finished (run it again)", timeout, r.unfinished)
	case err != nil:
		return fmt.Errorf("dead-letters redrive: %w", err)
	case r.damaged > 0:
		return damagedError(r.damaged)
	case r.refused > 0 || r.partly > 0 || r.unfinished > 0:
		return fmt.Errorf("dead-letters redrive: %d dead letters still refused, %d partly re-driven (their items that still fail stay listed), %d not finished; they stay in %s",
			r.refused, r.partly, r.unfinished, r.prefix)
	}
	return nil
}

// prepare turns a dead letter into the events to send, or reports why it
// cannot be re-driven (nil job).
func (r *redriver) prepare(it dlItem) *job {
	skip := func(hint string) *job {
		r.skipped++
		fmt.Fprintf(r.out, "skipped    %s: %s\n", it.name, hint)
		return nil
	}
	if it.damaged {
		r.damaged++
		fmt.Fprintf(r.out, "damaged    %s: %s; not sent, deleted or rewritten\n", it.name, it.err)
		return nil
	}
	if it.err != nil {
		return skip(fmt.Sprintf("unreadable (%v); see dead-letters show", it.err))
	}
	if it.unverified {
		r.unverified++
	}
	dl := it.dl
	var evs []json.RawMessage
	switch dl.Reason {
	case dlBatchMissing:
		return skip("batch_missing: the batch object is gone, there is nothing to resend; producers' clients must resend, or restore the batch from a backup")
	case dlBatchCorrupt:
		return skip(fmt.Sprintf("batch_corrupt: the batch bytes are in %s; repair them by hand (bucketq inspect batch) and re-ingest the events", orDash(dl.BatchCopy)))
	case dlImportRow, dlImportObject:
		return skip(fmt.Sprintf("%s: a source row bucketq import could not enqueue (%s); fix the source object or import.mapping and run the import job again with --force (same ids)", dl.Reason, shortText(dl.Error, 120)))
	case dlPoison:
		if len(dl.Event) == 0 || !json.Valid(dl.Event) {
			return skip("poison_event holds no valid JSON event (the bytes are in records); it cannot be sent as is")
		}
		evs = []json.RawMessage{dl.Event}
	case dlConvert, dlUnknownSignal:
		c, err := r.convert(dl)
		if err != nil {
			r.refused++
			fmt.Fprintf(r.out, "refused    %s: conversion: %s\n", it.name, shortText(err.Error(), 200))
			return nil
		}
		if c.partial {
			return r.preparePartial(it, c)
		}
		evs = c.events
	default:
		return skip(fmt.Sprintf("unknown reason %q", dl.Reason))
	}
	if r.dryRun {
		r.redriven++
		r.printWouldSend(it.name, evs, "")
		return nil
	}
	return &job{it: it, events: evs}
}

// preparePartial is prepare for a dead letter listing failed_items: the
// listed items that convert now are sent, those that still fail stay
// listed. It is refused as a whole only when none of them converts.
func (r *redriver) preparePartial(it dlItem, c converted) *job {
	if len(c.failing) == len(it.dl.FailedItems) {
		r.refused++
		f := c.failing[0]
		fmt.Fprintf(r.out, "refused    %s: conversion: %d items still cannot be converted; first: %s\n",
			it.name, len(c.failing), shortText(f.Position+": "+f.Error, 200))
		return nil
	}
	if r.dryRun {
		if len(c.failing) == 0 {
			r.redriven++
			r.printWouldSend(it.name, c.events, "")
			return nil
		}
		r.partly++
		f := c.failing[0]
		r.printWouldSend(it.name, c.events, fmt.Sprintf(" of %d listed items; %d still cannot be converted and would stay listed; first: %s",
			len(it.dl.FailedItems), len(c.failing), shortText(f.Position+": "+f.Error, 200)))
		return nil
	}
	return &job{it: it, events: c.events, partial: true, items: c.items, failing: c.failing}
}

// printWouldSend prints the events a dry run would send for name.
func (r *redriver) printWouldSend(name string, evs []json.RawMessage, note string) {
	fmt.Fprintf(r.out, "would send %s: %d events%s\n", name, len(evs), note)
	for _, ev := range evs {
		var c bytes.Buffer
		if json.Compact(&c, ev) != nil {
			c.Reset()
			c.Write(ev)
		}
		fmt.Fprintf(r.out, "  %s\n", c.Bytes())
	}
}

// converted is a dead letter converted again.
type converted struct {
	events []json.RawMessage
	// partial: the dead letter lists failed_items; items holds the item of
	// each event and failing the listed items that still fail (with the
	// current config's error).
	partial bool
	items   []int
	failing []consumer.FailedItem
}

// convert converts the stored records again, with the current conversion
// config, exactly as the consumer would have: same location, sequence,
// record index, header and ingestion time, so ids and times come out the
// same. A dead letter listing failed_items (the consumer delivered the
// record's other items) gives only those items' events, and reports the
// listed items that still fail instead of failing; any other record fails
// whole while any of its items fails. Items that were delivered are not
// sent again, even when the current config would now refuse them.
func (r *redriver) convert(dl consumer.DeadLetter) (converted, error) {
	var c converted
	if dl.RecordIndex == nil {
		return c, errors.New("the dead letter has no record_index")
	}
	if dl.Header == "" || dl.IngestionTimeMs == 0 {
		return c, errors.New("the dead letter has no header or ingestion_time_ms (written by an older bucketq): converting it again would not reproduce the consumer's events")
	}
	raw, err := hex.DecodeString(dl.Header)
	if err != nil {
		return c, fmt.Errorf("header %q: %v", dl.Header, err)
	}
	h, _, err := format.ParseHeader(raw)
	if err != nil {
		return c, fmt.Errorf("header %q: %v", dl.Header, err)
	}
	if len(dl.Records) == 0 {
		return c, errors.New("the dead letter holds no records")
	}
	var only map[int]bool // the items to send; nil: all
	if len(dl.FailedItems) > 0 {
		if len(dl.Records) != 1 {
			return c, fmt.Errorf("the dead letter lists failed_items but holds %d records, want 1", len(dl.Records))
		}
		c.partial = true
		only = make(map[int]bool, len(dl.FailedItems))
		for _, f := range dl.FailedItems {
			only[f.Item] = true
		}
	}
	for k, rec := range dl.Records {
		idx := *dl.RecordIndex + k
		evs, failed, err := convert.ConvertItems(r.conv, convert.Record{
			Location: dl.Location, Sequence: dl.Sequence, Index: idx, Header: h,
			IngestionTimeMs: dl.IngestionTimeMs, Data: rec,
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
			c.failing = append(c.failing, consumer.FailedItem{Item: f.Item, Position: f.Position, Error: f.Err.Error()})
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
func (j *job) remaining() (consumer.DeadLetter, int) {
	dl := j.it.dl
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
	var left []consumer.FailedItem
	for _, f := range dl.FailedItems {
		if e, ok := why[f.Item]; ok {
			if p := pos[f.Item]; p != "" {
				f.Position = p
			}
			f.Error = e
			left = append(left, f)
		}
	}
	delivered := len(dl.FailedItems) - len(left)
	if len(left) > 0 {
		dl.Error = fmt.Sprintf("record %d of %s (%s): %d items still cannot be delivered after dead-letters redrive delivered %d other listed items; first: %s: %s",
			*dl.RecordIndex, dl.Location, dl.Signal, len(left), delivered, left[0].Position, left[0].Error)
	}
	dl.FailedItems = left
	return dl, delivered
}

// send delivers the jobs' events in requests of up to batchSize events; a
// refused request of several dead letters is split in halves until the
// refused ones are isolated (as the consumer bisects). It returns ctx's
// error or the sink's fatal refusal; refused jobs are marked.
func (r *redriver) send(ctx context.Context, jobs []*job) error {
	// Several requests in flight (issue 17: redrive gains the consumer's
	// speed against a distant API); each group of jobs is its own, so the
	// senders share nothing but the fatal error. The first error stops the
	// others, as it stopped the loop when they went one at a time.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.requests)
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
		if n+len(j.events) > r.batchSize {
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

func (r *redriver) deliver(ctx context.Context, group []*job) error {
	if len(group) == 1 && group[0].partial {
		j := group[0]
		for start := 0; start < len(j.events); start += r.batchSize {
			if err := r.deliverEvents(ctx, j, start, min(start+r.batchSize, len(j.events))); err != nil {
				return err
			}
		}
		j.answered = true
		j.sent = len(j.sinkNo) == 0
		return nil
	}
	if len(group) == 1 {
		j := group[0]
		for start := 0; start < len(j.events); start += r.batchSize {
			refused, err := r.sendRetry(ctx, j.events[start:min(start+r.batchSize, len(j.events))])
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
func (r *redriver) deliverEvents(ctx context.Context, j *job, from, to int) error {
	refused, err := r.sendRetry(ctx, j.events[from:to])
	if err != nil || refused == nil {
		return err
	}
	if to-from == 1 {
		var he *sink.HTTPError
		errors.As(refused, &he)
		if j.sinkNo == nil {
			j.sinkNo = map[int]*sink.HTTPError{}
		}
		j.sinkNo[from] = he
		return nil
	}
	mid := from + (to-from)/2
	if err := r.deliverEvents(ctx, j, from, mid); err != nil {
		return err
	}
	return r.deliverEvents(ctx, j, mid, to)
}

// sendRetry sends one request, reading answers as the consumer does
// (sink.Classify): 2xx delivered; Reject (400, 413, 422) refused; Throttle
// (429, 503) honours Retry-After; Transient (408, 409, 425, other 5xx,
// transport errors) backs off exponentially; Operator (401, 403, 404, ...,
// and any 3xx: the sink never follows a redirect) stops the redrive, since
// only an operator can fix it.
// Retries end with ctx (--timeout).
func (r *redriver) sendRetry(ctx context.Context, evs []json.RawMessage) (refused error, err error) {
	backoff := dlMinBackoff
	for {
		err := r.snk.Send(ctx, evs)
		if err == nil {
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var wait time.Duration
		var he *sink.HTTPError
		if errors.As(err, &he) {
			switch sink.Classify(he.Status) {
			case sink.Reject:
				return he, nil
			case sink.Throttle:
				wait = min(he.RetryAfter, dlMaxRetryAfter)
			case sink.Transient:
			case sink.Operator:
				fatal := fmt.Errorf("dead-letters redrive: the sink refuses requests (%s): check --sink and --sink-token; nothing more was sent", shortText(err.Error(), 200))
				r.fatalMu.Lock()
				if r.fatal == nil {
					r.fatal = fatal
				}
				r.fatalMu.Unlock()
				return nil, fatal
			}
		}
		if wait <= 0 {
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, dlMaxBackoff)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			fmt.Fprintf(r.stderr, "dead-letters: sink failed (%s); the next retry in %s is past --timeout\n", shortText(err.Error(), 200), wait.Round(time.Millisecond))
			return nil, context.DeadlineExceeded
		}
		fmt.Fprintf(r.stderr, "dead-letters: sink failed (%s); retrying in %s\n", shortText(err.Error(), 200), wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// deleteSent deletes the dead letters whose events the sink accepted. A
// crash or failure before the delete only means the events are sent again
// by the next redrive: their ids are the same, and the metering API
// deduplicates on (id, source).
func (r *redriver) deleteSent(parent context.Context, done []*job) {
	if len(done) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), dlDeleteTimeout)
	defer cancel()
	errs := make([]error, len(done))
	var g errgroup.Group
	g.SetLimit(dlReaders)
	for i := range done {
		g.Go(func() error {
			errs[i] = r.bkt.Delete(ctx, done[i].it.name)
			if errs[i] != nil && r.bkt.IsObjNotFoundErr(errs[i]) {
				errs[i] = nil // deleted meanwhile: gone either way
			}
			return nil
		})
	}
	_ = g.Wait()
	for i, j := range done {
		if errs[i] != nil {
			r.unfinished++
			fmt.Fprintf(r.out, "undeleted  %s: sent, but deleting it failed (%v); a later redrive sends it again (same ids, deduplicated)\n", j.it.name, errs[i])
			continue
		}
		r.redriven++
		fmt.Fprintf(r.out, "re-driven  %s: %d events\n", j.it.name, len(j.events))
	}
}

// rewritePartly rewrites, in place, the dead letters of which some listed
// items were delivered, listing only the items that still fail (each
// job's it.dl is that new body). It runs only after the sink accepted the
// delivered items' events: a crash or failed write before it only means
// those events are sent again by the next redrive, with the same ids,
// which the metering API deduplicates on (id, source).
func (r *redriver) rewritePartly(parent context.Context, jobs []*job) {
	if len(jobs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), dlDeleteTimeout)
	defer cancel()
	for _, j := range jobs {
		dl := j.it.dl
		body, err := consumer.EncodeDeadLetter(dl) // a fresh checksum for the shrunk list
		if err == nil {
			err = r.bkt.Upload(ctx, j.it.name, bytes.NewReader(body))
		}
		if err != nil {
			r.unfinished++
			fmt.Fprintf(r.out, "unrewritten %s: sent %d events, but rewriting it failed (%v); a later redrive sends them again (same ids, deduplicated)\n", j.it.name, len(j.events)-len(j.sinkNo), err)
			continue
		}
		r.partly++
		f := dl.FailedItems[0]
		fmt.Fprintf(r.out, "partly     %s: %d events; %d items still fail and stay listed; first: %s\n",
			j.it.name, len(j.events)-len(j.sinkNo), len(dl.FailedItems), shortText(f.Position+": "+f.Error, 200))
	}
}

// lockedWriter serialises writes from concurrent goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
