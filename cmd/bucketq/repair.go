package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/partition"
)

// repairCommand runs `bucketq repair manifest [--partition P] [--dry-run]`:
// for each manifest it acts on, it keeps what a damaged manifest can prove
// (manifest.SalvageManifest), saves the damaged object beside it first, and
// writes the result with a conditional write on the version it read. It
// never deletes anything.
//
// With partitions > 1 and no --partition it checks every partition and
// repairs each damaged one. That is as safe as repairing them one by one:
// a manifest that verifies is never written, each repair is conditional on
// the bytes it read, and the partitions share no object (partition.Layout
// Check), so repairing one cannot touch another. Asking the operator to
// name each partition would only slow the recovery of producers answering
// 503; --dry-run shows the whole plan first.
func repairCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv config.Env) error {
	fl := config.NewFlags("repair", config.RolesInspect)
	dryRun := fl.Bool("dry-run", false, "report what a repair would keep and drop, and write nothing")
	requeue := fl.Bool("requeue-unreferenced", false, "also queue again every batch file under data_prefix that the repaired manifest does not list and whose records are all CloudEvents (delivered again at least once; the metering API dedups by id)")
	part := fl.String("partition", "", "partition")
	pos, err := fl.Parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "manifest" {
		return &config.Error{Msg: "repair: want \"repair manifest\""}
	}
	p, one, err := partitionArg("repair", fl, *part)
	if err != nil {
		return err
	}
	if !one {
		p = -1 // every partition
	}
	cfg, err := fl.Load(getenv)
	if err != nil {
		return err
	}
	parts, err := partition.Choose(max(cfg.Partitions, 1), p)
	if err != nil {
		return &config.Error{Msg: "repair: --partition: " + err.Error()}
	}
	// openBucket refuses a missing bucket directory: repairing must not
	// create one.
	bkt, store, err := openBucket(ctx, cfg, cfg.Logger(stderr))
	if err != nil {
		return err
	}
	defer bkt.Close()

	if len(parts) == 1 {
		_, err := repairManifest(ctx, bkt, store, cfg.Layout().Partition(parts[0]), *dryRun, *requeue, false, stdout)
		return err
	}
	// Every partition: one not written yet is an empty queue, not an error.
	var errs []error
	var damaged []string
	repaired := 0
	for _, p := range parts {
		l := cfg.Layout().Partition(p)
		fmt.Fprintf(stdout, "== partition %d of %d: %s\n", p, len(parts), l.Manifest)
		bad, err := repairManifest(ctx, bkt, store, l, *dryRun, *requeue, true, stdout)
		if bad {
			damaged = append(damaged, strconv.Itoa(p))
			if err == nil {
				repaired++
			}
		}
		if err != nil {
			fmt.Fprintf(stdout, "  FAILED: %v\n", err)
			errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
		}
	}
	switch {
	case len(damaged) == 0:
		fmt.Fprintf(stdout, "%d partitions checked: none damaged\n", len(parts))
	case *dryRun:
		fmt.Fprintf(stdout, "%d partitions checked: damaged %s; dry run: nothing written\n", len(parts), strings.Join(damaged, ", "))
	default:
		fmt.Fprintf(stdout, "%d partitions checked: damaged %s; %d repaired\n", len(parts), strings.Join(damaged, ", "), repaired)
	}
	return errors.Join(errs...)
}

// repairManifest checks the manifest of the queue l names and repairs it
// if it is damaged, printing what it finds and does. damaged says whether
// the manifest was found damaged (whatever the repair's outcome). A
// missing manifest is an error unless missingOK.
func repairManifest(ctx context.Context, bkt objstore.Bucket, store cas.Store, l partition.Layout, dryRun, requeue, missingOK bool, stdout io.Writer) (damaged bool, err error) {
	b, v, err := store.Read(ctx, l.Manifest)
	if errors.Is(err, cas.ErrNotExist) {
		if missingOK {
			fmt.Fprintf(stdout, "manifest %s: not written yet (an empty queue): nothing to repair\n", l.Manifest)
			return false, nil
		}
		return false, fmt.Errorf("manifest %s: no such object in the bucket: nothing to repair (a missing manifest is an empty queue)", l.Manifest)
	}
	if err != nil {
		return false, fmt.Errorf("reading manifest %s: %w", l.Manifest, err)
	}
	_, derr := manifest.Decode(b)
	s, err := manifest.SalvageManifest(b, time.Now())
	if errors.Is(err, manifest.ErrNotDamaged) {
		fmt.Fprintf(stdout, "manifest %s verifies (%d bytes): nothing to repair\n", l.Manifest, len(b))
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("manifest %s: %w", l.Manifest, err)
	}
	m := s.Manifest
	fmt.Fprintf(stdout, "manifest %s (%d bytes) is damaged: %v\n", l.Manifest, len(b), derr)
	if s.FooterOK {
		fmt.Fprintf(stdout, "  footer as read (unverified): version %d, %d entries, next_sequence %d, epoch %d\n", s.Footer.Version, s.Footer.EntryCount, s.Footer.NextSequence, s.Footer.Epoch)
	} else {
		fmt.Fprintf(stdout, "  footer unreadable: entries are walked from the start of the object\n")
	}
	fmt.Fprintf(stdout, "  keep %d entries whose checksums verify", len(m.Entries))
	if len(m.Entries) > 0 {
		fmt.Fprintf(stdout, " (sequences %d..%d)", m.Entries[0].Sequence, m.Entries[len(m.Entries)-1].Sequence)
	}
	fmt.Fprintln(stdout)
	for _, d := range s.Dropped {
		fmt.Fprintf(stdout, "  DROP entry at offset %d: %s; as read (unverified): sequence %d, location %q\n", d.Offset, d.Reason, d.Sequence, d.Location)
	}
	if s.UnreadableFrom >= 0 {
		fmt.Fprintf(stdout, "  DROP %d bytes from offset %d: no entry can be framed there\n", s.UnreadableBytes, s.UnreadableFrom)
	}
	orphans, err := unreferencedBatches(ctx, bkt, l.Data, m)
	if err != nil {
		return true, err
	}
	var requeued int
	for _, o := range orphans {
		switch {
		case o.events > 0 && requeue:
			m.Entries = append(m.Entries, manifest.Entry{Sequence: m.NextSequence, Location: o.name,
				Metadata: []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: o.modified.UnixMilli(), Payload: format.EventsHeader.Bytes()}}})
			m.NextSequence++
			requeued++
			fmt.Fprintf(stdout, "  REQUEUE %s: %d CloudEvents\n", o.name, o.events)
		case o.events > 0:
			fmt.Fprintf(stdout, "  unreferenced %s: %d CloudEvents (--requeue-unreferenced queues it again)\n", o.name, o.events)
		default:
			fmt.Fprintf(stdout, "  unreferenced %s: %s; not requeued (its signal cannot be told from its bytes)\n", o.name, o.why)
		}
	}
	if len(orphans) > 0 && requeued < len(orphans) {
		fmt.Fprintf(stdout, "  %d batch files under %s are not in the repaired manifest: they may hold acknowledged events whose\n"+
			"  entries were lost. GC deletes such files once they are older than gc_grace_period: keep the consumer\n"+
			"  stopped until you have requeued or copied what you need (bucketq inspect batch LOCATION --records).\n", len(orphans)-requeued, l.Data)
	}
	fmt.Fprintf(stdout, "  write: %d entries, next_sequence %d, epoch %d (fences any running consumer)\n", len(m.Entries), m.NextSequence, m.Epoch)
	if dryRun {
		fmt.Fprintln(stdout, "dry run: nothing written")
		return true, nil
	}
	saved := fmt.Sprintf("%s.damaged-%s", l.Manifest, time.Now().UTC().Format("20060102T150405.000Z"))
	if _, err := store.WriteIf(ctx, saved, b, ""); err != nil {
		return true, fmt.Errorf("saving the damaged manifest as %s before repairing: %w (nothing was changed)", saved, err)
	}
	fmt.Fprintf(stdout, "saved the damaged object as %s\n", saved)
	if _, err := store.WriteIf(ctx, l.Manifest, m.Encode(), v); err != nil {
		if errors.Is(err, cas.ErrConflict) {
			return true, fmt.Errorf("manifest %s changed while repairing (is a producer or consumer still running?); run repair again: %w", l.Manifest, err)
		}
		return true, fmt.Errorf("writing the repaired manifest %s: %w", l.Manifest, err)
	}
	fmt.Fprintf(stdout, "repaired %s\n", l.Manifest)
	if n := len(s.Dropped); n > 0 || s.UnreadableFrom >= 0 {
		var locs []string
		for _, d := range s.Dropped {
			if d.Location != "" {
				locs = append(locs, d.Location)
			}
		}
		fmt.Fprintf(stdout, "Events of dropped entries are in batch files the manifest no longer lists; GC deletes such files once they\n"+
			"are older than gc_grace_period. Before restarting the consumer, inspect and keep what you need:\n"+
			"  bucketq inspect batch LOCATION --records\n")
		if len(locs) > 0 {
			fmt.Fprintf(stdout, "Locations as read from the dropped entries (unverified): %s\n", strings.Join(locs, " "))
		}
	}
	return true, nil
}

// orphan is a batch file under the data prefix that a manifest does not list.
type orphan struct {
	name     string
	modified time.Time
	events   int    // > 0: every record is a CloudEvent (a JSON object)
	why      string // why it cannot be requeued, when events == 0
}

// unreferencedBatches lists, in name order (batch names are ULIDs, so time
// order), the batch files under prefix that m does not reference, and says
// which hold only CloudEvents and so can be queued again with the events
// header: an OTLP record's signal cannot be told from its bytes, so those
// are only listed.
func unreferencedBatches(ctx context.Context, bkt objstore.Bucket, prefix string, m *manifest.Manifest) ([]orphan, error) {
	refs := make(map[string]bool, len(m.Entries))
	for _, e := range m.Entries {
		refs[e.Location] = true
	}
	var names []string
	err := bkt.Iter(ctx, prefix+"/", func(name string) error {
		if !strings.HasSuffix(name, "/") && !refs[name] {
			names = append(names, name)
		}
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", prefix, err)
	}
	sort.Strings(names)
	out := make([]orphan, 0, len(names))
	for _, name := range names {
		o := orphan{name: name}
		attrs, err := bkt.Attributes(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		o.modified = attrs.LastModified
		rc, err := bkt.Get(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		batch, err := format.DecodeBatch(b)
		switch {
		case err != nil:
			o.why = err.Error()
		case len(batch.Records) == 0:
			o.why = "no records"
		default:
			o.events = len(batch.Records)
			for _, r := range batch.Records {
				r = bytes.TrimLeft(r, " \t\r\n")
				if len(r) == 0 || r[0] != '{' || !json.Valid(r) {
					o.events, o.why = 0, "holds records that are not CloudEvents JSON (OTLP)"
					break
				}
			}
		}
		out = append(out, o)
	}
	return out, nil
}
