package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/internal/oneline"
	"github.com/bucketq/bucketq/partition"
)

// deadLettersHelpLines are the flags of dead-letters beyond its config
// options (config.RolesDeadLetters).
func deadLettersHelpLines() []string {
	return []string{
		fmt.Sprintf("  %-34s %s", "--reason REASON", "(list, redrive) only dead letters with this reason: "+strings.Join(deadletter.Reasons(), ", ")),
		fmt.Sprintf("  %-34s %s", "--json", "(list) print one JSON document instead of a table"),
		fmt.Sprintf("  %-34s %s", "--dry-run", "(redrive) convert and print what would be sent; send and delete nothing"),
		fmt.Sprintf("  %-34s %s", "--timeout DURATION", "(redrive) bound on the whole redrive, retries of 429/5xx included (default 10m)"),
		fmt.Sprintf("  %-34s %s", "--partition P", "with partitions > 1: act on partition P's dead letters (dead_letter_prefix with suffix -000P; default 0)"),
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
	part := fl.String("partition", "", "partition")
	pos, err := fl.Parse(args)
	if err != nil {
		return err
	}
	p, _, err := partitionArg("dead-letters", fl, *part)
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
	if *reason != "" && !deadletter.KnownReason(*reason) {
		return &config.Error{Msg: fmt.Sprintf("dead-letters: --reason %q: want one of %s", *reason, strings.Join(deadletter.Reasons(), ", "))}
	}
	if *timeout <= 0 {
		return &config.Error{Msg: fmt.Sprintf("dead-letters: --timeout %s: want a positive duration", *timeout)}
	}
	cfg, err := fl.Load(getenv)
	if err != nil {
		return err
	}
	// A partition at or above partitions has no dead letters: listing it
	// would report none, and a typo would look like an empty queue.
	if _, err := partition.Choose(max(cfg.Partitions, 1), p); err != nil {
		return &config.Error{Msg: fmt.Sprintf("dead-letters %s: --partition: %v", sub, err)}
	}
	cfg.DeadLetterPrefix = partition.Suffix(cfg.DeadLetterPrefix, p)
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
	errw := &lockedWriter{w: stderr}
	rd := &deadletter.Reader{
		Bucket: bkt, Prefix: cfg.DeadLetterPrefix, Reason: *reason,
		OnListed: func(n int) {
			fmt.Fprintf(errw, "dead-letters: listed %d objects under %s\n", n, strings.Trim(cfg.DeadLetterPrefix, "/")+"/")
		},
		OnProgress: func(done, total int) { fmt.Fprintf(errw, "dead-letters: %d/%d objects done\n", done, total) },
	}
	switch sub {
	case "show":
		return showDeadLetter(ctx, rd, pos[1], stdout, errw)
	case "list":
		return listDeadLetters(ctx, rd, stdout, *asJSON)
	}
	out := stdout
	r := &deadletter.Redriver{Reader: rd, Converter: conv, BatchSize: cfg.SinkBatchSize, Requests: cfg.SinkConcurrency, DryRun: *dryRun}
	if !*dryRun {
		snk, err := sink.FromURL(cfg.Sink, cfg.SinkToken, log)
		if err != nil {
			return &config.Error{Msg: fmt.Sprintf("config key %q: %v", "sink", err)}
		}
		defer snk.Close()
		r.Sink = snk
		if strings.HasPrefix(cfg.Sink, "file:") {
			// The events may go to our own stdout: the report goes aside.
			out = stderr
		}
	}
	r.Report = func(o deadletter.Outcome) { printOutcome(out, o) }
	r.OnRetry = func(err error, wait time.Duration, pastDeadline bool) {
		if pastDeadline {
			fmt.Fprintf(errw, "dead-letters: sink failed (%s); the next retry in %s is past --timeout\n", oneline.Short(err.Error(), 200), wait.Round(time.Millisecond))
			return
		}
		fmt.Fprintf(errw, "dead-letters: sink failed (%s); retrying in %s\n", oneline.Short(err.Error(), 200), wait.Round(time.Millisecond))
	}
	rctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := r.Run(rctx, ctx)
	return redriveSummary(out, errw, rd.Dir(), *dryRun, *timeout, res, err, ctx.Err() != nil)
}

// printOutcome prints one dead letter's outcome, and a dry run's events
// one compact JSON document a line.
func printOutcome(out io.Writer, o deadletter.Outcome) {
	fmt.Fprintln(out, o.String())
	for _, ev := range o.Events {
		var c bytes.Buffer
		if json.Compact(&c, ev) != nil {
			c.Reset()
			c.Write(ev)
		}
		fmt.Fprintf(out, "  %s\n", c.Bytes())
	}
}

// redriveSummary prints redrive's summary line and returns its error.
func redriveSummary(out, stderr io.Writer, prefix string, dryRun bool, timeout time.Duration, res deadletter.Result, err error, parentDone bool) error {
	if res.NotReached > 0 {
		fmt.Fprintf(out, "not reached %d dead-letter objects\n", res.NotReached)
	}
	verb, partVerb := "re-driven", "partly re-driven"
	if dryRun {
		verb, partVerb = "would re-drive", "would partly re-drive"
	}
	fmt.Fprintf(out, "%s %d, %s %d, still refused %d, skipped %d", verb, res.Redriven, partVerb, res.Partly, res.Refused, res.Skipped)
	if res.Unfinished > 0 {
		fmt.Fprintf(out, ", not finished %d", res.Unfinished)
	}
	if res.Damaged > 0 {
		fmt.Fprintf(out, ", damaged %d", res.Damaged)
	}
	fmt.Fprintln(out)
	if res.Unverified > 0 {
		fmt.Fprintf(stderr, "dead-letters: %d dead letters have no checksum (version 1, written by an older bucketq) and were read without verifying\n", res.Unverified)
	}
	var refused *deadletter.SinkRefusedError
	switch {
	case errors.As(err, &refused):
		return fmt.Errorf("dead-letters redrive: the sink refuses requests (%s): check --sink and --sink-token; nothing more was sent", oneline.Short(refused.Err.Error(), 200))
	case errors.Is(err, context.DeadlineExceeded) && !parentDone:
		return fmt.Errorf("dead-letters redrive: stopped after --timeout %s; %d dead letters not finished (run it again)", timeout, res.Unfinished)
	case err != nil:
		return fmt.Errorf("dead-letters redrive: %w", err)
	case res.Damaged > 0:
		return damagedError(res.Damaged)
	case res.Refused > 0 || res.Partly > 0 || res.Unfinished > 0:
		return fmt.Errorf("dead-letters redrive: %d dead letters still refused, %d partly re-driven (their items that still fail stay listed), %d not finished; they stay in %s",
			res.Refused, res.Partly, res.Unfinished, prefix)
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// showDeadLetter prints one dead letter as indented JSON. name is the
// object name, or a name relative to the dead-letter prefix. A dead letter
// that fails its checksum is still printed, after a warning on stderr, and
// the error is returned; one without a checksum (version 1) gets a note.
func showDeadLetter(ctx context.Context, rd *deadletter.Reader, name string, stdout, stderr io.Writer) error {
	bkt, prefix := rd.Bucket, rd.Dir()
	b, err := rd.Get(ctx, name)
	if err != nil && bkt.IsObjNotFoundErr(err) && !strings.HasPrefix(name, prefix) {
		if b2, err2 := rd.Get(ctx, prefix+name); err2 == nil {
			b, err = b2, nil
			name = prefix + strings.TrimPrefix(name, "/")
		}
	}
	if err != nil {
		if bkt.IsObjNotFoundErr(err) {
			return fmt.Errorf("dead letter %s: no such object in the bucket", name)
		}
		return fmt.Errorf("reading dead letter %s: %w", name, err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(b), "", "  "); err != nil {
		return fmt.Errorf("dead letter %s (%d bytes) is not JSON, so it was changed or damaged: %w", name, len(b), err)
	}
	out.WriteByte('\n')
	l, verr := deadletter.Decode(b)
	switch {
	case verr != nil:
		verr = fmt.Errorf("dead letter %s: %w", name, verr)
		fmt.Fprintf(stderr, "WARNING: %v\nWARNING: do not trust what follows; redrive will not send, delete or rewrite this object\n", verr)
	case l.Version == 0:
		fmt.Fprintf(stderr, "note: dead letter %s has no checksum (version 1, written by an older bucketq): not verified\n", name)
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

func listDeadLetters(ctx context.Context, rd *deadletter.Reader, stdout io.Writer, asJSON bool) error {
	counts := map[string]int{}
	total := 0
	var entries []listEntry
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "NAME\tREASON\tLOCATION\tSEQUENCE\tRECORD\tEVENT\tSTATUS\tERROR")
	}
	_, _, err := rd.Each(ctx, func(items []deadletter.Item) error {
		for _, it := range items {
			e := listEntry{Name: it.Name, Reason: unreadableReason}
			if it.Err != nil {
				e.Error = it.Err.Error()
				if it.Damaged {
					e.Reason = damagedReason
				}
			} else {
				dl := it.Letter
				e = listEntry{Name: it.Name, Reason: dl.Reason, Location: dl.Location, Sequence: dl.Sequence,
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
			if it.Err != nil {
				seq = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Reason, orDash(e.Location), seq, rec, ev, status, orDash(oneline.Short(e.Error, 80)))
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
		}{rd.Dir(), total, counts, entries})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	fmt.Fprintf(stdout, "%d dead letters under %s%s\n", total, rd.Dir(), byReason(counts))
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
	for _, r := range append(deadletter.Reasons(), unreadableReason, damagedReason) {
		if counts[r] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, counts[r]))
		}
	}
	var other []string
	for r, n := range counts {
		if !deadletter.KnownReason(r) && r != unreadableReason && r != damagedReason {
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
