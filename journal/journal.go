package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

	"github.com/bucketq/bucketq/internal/objname"
	"github.com/bucketq/bucketq/manifest"
)

// DefaultPrefix is where segments live unless configured otherwise.
const DefaultPrefix = "ingest/journal"

// suffix ends every segment name.
const suffix = ".journal"

// Name is the object name of the segment holding first..last:
// {prefix}/{first %020d}-{last %020d}.journal, which lists in sequence order.
func Name(prefix string, first, last uint64) string {
	return fmt.Sprintf("%s/%020d-%020d%s", prefix, first, last, suffix)
}

// ParseName returns the sequence bounds a segment name states; ok is false
// for any other object under the prefix.
func ParseName(prefix, name string) (first, last uint64, ok bool) {
	base, found := strings.CutPrefix(name, prefix+"/")
	if !found {
		return 0, 0, false
	}
	base, found = strings.CutSuffix(base, suffix)
	if !found || len(base) != 41 || base[20] != '-' {
		return 0, 0, false
	}
	f, err1 := strconv.ParseUint(base[:20], 10, 64)
	l, err2 := strconv.ParseUint(base[21:], 10, 64)
	if err1 != nil || err2 != nil || f > l {
		return 0, 0, false
	}
	return f, l, true
}

// Metrics are the journal's counters. NewMetrics(nil) makes unregistered ones.
type Metrics struct {
	Writes            prometheus.Counter
	Failures          prometheus.Counter
	SegmentsDeleted   prometheus.Counter
	SegmentsCompacted prometheus.Counter
	Segments          prometheus.Gauge
	FilesRetained     prometheus.Gauge
}

// NewMetrics returns the journal's metrics, registered on reg unless nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Writes:          prometheus.NewCounter(prometheus.CounterOpts{Name: "buffer_journal_writes", Help: "Journal segments written (one before each dequeue)."}),
		Failures:        prometheus.NewCounter(prometheus.CounterOpts{Name: "buffer_journal_failures", Help: "Failed journal segment writes (the dequeue waits and retries)."}),
		SegmentsDeleted: prometheus.NewCounter(prometheus.CounterOpts{Name: "buffer_journal_segments_deleted", Help: "Journal segments deleted by GC after journal_retention."}),
		SegmentsCompacted: prometheus.NewCounter(prometheus.CounterOpts{Name: "buffer_journal_segments_compacted",
			Help: "Journal segments merged into larger ones by GC and deleted (a merged segment merged again counts again)."}),
		Segments:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "buffer_journal_segments", Help: "Journal segments left by the last GC cycle, after expiry and compaction."}),
		FilesRetained: prometheus.NewGauge(prometheus.GaugeOpts{Name: "buffer_gc_files_retained", Help: "Batch files referenced by live journal segments, kept by the last GC cycle."}),
	}
	if reg != nil {
		reg.MustRegister(m.Writes, m.Failures, m.SegmentsDeleted, m.SegmentsCompacted, m.Segments, m.FilesRetained)
	}
	return m
}

// Config locates the journal and says how long segments live.
type Config struct {
	Prefix    string        // default DefaultPrefix
	Retention time.Duration // > 0
	// Compaction (RFC 0004): each Sweep merges the segments journaled at
	// least CompactAge ago (default DefaultCompactAge) whose
	// journaled_at_ms fall in the same CompactSpan-wide window of Unix
	// time (default Retention/8, at most MaxCompactSpan) into segments of
	// at most CompactMaxEntries entries (default
	// DefaultCompactMaxEntries). An entry is then kept at least Retention
	// and less than Retention + CompactSpan. A negative CompactSpan turns
	// compaction off.
	CompactSpan       time.Duration
	CompactAge        time.Duration
	CompactMaxEntries int
}

// Journal reads and writes the segments under one prefix of a bucket.
type Journal struct {
	bkt       objstore.Bucket
	prefix    string
	retention time.Duration
	m         *Metrics
	now       func() time.Time

	// Compaction: window width and least age in ms (spanMs 0: off), and
	// the most entries of a merged segment.
	spanMs, ageMs int64
	maxEntries    int

	mu    sync.Mutex
	cache map[string]cached // live segments read by Sweep, by name
}

type cached struct {
	journaledAtMs int64
	locations     []string
}

// New returns the journal; m may be nil.
func New(bkt objstore.Bucket, cfg Config, m *Metrics) (*Journal, error) {
	if bkt == nil {
		return nil, errors.New("journal: nil bucket")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	p, err := objname.Prefix(cfg.Prefix)
	if err != nil {
		return nil, fmt.Errorf("journal: prefix: %w", err)
	}
	if cfg.Retention <= 0 {
		return nil, fmt.Errorf("journal: retention %v; the journal is off at 0 and then not opened", cfg.Retention)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	j := &Journal{bkt: bkt, prefix: p, retention: cfg.Retention, m: m, now: time.Now, cache: map[string]cached{},
		ageMs: DefaultCompactAge.Milliseconds(), maxEntries: DefaultCompactMaxEntries}
	switch {
	case cfg.CompactSpan == 0:
		j.spanMs = compactSpan(cfg.Retention).Milliseconds()
	case cfg.CompactSpan > 0:
		j.spanMs = max(cfg.CompactSpan.Milliseconds(), 1)
	}
	if cfg.CompactAge > 0 {
		j.ageMs = cfg.CompactAge.Milliseconds()
	}
	if cfg.CompactMaxEntries > 0 {
		j.maxEntries = cfg.CompactMaxEntries
	}
	return j, nil
}

// Open returns a journal only for reading (replay): no retention.
func Open(bkt objstore.Bucket, prefix string) (*Journal, error) {
	j, err := New(bkt, Config{Prefix: prefix, Retention: time.Nanosecond}, nil)
	if err != nil {
		return nil, err
	}
	j.retention = 0
	return j, nil
}

// Prefix is the object name prefix of the segments, without a trailing "/".
func (j *Journal) Prefix() string { return j.prefix }

// SetClock replaces the clock (tests).
func (j *Journal) SetClock(now func() time.Time) { j.now = now }

// Write writes the segment holding entries (non-empty, strictly
// increasing) as one PUT. A PUT is atomic, and a rewrite of the same name
// holds the same entries, so a retry after any failure is safe.
func (j *Journal) Write(ctx context.Context, entries []manifest.Entry, epoch uint64) (string, error) {
	b, err := Encode(entries, j.now().UnixMilli(), epoch)
	if err != nil {
		return "", err
	}
	name := Name(j.prefix, entries[0].Sequence, entries[len(entries)-1].Sequence)
	if err := j.bkt.Upload(ctx, name, bytes.NewReader(b)); err != nil {
		j.m.Failures.Inc()
		return "", fmt.Errorf("journal: write %s: %w", name, err)
	}
	j.m.Writes.Inc()
	return name, nil
}

// SegmentRef is a listed segment: its name and the bounds the name states.
type SegmentRef struct {
	Name        string
	First, Last uint64
}

// List returns every segment under the prefix in sequence order (by
// first, then last). Other objects under the prefix are ignored.
func (j *Journal) List(ctx context.Context) ([]SegmentRef, error) {
	out, _, err := j.ListStray(ctx)
	return out, err
}

// ListStray is List that also returns the objects under the prefix whose
// names are not segment names (renamed or foreign objects, which List
// leaves out), so that a reader can report them instead of skipping
// them silently. A directory bucket's temporary upload files
// (objname.TempPrefix) are neither: Sweep deletes the ones a killed
// writer left behind.
func (j *Journal) ListStray(ctx context.Context) ([]SegmentRef, []string, error) {
	out, stray, _, err := j.list(ctx)
	return out, stray, err
}

// list lists the prefix once: its segments in sequence order, its stray
// objects, and its temporary upload files.
func (j *Journal) list(ctx context.Context) (segs []SegmentRef, stray, temps []string, err error) {
	err = j.bkt.Iter(ctx, j.prefix+"/", func(name string) error {
		switch f, l, ok := ParseName(j.prefix, name); {
		case ok:
			segs = append(segs, SegmentRef{Name: name, First: f, Last: l})
		case objname.IsTemp(name):
			temps = append(temps, name)
		default:
			stray = append(stray, name)
		}
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("journal: list %s/: %w", j.prefix, err)
	}
	sort.Slice(segs, func(a, b int) bool {
		if segs[a].First != segs[b].First {
			return segs[a].First < segs[b].First
		}
		return segs[a].Last < segs[b].Last
	})
	return segs, stray, temps, nil
}

// Read reads, verifies and decodes one segment, and checks that its
// footer agrees with its name. A damaged segment is a *CorruptError naming it.
func (j *Journal) Read(ctx context.Context, name string) (*Segment, error) {
	rc, err := j.bkt.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("journal: read %s: %w", name, err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("journal: read %s: %w", name, err)
	}
	s, err := Decode(b)
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			ce.Segment = name
		}
		return nil, err
	}
	if f, l, ok := ParseName(j.prefix, name); ok && (f != s.FirstSequence || l != s.LastSequence) {
		return nil, &CorruptError{Segment: name, Offset: len(b) - FooterSize, Err: ErrName, Detail: fmt.Sprintf("footer says sequences %d..%d", s.FirstSequence, s.LastSequence)}
	}
	return s, nil
}

// ReadNew reads, ioParallel at a time, the entries of each of segs that
// have does not hold yet, into have by name: a segment never changes under
// its name, so a reader listing again (after finding a segment merged
// away) reads only what the new listing added. Every read is tried even
// when one finds its segment gone; that one's error (Gone) is returned
// then, unless another read failed otherwise.
func (j *Journal) ReadNew(ctx context.Context, segs []SegmentRef, have map[string][]manifest.Entry) error {
	names, got, errs := readUncached(ctx, j, segs, have)
	var gone error
	for i, name := range names {
		switch {
		case errs[i] == nil:
			have[name] = got[i].Entries
		case j.Gone(errs[i]):
			gone = errs[i]
		default:
			return errs[i]
		}
	}
	return gone
}

// readUncached reads, ioParallel at a time, each of segs whose name is not
// a key of have, and returns those names with each one's segment or read
// error. Every read is tried, whatever the others return.
func readUncached[V any](ctx context.Context, j *Journal, segs []SegmentRef, have map[string]V) (names []string, got []*Segment, errs []error) {
	for _, s := range segs {
		if _, ok := have[s.Name]; !ok {
			names = append(names, s.Name)
		}
	}
	got = make([]*Segment, len(names))
	errs = make([]error, len(names))
	var g errgroup.Group
	g.SetLimit(ioParallel)
	for i, name := range names {
		g.Go(func() error {
			got[i], errs[i] = j.Read(ctx, name)
			return nil
		})
	}
	_ = g.Wait()
	return names, got, errs
}

// Gone reports whether err, from Read or ReadFooter, says the segment no
// longer exists: expired, or merged by compaction into another segment,
// which a new listing shows (RFC 0004, Compaction).
func (j *Journal) Gone(err error) bool {
	return err != nil && j.bkt.IsObjNotFoundErr(errors.Unwrap(err))
}

// ReadFooter reads only the last FooterSize bytes of a segment (one range
// read), unverified: enough to choose segments by time.
func (j *Journal) ReadFooter(ctx context.Context, name string) (Footer, error) {
	f, _, err := j.readFooter(ctx, name)
	return f, err
}

// readFooter is ReadFooter that also returns the segment's size.
func (j *Journal) readFooter(ctx context.Context, name string) (Footer, int64, error) {
	attrs, err := j.bkt.Attributes(ctx, name)
	if err != nil {
		return Footer{}, 0, fmt.Errorf("journal: attributes of %s: %w", name, err)
	}
	if attrs.Size < FooterSize {
		return Footer{}, attrs.Size, &CorruptError{Segment: name, Offset: -1, Err: ErrTooShort, Detail: fmt.Sprintf("%d bytes", attrs.Size)}
	}
	rc, err := j.bkt.GetRange(ctx, name, attrs.Size-FooterSize, FooterSize)
	if err != nil {
		return Footer{}, attrs.Size, fmt.Errorf("journal: read footer of %s: %w", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return Footer{}, attrs.Size, fmt.Errorf("journal: read footer of %s: %w", name, err)
	}
	f, err := ReadFooter(b)
	var ce *CorruptError
	if errors.As(err, &ce) {
		ce.Segment = name
		ce.Offset = int(attrs.Size) - FooterSize
	}
	return f, attrs.Size, err
}

// SegmentInfo is a listed segment with its footer, or why it could not be
// read (a *CorruptError for damage).
type SegmentInfo struct {
	SegmentRef
	Footer Footer
	Err    error
}

// Survey lists the segments and reads each one's footer (one range read
// each), or with verify each whole segment (checksum and every entry), a
// few at a time; the result is in sequence order. A footer that disagrees
// with the segment's name is an ErrName *CorruptError. A segment deleted
// since the listing (expired, or merged by compaction into a segment the
// listing may not show) makes Survey list again, reading only what the
// new listing added, up to surveyAttempts times; if segments still vanish
// then, Survey fails rather than leave out the segments they were merged
// into. Otherwise only the listing failing is an error; a segment's own
// trouble is its Err.
func (j *Journal) Survey(ctx context.Context, verify bool) ([]SegmentInfo, error) {
	// Segments are immutable under their names, so what one attempt read
	// is kept for the next: each attempt reads only what its listing
	// added (the segments a compacting GC wrote meanwhile).
	seen := map[string]SegmentInfo{}
	for attempt := 1; ; attempt++ {
		out, gone, err := j.survey(ctx, verify, seen)
		if err != nil || !gone {
			return out, err
		}
		if attempt == surveyAttempts {
			return out, fmt.Errorf("journal: segments kept vanishing between listing and reading in %d listings in a row (a GC compacting the journal meanwhile?): the survey would miss the segments they were merged into; run it again", attempt)
		}
	}
}

// surveyAttempts is how many listings Survey tries when listed segments
// vanish before it reads them.
const surveyAttempts = 10

func (j *Journal) survey(ctx context.Context, verify bool, seen map[string]SegmentInfo) ([]SegmentInfo, bool, error) {
	segs, err := j.List(ctx)
	if err != nil {
		return nil, false, err
	}
	out := make([]SegmentInfo, len(segs))
	gone := make([]bool, len(segs))
	var g errgroup.Group
	g.SetLimit(8)
	for i, s := range segs {
		if info, ok := seen[s.Name]; ok {
			out[i] = info
			continue
		}
		g.Go(func() error {
			out[i].SegmentRef = s
			var err error
			if verify {
				var seg *Segment
				if seg, err = j.Read(ctx, s.Name); err == nil {
					out[i].Footer = seg.Footer
				}
			} else {
				var size int64
				out[i].Footer, size, err = j.readFooter(ctx, s.Name)
				if f := out[i].Footer; err == nil && (f.FirstSequence != s.First || f.LastSequence != s.Last) {
					err = &CorruptError{Segment: s.Name, Offset: int(size) - FooterSize, Err: ErrName,
						Detail: fmt.Sprintf("footer says sequences %d..%d", f.FirstSequence, f.LastSequence)}
				}
			}
			if err != nil && j.bkt.IsObjNotFoundErr(errors.Unwrap(err)) {
				gone[i] = true
			}
			out[i].Err = err
			return nil
		})
	}
	_ = g.Wait()
	kept := out[:0]
	for i := range out {
		if !gone[i] {
			seen[out[i].Name] = out[i]
			kept = append(kept, out[i])
		}
	}
	return kept, len(kept) < len(out), ctx.Err()
}

// Sweep is the journal's part of a GC cycle (RFC 0004, retention rules 1
// and 2, and compaction). It lists the segments, deletes those journaled
// at or before now − retention, merges small old ones (compact.go) and
// returns the batch locations that the live ones reference: GC keeps
// those files. Segments are immutable apart from rewrites holding the same
// entries, so each live segment is read once and its locations cached by
// name.
//
// A live segment that cannot be read or decoded makes Sweep return an
// error with no locations: GC cannot tell which files it references, so
// it must delete nothing. So does a listed segment that keeps vanishing
// before it is read: it may have been merged into a segment the listing
// did not show, so Sweep lists again (sweepAttempts times). Failed
// deletions and a failed compaction are returned joined with the
// locations (retried next cycle).
func (j *Journal) Sweep(ctx context.Context) (keep map[string]struct{}, deleted int, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var (
		segs  []SegmentRef
		temps []string
	)
	for attempt := 1; ; attempt++ {
		segs, _, temps, err = j.list(ctx)
		if err != nil {
			return nil, 0, err
		}
		gone, err := j.readAll(ctx, segs)
		if err != nil {
			return nil, 0, err
		}
		if gone == "" {
			break
		}
		// Expired by another GC, or merged by it into a segment written
		// after this listing: only a new listing tells.
		if attempt == sweepAttempts {
			return nil, 0, fmt.Errorf("journal: segment %s vanished between listing and reading in %d listings in a row (another GC compacting?); no batch file can be deleted this cycle", gone, attempt)
		}
	}
	now := j.now()
	cutoff := now.Add(-j.retention).UnixMilli()
	keep = map[string]struct{}{}
	all := make(map[string]bool, len(segs))
	lives := make([]live, 0, len(segs))
	var errs []error
	for _, s := range segs {
		all[s.Name] = true
		c := j.cache[s.Name]
		if c.journaledAtMs <= cutoff {
			if err := j.bkt.Delete(ctx, s.Name); err != nil && !j.bkt.IsObjNotFoundErr(err) {
				errs = append(errs, fmt.Errorf("journal: delete expired %s: %w", s.Name, err))
				continue
			}
			delete(j.cache, s.Name)
			delete(all, s.Name)
			deleted++
			j.m.SegmentsDeleted.Inc()
			continue
		}
		lives = append(lives, live{SegmentRef: s, cached: c})
		for _, l := range c.locations {
			keep[l] = struct{}{}
		}
	}
	// The keep set is complete before compaction runs: merged segments
	// reference exactly the locations of their inputs.
	if err := j.compact(ctx, lives, all, now.UnixMilli()); err != nil {
		errs = append(errs, err)
	}
	for name := range j.cache {
		if !all[name] {
			delete(j.cache, name)
		}
	}
	// A killed writer leaves its temporary upload file on a directory
	// bucket; one older than the retention is no upload in progress.
	for _, name := range temps {
		attrs, err := j.bkt.Attributes(ctx, name)
		if err != nil || attrs.LastModified.IsZero() || attrs.LastModified.UnixMilli() > cutoff {
			continue
		}
		if err := j.bkt.Delete(ctx, name); err != nil && !j.bkt.IsObjNotFoundErr(err) {
			errs = append(errs, fmt.Errorf("journal: delete abandoned temporary file %s: %w", name, err))
		}
	}
	j.m.Segments.Set(float64(len(all)))
	j.m.FilesRetained.Set(float64(len(keep)))
	return keep, deleted, errors.Join(errs...)
}

// sweepAttempts is how many listings Sweep tries when listed segments
// vanish before it reads them.
const sweepAttempts = 3

// readAll reads every listed segment that is not cached into the cache,
// ioParallel at a time. It returns the name of one that was deleted since
// the listing, or an error for one that cannot be read or decoded.
func (j *Journal) readAll(ctx context.Context, segs []SegmentRef) (gone string, err error) {
	names, got, errs := readUncached(ctx, j, segs, j.cache)
	for i, name := range names {
		switch {
		case errs[i] == nil:
			c := cached{journaledAtMs: got[i].JournaledAtMs, locations: make([]string, len(got[i].Entries))}
			for k, e := range got[i].Entries {
				c.locations[k] = e.Location
			}
			j.cache[name] = c
		case j.Gone(errs[i]):
			gone = name
		case err == nil:
			err = fmt.Errorf("journal: segment %s unreadable, so no batch file can be deleted: %w", name, errs[i])
		}
	}
	if err != nil {
		return "", err
	}
	return gone, nil
}

// ioParallel is how many segment reads and deletes a cycle has in flight.
const ioParallel = 8
