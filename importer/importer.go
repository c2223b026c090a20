// Package importer imports usage files from an object-storage bucket into
// the queue (`bucketq import`): it lists objects under a prefix, reads each
// one as a stream (NDJSON, CSV with a header row or a JSON array; gzip or
// zstd found from the magic bytes), turns every row into a CloudEvent (rows
// that are CloudEvents as they are, others through a CEL Mapping), appends
// them through a producer with format.EventsHeader exactly as POST
// /api/v1/events stores events, dead-letters bad rows with object, row and
// reason, and keeps a checkpoint per job in the queue's bucket so a killed
// import resumes where its last committed request ended.
package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/producer"
)

// Dead-letter reasons of the import (deadletter.Letter.Reason; see package deadletter).
const (
	// ReasonRow: a row that does not parse, map or validate.
	ReasonRow = deadletter.ImportRow
	// ReasonObject: an object, or its tail from a row on, that cannot be
	// read (a truncated or corrupt compressed stream, broken JSON array
	// syntax, a bad CSV header, an unknown format).
	ReasonObject = deadletter.ImportObject
)

// Config of an import job.
type Config struct {
	Source objstore.BucketReader // where the usage files are
	// Queue is the queue's bucket (dead letters) and Store its CAS store
	// (the checkpoint); App appends the events (a producer on that queue).
	Queue objstore.Bucket
	Store cas.Store
	App   producer.Appender

	Job string // checkpoint name; see CheckpointName
	// Partition is the partition (RFC 0005) whose queue App appends to,
	// recorded in the checkpoint: a job resumed with another is refused
	// (ErrOtherPartition). 0 with one partition.
	Partition      int
	CheckpointPath string // the checkpoint object; default CheckpointName("ingest", Job)
	// CheckpointWindow: once this many objects no worker is reading have
	// their state in the checkpoint object, the next checkpoint write
	// first seals them into a write-once segment (RFC 0006, "Imported
	// rows"). Default DefaultCheckpointWindow.
	CheckpointWindow int
	DeadLetterPrefix string // default deadletter.DefaultPrefix, "ingest/dead-letter"

	Prefix string // list objects under it
	Match  string // glob (path.Match) on the name's base, or on the name below Prefix when it has a '/'
	Format Format
	Mapper *Mapper // nil: only CloudEvents rows are accepted

	Parallel  int  // objects read at once; default 4
	Force     bool // import done objects again
	MaxErrors int  // stop once more rows than this were dead-lettered; negative: no limit
	DryRun    bool // read, map and count; write nothing (bad rows go to DryRunOut)
	DryRunOut io.Writer

	MaxRowBytes int // default DefaultMaxRowBytes
	ChunkRows   int // events per Append; default 1000
	ChunkBytes  int // bytes per Append; default 1 MiB

	Log *slog.Logger
}

// CheckpointName is the checkpoint object of job under dir (the folder
// of the manifest): DIR/import/JOB.checkpoint.
func CheckpointName(dir, job string) string {
	return path.Join(dir, "import", job+".checkpoint")
}

// CheckJob checks a job name: letters, digits, '.', '_' and '-'.
func CheckJob(job string) error {
	if job == "" || job == "." || job == ".." || len(job) > 128 {
		return fmt.Errorf("job name %q: want 1 to 128 letters, digits, '.', '_' or '-'", job)
	}
	for _, r := range job {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("job name %q: %q is not allowed (letters, digits, '.', '_' or '-')", job, r)
		}
	}
	return nil
}

// CheckPrefix checks a source prefix: object-name segments only. A ".."
// or "." segment, a leading '/', a '\\' or a control character is refused:
// on a directory bucket "../" would list files outside the source
// directory, and on object stores such names are almost always a mistake.
func CheckPrefix(prefix string) error {
	if strings.HasPrefix(prefix, "/") {
		return fmt.Errorf("prefix %q: starts with '/'; object names have no leading slash (write %q)", prefix, strings.TrimLeft(prefix, "/"))
	}
	for _, r := range prefix {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("prefix %q: %q is not allowed in a prefix", prefix, r)
		}
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == ".." || seg == "." {
			return fmt.Errorf("prefix %q: a %q segment is not allowed (it would reach outside the source)", prefix, seg)
		}
	}
	return nil
}

// Progress is a snapshot of a running import.
type Progress struct {
	ObjectsTotal   int64 // listed and matched (known once listing is done)
	ObjectsDone    int64 // read to the end or to damage in this run
	ObjectsSkipped int64 // done in an earlier run of the job
	ObjectsFailed  int64 // not finished (source errors): a re-run retries them
	BytesRead      int64 // source bytes (compressed)
	Rows           int64 // rows read (bad ones included; resumed rows not)
	Events         int64 // events committed to the queue (dry run: mapped)
	DeadLettered   int64 // bad rows and unreadable objects
	Listing        bool  // still listing
}

// Summary is the outcome of Run.
type Summary struct {
	Progress
	Stopped  string // why the job stopped early ("" if it did not)
	Duration time.Duration
}

// Importer runs one import job.
type Importer struct {
	cfg  Config
	ck   *checkpointer
	stop context.CancelCauseFunc

	total, done, skipped, failed, bytes, rows, events, dead atomic.Int64
	listing                                                 atomic.Bool
}

// New checks cfg.
func New(cfg Config) (*Importer, error) {
	if cfg.Source == nil {
		return nil, errors.New("importer: no source bucket")
	}
	if err := CheckJob(cfg.Job); err != nil {
		return nil, err
	}
	if !cfg.DryRun && (cfg.Queue == nil || cfg.Store == nil || cfg.App == nil) {
		return nil, errors.New("importer: the queue's bucket, CAS store and appender are required (or DryRun)")
	}
	if err := CheckPrefix(cfg.Prefix); err != nil {
		return nil, err
	}
	if cfg.Match != "" {
		if _, err := path.Match(cfg.Match, ""); err != nil {
			return nil, fmt.Errorf("match pattern %q: %v", cfg.Match, err)
		}
	}
	if cfg.Format == "" {
		cfg.Format = FormatAuto
	}
	if cfg.CheckpointPath == "" {
		cfg.CheckpointPath = CheckpointName("ingest", cfg.Job)
	}
	if cfg.DeadLetterPrefix == "" {
		cfg.DeadLetterPrefix = deadletter.DefaultPrefix
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 4
	}
	if cfg.CheckpointWindow <= 0 {
		cfg.CheckpointWindow = DefaultCheckpointWindow
	}
	if cfg.MaxRowBytes <= 0 {
		cfg.MaxRowBytes = DefaultMaxRowBytes
	}
	if cfg.ChunkRows <= 0 {
		cfg.ChunkRows = 1000
	}
	if cfg.ChunkBytes <= 0 {
		cfg.ChunkBytes = 1 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.DryRunOut == nil {
		cfg.DryRunOut = io.Discard
	}
	im := &Importer{cfg: cfg}
	im.listing.Store(true)
	return im, nil
}

// Progress returns the counts so far; safe while Run runs.
func (im *Importer) Progress() Progress {
	return Progress{
		ObjectsTotal: im.total.Load(), ObjectsDone: im.done.Load(), ObjectsSkipped: im.skipped.Load(), ObjectsFailed: im.failed.Load(),
		BytesRead: im.bytes.Load(), Rows: im.rows.Load(), Events: im.events.Load(), DeadLettered: im.dead.Load(),
		Listing: im.listing.Load(),
	}
}

// errMaxErrors stops the job.
var errMaxErrors = errors.New("too many dead-lettered rows")

// Run imports every matching object not done yet. It returns an error when
// the job could not complete (listing, the queue, the checkpoint, or
// objects whose reading failed: a re-run retries those); dead-lettered
// rows are counted in the Summary, not errors.
func (im *Importer) Run(ctx context.Context) (Summary, error) {
	start := time.Now()
	cfg := im.cfg
	var err error
	im.ck, err = loadCheckpoint(ctx, storeOrNil(cfg), cfg.Queue, cfg.Log, cfg.CheckpointPath, cfg.Job, cfg.Partition, cfg.CheckpointWindow, cfg.DryRun)
	if err != nil {
		return Summary{}, err
	}
	jctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	im.stop = stop

	names := make(chan string, cfg.Parallel)
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		objErrs []error
	)
	for range cfg.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				if jctx.Err() != nil {
					continue
				}
				im.ck.claim(name)
				err := im.object(jctx, name)
				im.ck.release(name)
				if err != nil {
					if jctx.Err() != nil && context.Cause(jctx) != nil {
						continue // stopped: not this object's failure
					}
					im.failed.Add(1)
					cfg.Log.Error("import of an object failed; a re-run of the job retries it", "object", name, "error", err)
					errMu.Lock()
					objErrs = append(objErrs, fmt.Errorf("%s: %w", name, err))
					errMu.Unlock()
				}
			}
		}()
	}
	listErr := im.list(jctx, names)
	close(names)
	wg.Wait()

	sum := Summary{Progress: im.Progress(), Duration: time.Since(start)}
	if cause := context.Cause(jctx); cause != nil && jctx.Err() != nil && ctx.Err() == nil {
		sum.Stopped = cause.Error()
		if !errors.Is(cause, errMaxErrors) {
			return sum, cause
		}
		return sum, nil
	}
	if ctx.Err() != nil {
		sum.Stopped = "interrupted"
		return sum, context.Cause(ctx)
	}
	if listErr != nil {
		return sum, listErr
	}
	if len(objErrs) > 0 {
		return sum, fmt.Errorf("%d objects failed (a re-run of job %q retries them); first: %w", len(objErrs), cfg.Job, objErrs[0])
	}
	return sum, nil
}

func storeOrNil(cfg Config) cas.Store {
	if cfg.Store == nil {
		return nopStore{}
	}
	return cfg.Store
}

// nopStore is the checkpoint store of a dry run without a queue.
type nopStore struct{}

func (nopStore) Read(context.Context, string) ([]byte, cas.Version, error) {
	return nil, "", cas.ErrNotExist
}
func (nopStore) WriteIf(context.Context, string, []byte, cas.Version) (cas.Version, error) {
	return "", errors.New("dry run")
}
func (nopStore) Close() error { return nil }

// list sends the matching object names in name order.
func (im *Importer) list(ctx context.Context, out chan<- string) error {
	defer im.listing.Store(false)
	var all []string
	err := im.cfg.Source.Iter(ctx, im.cfg.Prefix, func(name string) error {
		if strings.HasSuffix(name, "/") || !im.matches(name) {
			return nil
		}
		all = append(all, name)
		im.total.Add(1)
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return fmt.Errorf("list %q in the source bucket: %w", im.cfg.Prefix, err)
	}
	im.listing.Store(false)
	sort.Strings(all)
	for _, n := range all {
		select {
		case out <- n:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

func (im *Importer) matches(name string) bool {
	if im.cfg.Match == "" {
		return true
	}
	subject := path.Base(name)
	if strings.Contains(im.cfg.Match, "/") {
		subject = strings.TrimPrefix(strings.TrimPrefix(name, im.cfg.Prefix), "/")
	}
	ok, _ := path.Match(im.cfg.Match, subject)
	return ok
}

// countingReader counts source bytes and remembers the source's own error,
// which tells a failed read (retry the object later) from damage in what
// was read (dead-letter it).
type countingReader struct {
	r   io.Reader
	n   *atomic.Int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if err != nil && !errors.Is(err, io.EOF) {
		c.err = err
	}
	return n, err
}

// object imports one object.
func (im *Importer) object(ctx context.Context, name string) error {
	cfg := im.cfg
	attrs, err := cfg.Source.Attributes(ctx, name)
	if err != nil {
		return fmt.Errorf("attributes: %w", err)
	}
	prev, had := im.ck.get(name)
	resumeAfter := int64(0)
	if had && prev.sameVersion(attrs.Size, attrs.LastModified) && !cfg.Force {
		if prev.Done {
			im.skipped.Add(1)
			return nil
		}
		resumeAfter = prev.Rows
	} else if had && !prev.sameVersion(attrs.Size, attrs.LastModified) {
		cfg.Log.Warn("object changed since the checkpoint; importing it again from its first row (unchanged rows keep their ids)",
			"object", name, "size", attrs.Size, "modified", attrs.LastModified, "checkpoint_size", prev.Size, "checkpoint_modified", prev.Modified)
	}
	st := ObjectState{Size: attrs.Size, Modified: attrs.LastModified, Rows: resumeAfter}
	w := &objectWriter{im: im, name: name, st: st, vars: Vars{Object: name, ObjectTime: attrs.LastModified.UTC(), seen: &seen{}}}

	if attrs.Size == 0 {
		// An empty object has no rows. (The S3 client's Get of one fails
		// with EOF: an empty export must not fail the job.)
		return w.end(ctx, "")
	}
	rc, err := cfg.Source.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer rc.Close()
	src := &countingReader{r: rc, n: &im.bytes}
	dec, _, err := Decompress(name, src)
	if err != nil {
		if src.err != nil {
			return src.err
		}
		return w.endDamaged(ctx, 1, err)
	}
	defer dec.Close()
	rr, _, err := NewRowReader(name, cfg.Format, dec, cfg.MaxRowBytes)
	if err != nil {
		if src.err != nil {
			return src.err
		}
		return w.endDamaged(ctx, 1, err)
	}
	var last int64 // the last row read
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		row, err := rr.Next()
		var re *RowError
		var se *StreamError
		switch {
		case errors.Is(err, io.EOF):
			if last < resumeAfter {
				// Skipping rows that are not there would hide a damaged
				// or hand-edited checkpoint; the rows after "last" were
				// never checked.
				return fmt.Errorf("checkpoint %s says rows 1..%d of this object are done, but it has only %d rows: the checkpoint was edited or damaged (run again with --force to import the object from its first row)", im.ck.name, resumeAfter, last)
			}
			return w.end(ctx, "")
		case errors.As(err, &re):
			last = re.Row
			if re.Row <= resumeAfter {
				continue
			}
			im.rows.Add(1)
			if err := w.deadLetter(ctx, ReasonRow, re.Row, re.Err, re.Raw); err != nil {
				return err
			}
			w.st.Rows = re.Row
		case errors.As(err, &se):
			if src.err != nil {
				return fmt.Errorf("read: %w", src.err)
			}
			return w.endDamaged(ctx, max(se.Row, resumeAfter+1), se.Err)
		case err != nil:
			return err
		default:
			last = row.N
			if row.N <= resumeAfter {
				continue
			}
			im.rows.Add(1)
			rec, err := Event(cfg.Mapper, row, w.vars)
			if err != nil {
				if err := w.deadLetter(ctx, ReasonRow, row.N, err, row.Raw); err != nil {
					return err
				}
				w.st.Rows = row.N
				continue
			}
			if err := w.add(ctx, row.N, rec); err != nil {
				return err
			}
		}
	}
}

// objectWriter gathers one object's events into Appends and advances its
// checkpoint after each.
type objectWriter struct {
	im   *Importer
	name string
	st   ObjectState // committed progress, plus dead letters after it
	vars Vars
	recs [][]byte
	size int
	upTo int64 // last row in recs
}

func (w *objectWriter) add(ctx context.Context, n int64, rec []byte) error {
	w.recs = append(w.recs, rec)
	w.size += len(rec)
	w.upTo = n
	if len(w.recs) >= w.im.cfg.ChunkRows || w.size >= w.im.cfg.ChunkBytes {
		return w.flush(ctx, false)
	}
	return nil
}

// flush appends the gathered events and, once they are durable, writes
// the checkpoint up to their last row (and any dead-lettered rows after).
func (w *objectWriter) flush(ctx context.Context, done bool) error {
	im := w.im
	if len(w.recs) > 0 {
		if !im.cfg.DryRun {
			if err := appendRetry(ctx, im.cfg.App, w.recs); err != nil {
				return err
			}
		}
		im.events.Add(int64(len(w.recs)))
		w.st.Rows = max(w.st.Rows, w.upTo)
		w.recs, w.size = w.recs[:0], 0
	}
	w.st.Done = done
	return im.ck.set(ctx, w.name, w.st)
}

func (w *objectWriter) end(ctx context.Context, reason string) error {
	w.st.Error = reason
	if err := w.flush(ctx, true); err != nil {
		return err
	}
	w.im.done.Add(1)
	return nil
}

// endDamaged dead-letters the unreadable rest of the object from row on,
// then ends it: reading it again would meet the same damage.
func (w *objectWriter) endDamaged(ctx context.Context, row int64, cause error) error {
	if err := w.deadLetter(ctx, ReasonObject, row, fmt.Errorf("the object is unreadable from row %d on: %w", row, cause), nil); err != nil {
		return err
	}
	return w.end(ctx, fmt.Sprintf("unreadable from row %d on: %v", row, cause))
}

// maxDeadLetterRow bounds the row text kept in a dead letter.
const maxDeadLetterRow = 64 << 10

// deadLetter writes one dead letter (before the checkpoint passes its row)
// and counts it against MaxErrors.
func (w *objectWriter) deadLetter(ctx context.Context, reason string, row int64, cause error, raw []byte) error {
	im := w.im
	idx := int(row)
	msg := fmt.Sprintf("object %s row %d: %v", w.name, row, cause)
	if len(raw) > maxDeadLetterRow {
		raw = raw[:maxDeadLetterRow]
		msg += fmt.Sprintf(" (row text cut to %d bytes)", maxDeadLetterRow)
	}
	name := DeadLetterName(im.cfg.DeadLetterPrefix, im.cfg.Job, w.name, reason, row)
	if im.cfg.DryRun {
		fmt.Fprintf(im.cfg.DryRunOut, "dead letter %s: %s\n", reason, msg)
	} else {
		dl := deadletter.Letter{
			Reason: reason, Location: w.name, RecordIndex: &idx, Error: msg,
			Signal: "events", Encoding: format.EncodingCloudEventsJSON.String(), DeadLettered: time.Now().UTC(),
		}
		if raw != nil {
			dl.Records = [][]byte{bytes.Clone(raw)}
		}
		body, err := deadletter.Encode(dl)
		if err != nil {
			return err
		}
		if err := uploadRetry(ctx, im.cfg.Queue, name, body); err != nil {
			return fmt.Errorf("write dead letter %s: %w", name, err)
		}
	}
	im.cfg.Log.Debug("row dead-lettered", "object", w.name, "row", row, "reason", reason, "error", cause)
	if n := im.dead.Add(1); im.cfg.MaxErrors >= 0 && n > int64(im.cfg.MaxErrors) {
		im.stop(fmt.Errorf("%w: %d dead-lettered, --max-errors %d", errMaxErrors, n, im.cfg.MaxErrors))
	}
	return nil
}

// DeadLetterName is the object of a dead letter of the import: under
// PREFIX/import/JOB/, the source object name path-escaped, then
// REASON-rROW.json. Names are deterministic, so a re-run overwrites the
// dead letters of the rows it meets again instead of adding copies.
func DeadLetterName(prefix, job, object, reason string, row int64) string {
	return fmt.Sprintf("%s/import/%s/%s/%s-r%012d.json", strings.TrimSuffix(prefix, "/"), job, url.PathEscape(object), reason, row)
}

func appendRetry(ctx context.Context, app producer.Appender, recs [][]byte) error {
	wait := 20 * time.Millisecond
	for {
		err := app.Append(ctx, format.EventsHeader, recs)
		if err == nil || !errors.Is(err, producer.ErrBackpressure) {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func uploadRetry(ctx context.Context, bkt objstore.Bucket, name string, body []byte) error {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := bkt.Upload(ctx, name, bytes.NewReader(body))
		if err == nil || attempt == 8 || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
