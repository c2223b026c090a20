package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/oneline"
	"github.com/bucketq/bucketq/partition"
	"github.com/bucketq/bucketq/replay"
)

// replayHelpLines are the flags of replay beyond its config options
// (config.RolesReplay).
func replayHelpLines() []string {
	l := func(f, u string) string { return fmt.Sprintf("  %-34s %s", f, u) }
	return []string{
		l("--from TIME, --to TIME", "ingestion-time window [from, to), RFC 3339 (2026-01-31T10:00:00Z); --to defaults to now"),
		l("--from-seq N, --to-seq N", "sequence range, both ends included; --to-seq defaults to the newest journaled"),
		l("--type T, --source S, --subject S", "only events with this CloudEvents type/source/subject (repeatable: any of)"),
		l("--signal SIGNAL", "only records of this signal: events, logs, metrics, traces (repeatable)"),
		l("--rate N", "send at most N events per second (leave head-room for live delivery); 0 = unlimited (default 0)"),
		l("--dry-run", "count and print what would be sent (first events included); send nothing"),
		l("--checkpoint FILE", "record progress in FILE after every sink request (default none)"),
		l("--resume", "continue the replay recorded in --checkpoint FILE (same selection and filters)"),
		l("--quiet", "no progress output (the summary is still printed)"),
		l("--partition P", "with partitions > 1: replay partition P's journal (journal_prefix with suffix -000P; default 0); run once per partition, each with its own --checkpoint FILE"),
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// replayCommand runs `bucketq replay`: flags and printing; the work is in
// package replay.
func replayCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv config.Env) error {
	fl := config.NewFlags("replay", config.RolesReplay)
	from := fl.String("from", "", "RFC 3339 start of the ingestion-time window")
	to := fl.String("to", "", "RFC 3339 end of the ingestion-time window")
	fromSeq := fl.String("from-seq", "", "first sequence")
	toSeq := fl.String("to-seq", "", "last sequence")
	var types, sources, subjects, signals listFlag
	fl.Var(&types, "type", "CloudEvents type")
	fl.Var(&sources, "source", "CloudEvents source")
	fl.Var(&subjects, "subject", "CloudEvents subject")
	fl.Var(&signals, "signal", "signal")
	rateN := fl.Float64("rate", 0, "events per second")
	dryRun := fl.Bool("dry-run", false, "send nothing")
	ckpt := fl.String("checkpoint", "", "checkpoint file")
	resume := fl.Bool("resume", false, "resume from the checkpoint")
	quiet := fl.Bool("quiet", false, "no progress")
	part := fl.String("partition", "", "partition")
	pos, err := fl.Parse(args)
	if err != nil {
		return err
	}
	p, _, err := partitionArg("replay", fl, *part)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return &config.Error{Msg: fmt.Sprintf("replay: unexpected argument %q", pos[0])}
	}
	bad := func(format string, a ...any) error { return &config.Error{Msg: "replay: " + fmt.Sprintf(format, a...)} }
	// A flag given an empty value is a mistake (an unset shell variable),
	// not "unset": it would otherwise widen or empty the selection.
	var empty error
	fl.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "from", "to", "from-seq", "to-seq", "checkpoint":
			if f.Value.String() == "" && empty == nil {
				empty = bad("--%s was given an empty value", f.Name)
			}
		}
	})
	if empty != nil {
		return empty
	}
	for _, f := range []struct {
		name string
		v    []string
	}{{"type", types}, {"source", sources}, {"subject", subjects}, {"signal", signals}} {
		for _, v := range f.v {
			if strings.TrimSpace(v) == "" {
				return bad("--%s was given an empty value: it would match no event", f.name)
			}
		}
	}
	sel := replay.Selection{Types: types, Sources: sources, Subjects: subjects, Signals: signals}
	byTime, bySeq := *from != "" || *to != "", *fromSeq != "" || *toSeq != ""
	switch {
	case byTime && bySeq:
		return bad("choose a time window (--from/--to) or a sequence range (--from-seq/--to-seq), not both")
	case !byTime && !bySeq:
		return bad("say what to replay: --from TIME [--to TIME] or --from-seq N [--to-seq N]")
	case byTime:
		if *from == "" {
			return bad("--to without --from: give the start of the window")
		}
		if sel.From, err = time.Parse(time.RFC3339, *from); err != nil {
			return bad("--from %q: want an RFC 3339 time such as 2026-01-31T10:00:00Z", *from)
		}
		sel.To = time.Now()
		if *to != "" {
			if sel.To, err = time.Parse(time.RFC3339, *to); err != nil {
				return bad("--to %q: want an RFC 3339 time such as 2026-01-31T11:00:00Z", *to)
			}
		}
		if !sel.To.After(sel.From) {
			return bad("--to %s is not after --from %s", *to, *from)
		}
	default:
		sel.BySeq = true
		if *fromSeq != "" {
			if sel.FromSeq, err = strconv.ParseUint(*fromSeq, 10, 64); err != nil {
				return bad("--from-seq %q: want a sequence number (bucketq inspect manifest shows them)", *fromSeq)
			}
		}
		if *toSeq != "" {
			if sel.ToSeq, err = strconv.ParseUint(*toSeq, 10, 64); err != nil || sel.ToSeq < sel.FromSeq {
				return bad("--to-seq %q: want a sequence number not below --from-seq", *toSeq)
			}
		}
	}
	for _, s := range signals {
		if _, err := format.ParseSignal(s); err != nil {
			return bad("--signal %q: want events, logs, metrics or traces", s)
		}
	}
	if *rateN < 0 || math.IsNaN(*rateN) || math.IsInf(*rateN, 0) {
		return bad("--rate %v: want events per second, 0 for no limit", *rateN)
	}
	if *resume && *ckpt == "" {
		return bad("--resume needs --checkpoint FILE")
	}
	if *dryRun && (*ckpt != "" || *resume) {
		return bad("--dry-run sends nothing, so it takes no --checkpoint or --resume")
	}
	cfg, err := fl.Load(getenv)
	if err != nil {
		return err
	}
	// A partition at or above partitions has no journal: replaying it
	// would report 0 events, and a typo would look like an empty window.
	if _, err := partition.Choose(max(cfg.Partitions, 1), p); err != nil {
		return bad("--partition: %v", err)
	}
	conv, err := newConverter(cfg)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	bkt, _, err := openBucket(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer bkt.Close()
	rc := replay.Config{Bucket: bkt, JournalPrefix: partition.Suffix(cfg.JournalPrefix, p), Converter: conv, BatchSize: cfg.SinkBatchSize,
		SinkConcurrency: cfg.SinkConcurrency, Rate: *rateN, Checkpoint: *ckpt, Resume: *resume, Log: log}
	out := stdout
	if *dryRun {
		rc.DryRun = stdout
	} else {
		snk, err := sink.FromURL(cfg.Sink, cfg.SinkToken, log)
		if err != nil {
			return &config.Error{Msg: fmt.Sprintf("config key %q: %v", "sink", err)}
		}
		defer snk.Close()
		rc.Sink = snk
		if cfg.Sink == "stdout" || cfg.Sink == "-" || strings.HasPrefix(cfg.Sink, "file:") {
			out = stderr // the events may be on stdout: the summary goes aside
		}
		rc.Retry.OnRetry = func(err error, wait time.Duration) {
			fmt.Fprintf(stderr, "replay: sink failed (%s); retrying in %s\n", oneline.Short(err.Error(), 200), wait.Round(time.Millisecond))
		}
	}
	var prog *progress
	if !*quiet {
		prog = newProgress(stderr)
		rc.Progress = prog.update
	}
	sum, err := replay.Run(ctx, rc, sel)
	if prog != nil {
		prog.finish()
	}
	if sum != nil {
		printSummary(out, sum, *dryRun, *ckpt)
	}
	if err != nil {
		if errors.Is(err, replay.ErrBadCheckpoint) {
			return &config.Error{Msg: err.Error()}
		}
		if errors.Is(err, context.Canceled) && *ckpt != "" {
			return fmt.Errorf("replay interrupted; continue it with the same flags and --resume (checkpoint %s)", *ckpt)
		}
		return err
	}
	if !sum.OK() {
		return errReplayIncomplete
	}
	return nil
}

// errReplayIncomplete is exit code 1 after a summary that lists what was
// not sent.
var errReplayIncomplete = errors.New("replay: not everything selected was sent (listed above)")

func printSummary(w io.Writer, s *replay.Summary, dryRun bool, ckpt string) {
	verb := "sent"
	if dryRun {
		verb = "would send"
	}
	if s.ResumedAfter != nil {
		fmt.Fprintf(w, "replay: resumed after sequence %d\n", *s.ResumedAfter)
	}
	fmt.Fprintf(w, "replay: %s %d events from %d batches (%d entries in %d journal segments); %d records outside the window or signal, %d events filtered out\n",
		verb, s.EventsSent, s.BatchesRead, s.Entries, s.Segments, s.RecordsOutside, s.EventsFiltered)
	if len(s.Problems) > 0 {
		counts := map[string]int{}
		for _, p := range s.Problems {
			counts[p.Kind]++
		}
		fmt.Fprintf(w, "replay: NOT SENT: %d batch_missing, %d gap, %d convert_error, %d refused by the sink, %d stray_object\n",
			counts["batch_missing"], counts["gap"], counts["convert_error"], counts["refused"], counts["stray_object"])
		for _, p := range s.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if s.ProblemsOmitted > 0 {
			fmt.Fprintf(w, "  ... and %d more\n", s.ProblemsOmitted)
		}
	}
	if ckpt != "" && !dryRun {
		fmt.Fprintf(w, "replay: checkpoint %s\n", ckpt)
	}
}

// progress shows replay progress on stderr: a bar on a terminal (batches
// done/total, events sent, events/s, ETA), else a plain line every
// plainEvery.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	bar   *progressbar.ProgressBar
	last  time.Time
	total int
	p     replay.Progress
}

const plainEvery = 10 * time.Second

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, last: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("batches"), progressbar.OptionShowIts(), progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionFullWidth(),
			progressbar.OptionSetDescription("replay"))
	}
	return p
}

func (p *progress) update(pr replay.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p = pr
	rate := float64(pr.EventsSent) / max(time.Since(pr.Start).Seconds(), 1e-3)
	if p.bar != nil {
		if pr.EntriesTotal != p.total {
			p.total = pr.EntriesTotal
			p.bar.ChangeMax(pr.EntriesTotal)
		}
		p.bar.Describe(fmt.Sprintf("replay: %d events, %.0f events/s", pr.EventsSent, rate))
		_ = p.bar.Set(pr.EntriesDone)
		return
	}
	if time.Since(p.last) >= plainEvery {
		p.last = time.Now()
		fmt.Fprintf(p.w, "replay: %d/%d batches, %d events sent, %.0f events/s\n", pr.EntriesDone, pr.EntriesTotal, pr.EventsSent, rate)
	}
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
