package journal

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bucketq/bucketq/manifest"
)

// Compaction defaults (RFC 0004, Compaction).
const (
	// DefaultCompactMaxEntries is the most entries compaction puts in one
	// segment.
	DefaultCompactMaxEntries = 100_000
	// DefaultCompactAge is how old a segment must be before Sweep merges it.
	DefaultCompactAge = time.Minute
	// MaxCompactSpan bounds the default CompactSpan, and with it how much
	// longer than the retention compaction can keep an entry.
	MaxCompactSpan = time.Hour
)

// compactSpan is the default width of a compaction window for a retention.
func compactSpan(retention time.Duration) time.Duration {
	return max(min(retention/8, MaxCompactSpan), time.Millisecond)
}

// live is a listed segment that is not expired, with what Sweep knows of it.
type live struct {
	SegmentRef
	cached
}

// window is the compaction window of a journaled_at_ms: the
// CompactSpan-wide slice of Unix time it falls in.
func (j *Journal) window(journaledAtMs int64) int64 {
	w := journaledAtMs / j.spanMs
	if journaledAtMs%j.spanMs < 0 {
		w--
	}
	return w
}

// compact is the compaction step of a GC cycle (RFC 0004, Compaction). It
// groups the live segments (in listing order) that were journaled at or
// before nowMs − CompactAge by window of journaled_at_ms, and in each
// window merges the segments that are not yet in their final shape into
// segments of at most CompactMaxEntries entries: it writes every merged
// segment first and deletes the inputs after, so a crash in between leaves
// overlapping segments, which readers deduplicate by sequence, and the next
// cycle finishes the job. A merged segment's journaled_at_ms is the largest
// of the inputs holding its entries, and every input is in the same window,
// so an entry is kept at least journal_retention after its latest write and
// less than CompactSpan longer.
//
// all names every segment in the bucket; it and the cache are updated for
// the segments written and deleted.
func (j *Journal) compact(ctx context.Context, segs []live, all map[string]bool, nowMs int64) error {
	if j.spanMs <= 0 {
		return nil
	}
	var (
		order   []int64
		windows = map[int64][]live{}
		errs    []error
	)
	for _, s := range segs {
		if s.journaledAtMs > nowMs-j.ageMs {
			continue
		}
		w := j.window(s.journaledAtMs)
		if _, ok := windows[w]; !ok {
			order = append(order, w)
		}
		windows[w] = append(windows[w], s)
	}
	slices.Sort(order)
	for _, w := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := j.compactWindow(ctx, windows[w], all); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// compactWindow merges one window's segments (in listing order).
func (j *Journal) compactWindow(ctx context.Context, segs []live, all map[string]bool) error {
	// Leading segments already in their final shape stay as they are:
	// full, and each above every sequence before it. Only the rest is read
	// and rewritten, so a window holding many full segments costs one
	// read and write of its last, partial one per cycle.
	n := 0
	for n < len(segs) && len(segs[n].locations) == j.maxEntries && (n == 0 || segs[n].First > segs[n-1].Last) {
		n++
	}
	// The rest starts at its smallest first sequence; if that overlaps the
	// last full segment, the full one is merged again too.
	if n > 0 && n < len(segs) && segs[n].First <= segs[n-1].Last {
		n--
	}
	rest := segs[n:]
	if len(rest) == 0 || (len(rest) == 1 && len(rest[0].locations) <= j.maxEntries) {
		return nil
	}

	type item struct {
		e     manifest.Entry
		at    int64
		epoch uint64
	}
	read := make([]*Segment, len(rest))
	var g errgroup.Group
	g.SetLimit(ioParallel)
	for i, s := range rest {
		g.Go(func() error {
			var err error
			read[i], err = j.Read(ctx, s.Name)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		if j.Gone(err) {
			// Deleted since the listing: another GC (a consumer not yet
			// aware it is fenced) is compacting or expiring this
			// window. Leave it to the next cycle.
			return nil
		}
		return fmt.Errorf("journal: compaction: %w", err)
	}
	var items []item
	for _, seg := range read {
		for _, e := range seg.Entries {
			items = append(items, item{e: e, at: seg.JournaledAtMs, epoch: seg.Epoch})
		}
	}
	slices.SortStableFunc(items, func(a, b item) int { return cmp.Compare(a.e.Sequence, b.e.Sequence) })
	// A sequence names one entry for ever (RFC 0002): duplicates from
	// overlapping segments are the same entry. It keeps the latest time it
	// was journaled at.
	merged := items[:0]
	for _, it := range items {
		if k := len(merged) - 1; k >= 0 && merged[k].e.Sequence == it.e.Sequence {
			merged[k].at = max(merged[k].at, it.at)
			merged[k].epoch = max(merged[k].epoch, it.epoch)
			continue
		}
		merged = append(merged, it)
	}

	type chunk struct {
		name    string
		entries []manifest.Entry
		locs    []string
		at      int64
		epoch   uint64
		write   bool
	}
	inRest := make(map[string]live, len(rest))
	for _, s := range rest {
		inRest[s.Name] = s
	}
	var chunks []chunk
	keep := map[string]bool{}
	for i := 0; i < len(merged); i += j.maxEntries {
		part := merged[i:min(i+j.maxEntries, len(merged))]
		c := chunk{name: Name(j.prefix, part[0].e.Sequence, part[len(part)-1].e.Sequence),
			entries: make([]manifest.Entry, len(part)), locs: make([]string, len(part))}
		for k, it := range part {
			c.entries[k], c.locs[k] = it.e, it.e.Location
			c.at, c.epoch = max(c.at, it.at), max(c.epoch, it.epoch)
		}
		// A chunk's sequences are every merged sequence between its
		// first and last, so a listed input of the same name holds a
		// subset of them: all of them when the counts agree.
		switch s, ok := inRest[c.name]; {
		case ok && len(s.locations) == len(c.entries):
			// Already written (a cycle that died among its deletes);
			// rewritten only to raise its journaled_at_ms to an input's.
			c.write = s.journaledAtMs < c.at
		case all[c.name]:
			// The name is taken by a segment of a later window, or a
			// younger one: a successor consumer journaled exactly this
			// range again. Holding the same entries (the same batch
			// locations in the same order) at a later time, it makes
			// the inputs redundant.
			if o, cachedOK := j.cache[c.name]; !ok && cachedOK && o.journaledAtMs >= c.at && slices.Equal(o.locations, c.locs) {
				c.write = false
				break
			}
			// Otherwise (other entries, an earlier time, or an input
			// lacking a sequence another input holds, as a catch-up
			// segment can) overwriting it could shorten its retention
			// or drop its entries. The window stays as it is; its
			// segments expire on their own.
			return nil
		default:
			c.write = true
		}
		keep[c.name] = true
		chunks = append(chunks, c)
	}

	for _, c := range chunks {
		if !c.write {
			continue
		}
		b, err := Encode(c.entries, c.at, c.epoch)
		if err != nil {
			return fmt.Errorf("journal: compaction: %w", err)
		}
		if err := j.bkt.Upload(ctx, c.name, bytes.NewReader(b)); err != nil {
			return fmt.Errorf("journal: compaction: write %s: %w", c.name, err)
		}
		j.cache[c.name] = cached{journaledAtMs: c.at, locations: c.locs}
		all[c.name] = true
	}
	// Every entry of the inputs is now in a written segment: delete them.
	errs := make([]error, len(rest))
	g = errgroup.Group{}
	g.SetLimit(ioParallel)
	for i, s := range rest {
		if keep[s.Name] {
			continue
		}
		g.Go(func() error {
			if err := j.bkt.Delete(ctx, s.Name); err != nil && !j.bkt.IsObjNotFoundErr(err) {
				errs[i] = fmt.Errorf("journal: compaction: delete merged %s: %w", s.Name, err)
			}
			return nil
		})
	}
	_ = g.Wait()
	for i, s := range rest {
		if keep[s.Name] || errs[i] != nil {
			continue
		}
		delete(j.cache, s.Name)
		delete(all, s.Name)
		j.m.SegmentsCompacted.Inc()
	}
	return errors.Join(errs...)
}
