package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
)

// repairCommand runs `bucketq repair manifest [--dry-run]`: it keeps what a
// damaged manifest can prove (manifest.SalvageManifest), saves the damaged
// object beside it first, and writes the result with a conditional write on
// the version it read. It never deletes anything.
func repairCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv config.Env) error {
	fl := config.NewFlags("repair", config.RolesInspect)
	dryRun := fl.Bool("dry-run", false, "report what a repair would keep and drop, and write nothing")
	requeue := fl.Bool("requeue-unreferenced", false, "also queue again every batch file under data_prefix that the repaired manifest does not list and whose records are all CloudEvents (delivered again at least once; the metering API dedups by id)")
	pos, err := fl.Parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "manifest" {
		return &config.Error{Msg: "repair: want \"repair manifest\""}
	}
	cfg, err := fl.Load(getenv)
	if err != nil {
		return err
	}
	// openBucket refuses a missing bucket directory: repairing must not
	// create one.
	bkt, store, err := openBucket(ctx, cfg, cfg.Logger(stderr))
	if err != nil {
		return err
	}
	defer bkt.Close()

	b, v, err := store.Read(ctx, cfg.ManifestPath)
	if errors.Is(err, cas.ErrNotExist) {
		return fmt.Errorf("manifest %s: no such object in the bucket: nothing to repair (a missing manifest is an empty queue)", cfg.ManifestPath)
	}
	if err != nil {
		return fmt.Errorf("reading manifest %s: %w", cfg.ManifestPath, err)
	}
	_, derr := manifest.Decode(b)
	s, err := manifest.SalvageManifest(b, time.Now())
	if errors.Is(err, manifest.ErrNotDamaged) {
		fmt.Fprintf(stdout, "manifest %s verifies (%d bytes): nothing to repair\n", cfg.ManifestPath, len(b))
		return nil
	}
	if err != nil {
		return fmt.Errorf("manifest %s: %w", cfg.ManifestPath, err)
	}
	m := s.Manifest
	fmt.Fprintf(stdout, "manifest %s (%d bytes) is damaged: %v\n", cfg.ManifestPath, len(b), derr)
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
	orphans, err := unreferencedBatches(ctx, bkt, cfg.DataPrefix, m)
	if err != nil {
		return err
	}
	var requeued int
	for _, o := range orphans {
		switch {
		case o.events > 0 && *requeue:
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
			"  stopped until you have requeued or copied what you need (bucketq inspect batch LOCATION --records).\n", len(orphans)-requeued, cfg.DataPrefix)
	}
	fmt.Fprintf(stdout, "  write: %d entries, next_sequence %d, epoch %d (fences any running consumer)\n", len(m.Entries), m.NextSequence, m.Epoch)
	if *dryRun {
		fmt.Fprintln(stdout, "dry run: nothing written")
		return nil
	}
	saved := fmt.Sprintf("%s.damaged-%s", cfg.ManifestPath, time.Now().UTC().Format("20060102T150405.000Z"))
	if _, err := store.WriteIf(ctx, saved, b, ""); err != nil {
		return fmt.Errorf("saving the damaged manifest as %s before repairing: %w (nothing was changed)", saved, err)
	}
	fmt.Fprintf(stdout, "saved the damaged object as %s\n", saved)
	if _, err := store.WriteIf(ctx, cfg.ManifestPath, m.Encode(), v); err != nil {
		if errors.Is(err, cas.ErrConflict) {
			return fmt.Errorf("manifest %s changed while repairing (is a producer or consumer still running?); run repair again: %w", cfg.ManifestPath, err)
		}
		return fmt.Errorf("writing the repaired manifest %s: %w", cfg.ManifestPath, err)
	}
	fmt.Fprintf(stdout, "repaired %s\n", cfg.ManifestPath)
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
	return nil
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
