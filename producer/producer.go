// Package producer batches records in memory, writes each batch as one object
// to the bucket and commits its location to the manifest queue, and answers
// an Append only once the batch holding its records is durable and committed.
//
// The zero Config gets the same defaults as the bucketq command; each field
// maps to a config key of the command:
//
//	DataPrefix        data_prefix          ingest/data
//	(the queue)       manifest_path        ingest/manifest (DefaultManifestPath)
//	FlushInterval     flush_interval       250ms
//	FlushSizeBytes    flush_size_bytes     4 MiB
//	Compression       compression          zstd
//	MaxBufferedBytes  max_buffered_bytes   128 MiB
//	GCGracePeriod     gc_grace_period      10m
//
// The queue New takes is the manifest package's, with the producer's
// metrics hooks: manifest.NewQueue(store, DefaultManifestPath, QueueOptions(m)).
//
// At shutdown call Drain, wait for in-flight requests, then Close.
package producer

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/backoff"
	"github.com/bucketq/bucketq/internal/defaults"
	"github.com/bucketq/bucketq/manifest"
)

// Config tunes a Producer. Zero fields take their defaults, which are the
// bucketq command's defaults.
type Config struct {
	DataPrefix    string        // default "ingest/data"; batches are {DataPrefix}/{ULID}.batch
	FlushInterval time.Duration // default 250ms; the longest a record waits for its batch to be sealed
	// MinSealInterval is the least time between two seals (the cost cap:
	// each seal is one object PUT and, grouped, at most one manifest CAS).
	// Zero: a batch is sealed as soon as the one before it is committed.
	MinSealInterval   time.Duration
	FlushSizeBytes    int           // default 4 MiB (uncompressed); a batch is sealed when it reaches this size
	Compression       string        // "zstd" (the default, also when empty) or "none"
	MaxBufferedBytes  int64         // memory bound on accepted, uncommitted record bytes; default 128 MiB
	GCGracePeriod     time.Duration // the consumer's GC grace period (must match it); default 10m
	UploadConcurrency int           // batches encoded and uploaded at once; default 4
	CommitTimeout     time.Duration // a sealed batch's time to be uploaded and committed, retries included; default 2m, cut to GCGracePeriod/2 if longer
	// PipelineDepth is how many sealed batches may be unfinished at once
	// (uploading, uploaded or committing), full batches aside. 2, the
	// default: the next batch is uploaded while the one before it is
	// committed, which pays where both stages wait on the network (an
	// object store). 1: the next batch is sealed once the one before it is
	// committed, which pays on a directory bucket, where both stages are
	// this machine's CPU and fsyncs: fewer, larger batches for less CPU per
	// event. AutoPipelineDepth picks by store; the bucketq command does.
	PipelineDepth int
	// FormatVersion is the batch format version written (format.BatchVersion2,
	// checksummed, when zero; format.BatchVersion1 for opendata readers).
	// The manifest version is the queue's (manifest.Options.Version).
	FormatVersion uint16
}

// Defaults of Config, equal to the bucketq command's defaults.
const (
	DefaultDataPrefix        = defaults.DataPrefix
	DefaultManifestPath      = "ingest/manifest" // the queue's path: manifest.NewQueue(store, DefaultManifestPath, QueueOptions(m))
	DefaultFlushInterval     = 250 * time.Millisecond
	DefaultFlushSizeBytes    = 4 << 20
	DefaultCompression       = "zstd"
	DefaultMaxBufferedBytes  = 128 << 20
	DefaultGCGracePeriod     = defaults.GCGracePeriod // the consumer's too
	DefaultUploadConcurrency = 4
	DefaultCommitTimeout     = 2 * time.Minute
	DefaultPipelineDepth     = 2 // AutoPipelineDepth: 1 on a directory bucket
)

// DefaultConfig is the Config a zero Config becomes: every default
// filled in. The bucketq command's option table takes its defaults from it.
func DefaultConfig() Config {
	var c Config
	c.defaults()
	return c
}

func (c *Config) defaults() {
	if c.DataPrefix == "" {
		c.DataPrefix = DefaultDataPrefix
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.FlushSizeBytes <= 0 {
		c.FlushSizeBytes = DefaultFlushSizeBytes
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.MaxBufferedBytes <= 0 {
		c.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if c.GCGracePeriod <= 0 {
		c.GCGracePeriod = DefaultGCGracePeriod
	}
	if c.UploadConcurrency <= 0 {
		c.UploadConcurrency = DefaultUploadConcurrency
	}
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	if c.PipelineDepth <= 0 {
		c.PipelineDepth = DefaultPipelineDepth
	}
	if c.FormatVersion == 0 {
		c.FormatVersion = format.BatchVersion
	}
}

// Retry backoff bounds for uploads and commits.
const (
	minBackoff = 20 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// recordOverhead is what the batch encoding adds to each record (its u32 length).
const recordOverhead = 4

// batch is one batch file in the making, then in flight.
type batch struct {
	enc        *format.Encoder
	meta       []manifest.Metadata
	lastHeader format.Header
	bytes      int64 // accounted against MaxBufferedBytes
	records    int
	deadline   time.Time // real time: sealed + CommitTimeout
	done       chan struct{}
	err        error // valid once done is closed

	// Set by the upload goroutine, read by the committer after uploaded.
	state       batchState
	data        []byte
	name        string    // current object name
	names       []string  // every name it was uploaded under
	uploadStart time.Time // p.now() when the current upload attempt began
}

type batchState uint8

const (
	stateOpen batchState = iota
	stateUploading
	stateUploaded
	stateFailed
)

// Producer implements Appender over a bucket and a manifest queue. It is
// safe for concurrent use.
type Producer struct {
	bkt   objstore.Bucket
	q     *manifest.Queue
	cfg   Config
	codec format.Compression // cfg.Compression parsed
	m     *Metrics
	log   *slog.Logger

	// now is the clock for upload ages and ingestion times; tests replace it.
	now func() time.Time

	entropyMu sync.Mutex
	entropy   *ulid.MonotonicEntropy

	uploadSem chan struct{}
	notify    chan struct{} // wakes the committer
	stop      chan struct{} // ends the committer
	ctx       context.Context
	cancel    context.CancelFunc // aborts all background work (Close timed out)
	inflight  sync.WaitGroup     // sealed, not yet completed batches
	committer sync.WaitGroup

	depth int // cfg.PipelineDepth; BenchmarkSealRule sets it per round

	mu         sync.Mutex
	unfinished int         // sealed batches not yet committed or failed
	uploading  int         // sealed batches whose upload has not ended
	lastSeal   time.Time   // when the last batch was sealed
	capTimer   *time.Timer // seals the open batch when MinSealInterval allows
	closed     bool
	draining   bool // seal each batch as soon as an Append has filled it
	cur        *batch
	timer      *time.Timer
	pending    []*batch // sealed, in seal order, not yet handed to a commit
	buffered   int64

	closeOnce sync.Once

	corrupt atomic.Bool // the last commit found the manifest damaged

	health FailureEvidence // of uploads and commits, for Ready
}

// New returns a running producer. Call Close to flush and stop it. m are its
// metrics (NewMetrics(reg)); nil counts into collectors registered nowhere.
func New(bkt objstore.Bucket, q *manifest.Queue, cfg Config, m *Metrics, log *slog.Logger) (*Producer, error) {
	if bkt == nil {
		return nil, errors.New("producer: nil bucket")
	}
	if q == nil {
		return nil, errors.New("producer: nil manifest queue")
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.Default()
	}
	cfg.defaults()
	codec, err := format.ParseCompression(cfg.Compression)
	if err != nil {
		return nil, fmt.Errorf("producer: Compression: %w", err)
	}
	if format.FooterLen(cfg.FormatVersion) == 0 {
		return nil, fmt.Errorf("producer: unknown batch format version %d (want 1 or 2)", cfg.FormatVersion)
	}
	// A request waits at most CommitTimeout, and GC must never take its
	// batch for an orphan meanwhile. Re-uploading old batches (refreshOld)
	// keeps that true for any timeout, but a commit that outlives the grace
	// period only makes the client wait for a write that is racing GC: give
	// up (5xx, nothing committed) at half the grace period instead.
	if limit := cfg.GCGracePeriod / 2; cfg.CommitTimeout > limit {
		log.Warn("commit timeout cut to half the GC grace period", "commit_timeout", cfg.CommitTimeout, "gc_grace_period", cfg.GCGracePeriod, "effective", limit)
		cfg.CommitTimeout = limit
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Producer{
		bkt:       bkt,
		q:         q,
		cfg:       cfg,
		codec:     codec,
		m:         m,
		log:       log.With("component", "producer", "manifest", q.Path()),
		now:       time.Now,
		entropy:   ulid.Monotonic(rand.Reader, 0),
		depth:     cfg.PipelineDepth,
		uploadSem: make(chan struct{}, cfg.UploadConcurrency),
		notify:    make(chan struct{}, 1),
		stop:      make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
		// The cost cap counts from the start too: with MinSealInterval at
		// or above FlushInterval, batches are sealed by the timer alone.
		lastSeal: time.Now(),
	}
	p.committer.Add(1)
	go p.commitLoop()
	return p, nil
}

// SetClock replaces the clock that stamps ingestion times and ages uploads
// (tests that simulate hours of ingestion). Call it before the first Append.
func (p *Producer) SetClock(now func() time.Time) {
	p.mu.Lock()
	p.now = now
	p.mu.Unlock()
}

// Append implements Appender: it copies records into the open batch and
// waits until that batch is uploaded and committed to the manifest.
func (p *Producer) Append(ctx context.Context, h format.Header, records [][]byte) error {
	if len(records) == 0 {
		return nil
	}
	start := time.Now()
	var size int64
	for _, r := range records {
		size += int64(len(r)) + recordOverhead
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.buffered+size > p.cfg.MaxBufferedBytes {
		buffered := p.buffered
		p.mu.Unlock()
		p.m.Backpressure.Inc()
		return fmt.Errorf("%w (%d bytes buffered, %d more asked, bound %d)", ErrBackpressure, buffered, size, p.cfg.MaxBufferedBytes)
	}
	p.buffered += size
	p.m.BufferedBytes.Set(float64(p.buffered))
	// One Append's records always go into one batch: seal the open batch
	// first if they would push it over the size threshold.
	if p.cur != nil && p.cur.records > 0 && int64(p.cur.enc.Size())+size > int64(p.cfg.FlushSizeBytes) {
		p.sealLocked()
	}
	if p.cur == nil {
		p.openLocked()
	}
	b := p.cur
	nowMs := p.now().UnixMilli()
	for _, r := range records {
		if len(b.meta) == 0 || b.lastHeader != h {
			b.meta = append(b.meta, manifest.Metadata{StartIndex: uint32(b.records), IngestionTimeMs: nowMs, Payload: h.Bytes()})
			b.lastHeader = h
		}
		b.enc.Append(r)
		b.records++
	}
	b.bytes += size
	if p.draining || b.enc.Size() >= p.cfg.FlushSizeBytes {
		p.sealLocked()
	} else {
		p.groupCommitLocked()
	}
	p.mu.Unlock()

	select {
	case <-b.done:
		if b.err != nil {
			return b.err
		}
		p.m.AppendDuration.Observe(time.Since(start).Seconds())
		return nil
	case <-ctx.Done():
		return fmt.Errorf("producer: append gave up waiting for the commit (the records may still be committed): %w", context.Cause(ctx))
	}
}

// openLocked starts a new open batch and its flush timer.
func (p *Producer) openLocked() {
	b := &batch{enc: format.NewEncoderVersion(p.codec, p.cfg.FormatVersion), done: make(chan struct{})}
	p.cur = b
	p.timer = time.AfterFunc(p.cfg.FlushInterval, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cur == b {
			p.sealLocked()
		}
	})
}

// groupCommitLocked seals the open batch as soon as it can be written: when
// no other sealed batch is still being uploaded, fewer than PipelineDepth
// sealed batches are unfinished, and MinSealInterval has passed since the
// last seal. Otherwise the batch keeps gathering records, and is sealed when
// the upload before it ends (finishUpload) or a batch is done (complete),
// when the cost cap allows (capTimer), when it is full, or FlushInterval
// after its first record, whichever comes first. So a lone request costs one
// upload and one commit, and under load batches grow with the time the
// store takes: group commit, as databases do it. At depth 2 the two stages
// overlap: batch N+1 is uploaded while batch N is committed, so an ack
// waits for less than a whole upload-and-commit cycle before its batch is
// sealed; at depth 1 (a directory bucket) it waits for that cycle, and its
// batch holds every record that arrived meanwhile. Commits
// stay one at a time and in seal order (commitLoop), and every batch is
// committed only after its own upload returned, so an ack still means the
// batch file and its manifest entry are both durable. Concurrent uploads of
// small batches (seal whenever fewer than 2, 4 or 8 are unfinished) gave
// fewer events/s on a directory bucket than one batch in flight, a deeper
// pipeline (3 or 4) no consistent gain over 2 (BenchmarkSealRule,
// BENCHMARKS.md §2a), and on a directory bucket depth 1 took a third less
// CPU per event than 2 behind HTTP clients (§2e).
func (p *Producer) groupCommitLocked() {
	b := p.cur
	if b == nil || b.records == 0 || p.uploading > 0 || p.unfinished >= p.depth {
		return
	}
	if wait := p.cfg.MinSealInterval - time.Since(p.lastSeal); wait > 0 {
		if p.capTimer == nil {
			p.capTimer = time.AfterFunc(wait, func() {
				p.mu.Lock()
				defer p.mu.Unlock()
				p.capTimer = nil
				p.groupCommitLocked()
			})
		}
		return
	}
	p.sealLocked()
}

// sealLocked closes the open batch to new records and starts its upload.
func (p *Producer) sealLocked() {
	b := p.cur
	if b == nil {
		return
	}
	p.cur = nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if p.capTimer != nil {
		p.capTimer.Stop()
		p.capTimer = nil
	}
	if b.records == 0 {
		return
	}
	p.unfinished++
	p.uploading++
	p.lastSeal = time.Now()
	b.state = stateUploading
	b.deadline = time.Now().Add(p.cfg.CommitTimeout)
	p.pending = append(p.pending, b)
	p.inflight.Add(1)
	p.m.BatchCreated.Inc()
	go p.upload(b)
}

// newName returns a fresh object name for a batch.
func (p *Producer) newName() string {
	p.entropyMu.Lock()
	id, err := ulid.New(ulid.Timestamp(p.now()), p.entropy)
	if err != nil {
		// Monotonic entropy overflowed within one millisecond: start over
		// with fresh entropy.
		p.entropy = ulid.Monotonic(rand.Reader, 0)
		id = ulid.MustNew(ulid.Timestamp(p.now()), p.entropy)
	}
	p.entropyMu.Unlock()
	return path.Join(p.cfg.DataPrefix, id.String()+".batch")
}

// upload encodes and uploads a sealed batch, retrying until it succeeds or
// its deadline passes, then hands it to the committer.
func (p *Producer) upload(b *batch) {
	select {
	case p.uploadSem <- struct{}{}:
	case <-p.ctx.Done():
		p.finishUpload(b, fmt.Errorf("producer: batch not uploaded: %w", context.Cause(p.ctx)))
		return
	}
	defer func() { <-p.uploadSem }()

	data, err := b.enc.Finish()
	if err != nil {
		p.finishUpload(b, fmt.Errorf("producer: encode batch: %w", err))
		return
	}
	b.enc = nil
	b.data = data
	err = p.putObject(b, b.deadline)
	p.finishUpload(b, err)
}

// putObject uploads b.data under a new name, retrying with jittered
// exponential backoff until deadline. On success it records the name and
// the time the successful attempt began.
func (p *Producer) putObject(b *batch, deadline time.Time) error {
	name := p.newName()
	ctx, cancel := context.WithDeadline(p.ctx, deadline)
	defer cancel()
	bo := backoff.New(minBackoff, maxBackoff)
	for attempt := 1; ; attempt++ {
		began := p.now()
		err := p.bkt.Upload(ctx, name, bytes.NewReader(b.data))
		if err == nil {
			b.name = name
			b.names = append(b.names, name)
			b.uploadStart = began
			return nil
		}
		p.m.UploadFailures.Inc()
		p.noteFailure(fmt.Errorf("upload %s: %w", name, err))
		p.log.Warn("batch upload failed, retrying", "location", name, "attempt", attempt, "bytes", len(b.data), "err", err)
		if backoff.Sleep(ctx, bo.Next()) != nil {
			return fmt.Errorf("producer: upload %s failed after %d attempts: %w (last error: %v)", name, attempt, context.Cause(ctx), err)
		}
	}
}

func (p *Producer) finishUpload(b *batch, err error) {
	p.mu.Lock()
	p.uploading--
	if err != nil {
		b.state = stateFailed
		b.err = err
		p.log.Error("batch upload abandoned", "records", b.records, "err", err)
	} else {
		b.state = stateUploaded
	}
	// The upload stage is free: the open batch may go while this one commits.
	p.groupCommitLocked()
	p.mu.Unlock()
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// complete releases a batch's buffered bytes and wakes its waiters.
func (p *Producer) complete(b *batch, err error) {
	p.mu.Lock()
	p.unfinished--
	p.buffered -= b.bytes
	p.m.BufferedBytes.Set(float64(p.buffered))
	// The pipeline is free: the records gathered meanwhile go now.
	p.groupCommitLocked()
	p.mu.Unlock()
	b.err = err
	b.data = nil
	close(b.done)
	p.inflight.Done()
}

// commitLoop commits uploaded batches in seal order, grouping every
// consecutive uploaded batch at the head of the line into one manifest write.
func (p *Producer) commitLoop() {
	defer p.committer.Done()
	for {
		select {
		case <-p.notify:
		case <-p.stop:
			return
		}
		for {
			group := p.takeHead()
			if len(group) == 0 {
				break
			}
			p.commit(group)
		}
	}
}

// takeHead removes from the head of the line every batch whose upload has
// ended: failed ones are completed with their error, uploaded ones are
// returned for one group commit. It stops at the first batch still uploading.
func (p *Producer) takeHead() []*batch {
	var group, failed []*batch
	p.mu.Lock()
	n := 0
	for ; n < len(p.pending); n++ {
		b := p.pending[n]
		if b.state == stateUploaded {
			group = append(group, b)
		} else if b.state == stateFailed {
			failed = append(failed, b)
		} else {
			break
		}
	}
	p.pending = p.pending[n:]
	p.mu.Unlock()
	for _, b := range failed {
		p.complete(b, b.err)
	}
	return group
}

// commit appends the group's locations to the manifest in one write,
// retrying until success or each batch's deadline. Before each attempt it
// re-uploads any batch whose upload began more than half the GC grace period
// ago, so the consumer's GC cannot have deleted (or delete) a file that the
// manifest is about to reference.
func (p *Producer) commit(group []*batch) {
	// An abort ends a pause early; the loop's top then fails what is left.
	bo := backoff.New(minBackoff, maxBackoff)
	var lastErr error
	uncertain := false
	for attempt := 1; ; attempt++ {
		// Batches past their deadline fail now; the rest keep trying.
		live := group[:0]
		for _, b := range group {
			if p.ctx.Err() != nil || !time.Now().Before(b.deadline) {
				err := lastErr
				if err == nil {
					err = context.Cause(p.ctx)
				}
				if err == nil {
					err = context.DeadlineExceeded
				}
				p.log.Error("batch commit abandoned; the uploaded file is left for GC", "location", b.name, "records", b.records, "err", err)
				p.complete(b, fmt.Errorf("producer: batch %s not committed within %s: %w", b.name, p.cfg.CommitTimeout, err))
				continue
			}
			live = append(live, b)
		}
		group = live
		if len(group) == 0 {
			return
		}

		// After a failed write whose outcome is unknown, see whether it
		// landed before writing again.
		if uncertain {
			rest, err := p.dropCommitted(group)
			if err != nil {
				if p.failIfCorrupt(group, err) {
					return
				}
				lastErr = err
				p.noteFailure(fmt.Errorf("manifest read: %w", err))
				p.log.Warn("manifest read failed while checking an uncertain commit", "err", err)
				p.pause(group, bo)
				continue
			}
			group = rest
			if len(group) == 0 {
				return
			}
		}

		if err := p.refreshOld(group); err != nil {
			lastErr = err
			p.pause(group, bo)
			continue
		}

		entries := make([]manifest.NewEntry, len(group))
		deadline := group[0].deadline
		now := p.now()
		for i, b := range group {
			entries[i] = manifest.NewEntry{Location: b.name, Metadata: b.meta}
			deadline = earliest(deadline, b.deadline)
			// The write must land well before the GC could consider
			// the file old: at most 3/4 of the grace period after the
			// upload began.
			deadline = earliest(deadline, time.Now().Add(b.uploadStart.Add(p.cfg.GCGracePeriod*3/4).Sub(now)))
		}
		ctx, cancel := context.WithDeadline(p.ctx, deadline)
		_, err := p.q.Append(ctx, entries...)
		cancel()
		if err != nil && p.failIfCorrupt(group, err) {
			return
		}
		if err == nil {
			if p.corrupt.Swap(false) {
				p.log.Info("manifest readable again; commits resumed")
			}
			p.noteCommitted()
			p.m.CommitGroupEntries.Observe(float64(len(group)))
			for _, b := range group {
				p.sent(b)
			}
			return
		}
		lastErr = err
		uncertain = true
		p.m.CommitFailures.Inc()
		p.noteFailure(fmt.Errorf("manifest commit: %w", err))
		p.log.Warn("manifest commit failed, retrying", "location", group[0].name, "batches", len(group), "attempt", attempt, "err", err)
		p.pause(group, bo)
	}
}

// pause waits the next backoff step between two commit attempts, but no
// longer than the earliest deadline in group: a batch whose CommitTimeout
// passes during the pause is failed at its deadline by the loop's top, not
// up to maxBackoff later (its request would have waited that much longer
// for the same 503).
func (p *Producer) pause(group []*batch, bo *backoff.Backoff) {
	d := bo.Next()
	for _, b := range group {
		d = min(d, time.Until(b.deadline))
	}
	_ = backoff.Sleep(p.ctx, d)
}

// failIfCorrupt fails the whole group at once if err says the manifest is
// damaged: retrying cannot mend it, and holding requests for CommitTimeout
// only to answer 503 then (issue 9, item 11) helps no one. It logs once per
// stretch of damage, and reports whether it failed the group.
func (p *Producer) failIfCorrupt(group []*batch, err error) bool {
	var ce *manifest.CorruptError
	if !errors.As(err, &ce) {
		return false
	}
	if !p.corrupt.Swap(true) {
		p.log.Error("manifest is damaged: refusing every commit until it is repaired (see bucketq repair manifest); requests get 503", "err", err)
	}
	p.m.CommitFailures.Inc()
	p.noteFailure(fmt.Errorf("manifest damaged: %w", err))
	for _, b := range group {
		p.complete(b, fmt.Errorf("producer: batch %s not committed: %w", b.name, err))
	}
	return true
}

// dropCommitted completes the batches of group already in the manifest
// (under any of their names) and returns the others.
func (p *Producer) dropCommitted(group []*batch) ([]*batch, error) {
	ctx, cancel := context.WithDeadline(p.ctx, group[0].deadline)
	defer cancel()
	m, err := p.q.Read(ctx)
	if err != nil {
		return group, err
	}
	in := make(map[string]bool, len(m.Entries))
	for _, e := range m.Entries {
		in[e.Location] = true
	}
	var rest []*batch
	for _, b := range group {
		committed := false
		for _, n := range b.names {
			if in[n] {
				committed = true
				b.name = n
				break
			}
		}
		if committed {
			p.noteCommitted()
			p.sent(b)
		} else {
			rest = append(rest, b)
		}
	}
	return rest, nil
}

// sent counts b as committed and answers its records.
func (p *Producer) sent(b *batch) {
	p.m.BatchSent.Inc()
	p.m.BatchBytes.Observe(float64(len(b.data)))
	p.m.BatchRecords.Observe(float64(b.records))
	p.complete(b, nil)
}

// refreshOld re-uploads, under a new name, every batch of group whose upload
// began more than half the GC grace period ago. The old file is left for GC.
func (p *Producer) refreshOld(group []*batch) error {
	for _, b := range group {
		if p.now().Sub(b.uploadStart) <= p.cfg.GCGracePeriod/2 {
			continue
		}
		old := b.name
		p.m.Reuploads.Inc()
		if err := p.putObject(b, b.deadline); err != nil {
			return err
		}
		p.log.Info("batch re-uploaded before commit: its first upload was older than half the GC grace period", "old_location", old, "location", b.name)
	}
	return nil
}

// Drain seals the open batch now and, from then on, seals each Append's
// batch as soon as its records are in it instead of after FlushInterval. So
// every Append already waiting, and every one still to come, is answered as
// soon as its batch is uploaded and committed. Appends are still accepted
// until Close. Call it when shutting down, before waiting for in-flight
// requests to finish: they wait on the open batch, which would otherwise
// stay open until FlushInterval. Drain does not wait; calling it again, or
// after Close, does nothing more.
func (p *Producer) Drain() {
	p.mu.Lock()
	p.draining = true
	p.sealLocked()
	p.mu.Unlock()
}

// Close stops accepting appends (they fail with ErrClosed), seals and
// flushes the open batch, and waits for every upload and commit or for ctx.
// If ctx ends first, background work is aborted, the waiting appends fail,
// and Close returns ctx's error. Close is safe to call more than once.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.sealLocked()
	p.mu.Unlock()

	idle := make(chan struct{})
	go func() {
		p.inflight.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		p.closeOnce.Do(func() {
			close(p.stop)
			p.committer.Wait()
			p.cancel()
		})
		return nil
	case <-ctx.Done():
		p.cancel()
		// Wake the committer so it fails what is left, and stop it once
		// every batch has been completed.
		select {
		case p.notify <- struct{}{}:
		default:
		}
		go func() {
			<-idle
			p.closeOnce.Do(func() {
				close(p.stop)
				p.committer.Wait()
			})
		}()
		return fmt.Errorf("producer: close gave up waiting for uploads and commits: %w", context.Cause(ctx))
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
