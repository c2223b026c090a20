package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/cmd/bucketq/internal/inspect"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/partition"
)

// inspectCommand runs `bucketq inspect manifest|batch|journal ...`.
func inspectCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv config.Env) error {
	fl := config.NewFlags("inspect", config.RolesInspect)
	asJSON := fl.Bool("json", false, "print JSON")
	records := fl.Bool("records", false, "print the batch's records")
	verify := fl.Bool("verify", false, "check the manifest's checksums and read and check every batch it lists (inspect journal: read and check every segment); exit 1 on any damage")
	pos, err := fl.Parse(args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return &config.Error{Msg: "inspect: want \"manifest\", \"batch LOCATION\" or \"journal [SEGMENT]\""}
	}
	what := pos[0]
	switch {
	case what == "manifest" && len(pos) == 1:
		if *records {
			return &config.Error{Msg: "inspect manifest: --records applies to inspect batch"}
		}
	case what == "batch" && len(pos) == 2 && *verify:
		return &config.Error{Msg: "inspect batch: --verify applies to inspect manifest (a batch is always verified)"}
	case what == "batch" && len(pos) == 2:
		if err := config.ObjectArg("inspect batch LOCATION", pos[1]); err != nil {
			return err
		}
	case what == "batch":
		return &config.Error{Msg: "inspect batch: want exactly one LOCATION (the batch's object name)"}
	case what == "manifest":
		return &config.Error{Msg: fmt.Sprintf("inspect manifest: unexpected argument %q", pos[1])}
	case what == "journal" && *records:
		return &config.Error{Msg: "inspect journal: --records applies to inspect batch"}
	case what == "journal" && len(pos) == 2 && *verify:
		return &config.Error{Msg: "inspect journal: --verify applies to the listing (a SEGMENT is always verified)"}
	case what == "journal" && len(pos) == 2:
		if err := config.ObjectArg("inspect journal SEGMENT", pos[1]); err != nil {
			return err
		}
	case what == "journal" && len(pos) > 2:
		return &config.Error{Msg: "inspect journal: want at most one SEGMENT (a segment's object name, as the listing shows it)"}
	case what == "journal":
	default:
		return &config.Error{Msg: fmt.Sprintf("inspect: unknown object %q (want manifest, batch or journal)", what)}
	}
	cfg, err := fl.Load(getenv)
	if err != nil {
		return err
	}
	// openBucket refuses a missing bucket directory: inspecting must not
	// create one.
	log := cfg.Logger(stderr)
	bkt, store, err := openBucket(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer bkt.Close()

	if what == "manifest" {
		if cfg.Partitions <= 1 {
			return inspectManifest(ctx, bkt, store, cfg.ManifestPath, *verify, *asJSON, false, stdout)
		}
		// Every partition in turn; one not written yet is an empty queue
		// (nothing has committed to it), unlike a missing partition 0.
		var errs []error
		for p := range cfg.Partitions {
			path := cfg.Layout().Partition(p).Manifest
			if !*asJSON {
				fmt.Fprintf(stdout, "== partition %d of %d: %s\n", p, cfg.Partitions, path)
			}
			if err := inspectManifest(ctx, bkt, store, path, *verify, *asJSON, p > 0, stdout); err != nil {
				errs = append(errs, fmt.Errorf("partition %d: %w", p, err))
			}
		}
		return errors.Join(errs...)
	}

	if what == "journal" {
		if len(pos) == 2 {
			return inspectSegment(ctx, bkt, cfg.JournalPrefix, pos[1], *asJSON, stdout)
		}
		var errs []error
		for p := range max(cfg.Partitions, 1) {
			prefix := partition.Suffix(cfg.JournalPrefix, p)
			if cfg.Partitions > 1 && !*asJSON {
				fmt.Fprintf(stdout, "== partition %d of %d: %s\n", p, cfg.Partitions, prefix)
			}
			if err := inspectJournal(ctx, bkt, prefix, *verify, *asJSON, stdout); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}

	location := pos[1]
	rc, err := bkt.Get(ctx, location)
	if err != nil {
		if bkt.IsObjNotFoundErr(err) {
			return fmt.Errorf("batch %s: no such object in the bucket", location)
		}
		return fmt.Errorf("reading batch %s: %w", location, err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("reading batch %s: %w", location, err)
	}
	bj, recs, err := inspect.Batch(b, *records)
	if err != nil {
		return fmt.Errorf("batch %s (%d bytes): %w", location, len(b), err)
	}
	if *asJSON {
		return inspect.WriteJSON(stdout, bj)
	}
	return inspect.WriteBatchTable(stdout, location, bj, recs)
}

// verifyBatches reads every batch the manifest lists and checks it decodes
// (checksum included), a few at a time; it prints one line per damaged or
// missing batch and a summary, and fails if any is.
func verifyBatches(ctx context.Context, bkt objstore.Bucket, path string, size int, m inspect.ManifestJSON, stdout io.Writer) error {
	problems := make([]string, len(m.Entries))
	var g errgroup.Group
	g.SetLimit(8)
	for i, e := range m.Entries {
		g.Go(func() error {
			rc, err := bkt.Get(ctx, e.Location)
			if err != nil {
				if bkt.IsObjNotFoundErr(err) {
					problems[i] = fmt.Sprintf("sequence %d: batch %s is MISSING", e.Sequence, e.Location)
				} else {
					problems[i] = fmt.Sprintf("sequence %d: reading batch %s: %v", e.Sequence, e.Location, err)
				}
				return nil
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				problems[i] = fmt.Sprintf("sequence %d: reading batch %s: %v", e.Sequence, e.Location, err)
				return nil
			}
			if _, err := format.DecodeBatch(b); err != nil {
				problems[i] = fmt.Sprintf("sequence %d: batch %s (%d bytes) is DAMAGED: %v", e.Sequence, e.Location, len(b), err)
			}
			return nil
		})
	}
	_ = g.Wait()
	bad := 0
	for _, p := range problems {
		if p != "" {
			bad++
			fmt.Fprintln(stdout, p)
		}
	}
	checks := "no checksums (version 1)"
	if m.Version == manifest.Version2 {
		checks = "checksums verify"
	}
	fmt.Fprintf(stdout, "manifest %s: version %d, %d bytes, %s; epoch %d, next_sequence %d; %d of %d batches read and verified\n",
		path, m.Version, size, checks, m.Epoch, m.NextSequence, len(m.Entries)-bad, len(m.Entries))
	if bad > 0 {
		return fmt.Errorf("manifest %s lists %d damaged or missing batches", path, bad)
	}
	return nil
}

// inspectManifest prints (or verifies) the manifest at path; missingEmpty
// takes a missing object for an empty queue (a partition never written).
func inspectManifest(ctx context.Context, bkt objstore.Bucket, store cas.Store, path string, verify, asJSON, missingEmpty bool, stdout io.Writer) error {
	b, _, err := store.Read(ctx, path)
	if errors.Is(err, cas.ErrNotExist) && missingEmpty {
		fmt.Fprintf(stdout, "manifest %s not written yet: an empty queue\n", path)
		return nil
	}
	if errors.Is(err, cas.ErrNotExist) {
		// Not an empty queue: a consumer writes the manifest when
		// it starts and a producer at its first commit, so this is most likely a wrong
		// --manifest-path or bucket.
		return fmt.Errorf("manifest %s: no such object in the bucket (check manifest_path / --manifest-path and the bucket)", path)
	}
	if err != nil {
		return fmt.Errorf("reading manifest %s: %w", path, err)
	}
	m, err := inspect.Manifest(b)
	if err != nil {
		if verify {
			return fmt.Errorf("manifest %s (%d bytes) is DAMAGED: %w\nSee what a repair would keep with: bucketq repair manifest --dry-run", path, len(b), err)
		}
		return fmt.Errorf("manifest %s: %w", path, err)
	}
	if verify {
		return verifyBatches(ctx, bkt, path, len(b), m, stdout)
	}
	if asJSON {
		return inspect.WriteJSON(stdout, m)
	}
	return inspect.WriteManifestTable(stdout, path, m)
}

// inspectJournal lists the segments under prefix from their footers (with
// verify, from their whole bodies) and fails if any is damaged or
// unreadable; each problem names the segment and byte offset.
func inspectJournal(ctx context.Context, bkt objstore.Bucket, prefix string, verify, asJSON bool, stdout io.Writer) error {
	j, err := journal.Open(bkt, prefix)
	if err != nil {
		return err
	}
	infos, err := j.Survey(ctx, verify)
	if err != nil {
		return err
	}
	out := inspect.JournalJSON{Prefix: prefix, Segments: []inspect.SegmentJSON{}, Problems: []string{}}
	for _, s := range infos {
		if s.Err != nil {
			out.Problems = append(out.Problems, s.Err.Error())
			continue
		}
		out.Segments = append(out.Segments, inspect.Segment(s.Name, s.Footer))
		out.Entries += uint64(s.Footer.EntryCount)
	}
	if asJSON {
		err = inspect.WriteJSON(stdout, out)
	} else {
		err = inspect.WriteJournalTable(stdout, out)
		if verify && err == nil {
			fmt.Fprintf(stdout, "journal %s: %d of %d segments read and verified\n", prefix, len(out.Segments), len(infos))
		}
	}
	if err != nil {
		return err
	}
	if n := len(out.Problems); n > 0 {
		return fmt.Errorf("journal %s: %d of %d segments damaged or unreadable (listed above)", prefix, n, len(infos))
	}
	return nil
}

// inspectSegment prints one segment, read and verified in full.
func inspectSegment(ctx context.Context, bkt objstore.Bucket, prefix, name string, asJSON bool, stdout io.Writer) error {
	j, err := journal.Open(bkt, prefix)
	if err != nil {
		return err
	}
	seg, err := j.Read(ctx, name)
	if err != nil {
		if bkt.IsObjNotFoundErr(errors.Unwrap(err)) {
			return fmt.Errorf("journal segment %s: no such object in the bucket (expired segments are deleted by GC; list them with bucketq inspect journal)", name)
		}
		return err
	}
	d := inspect.SegmentDetailJSON{SegmentJSON: inspect.Segment(name, seg.Footer), Entries: inspect.Entries(seg.Entries)}
	if asJSON {
		return inspect.WriteJSON(stdout, d)
	}
	return inspect.WriteSegmentTable(stdout, d)
}
