// Package consumer delivers the queue: the single (epoch-fenced) reader of a
// manifest that fetches batches in sequence order, converts their records to
// CloudEvents, forwards them to a sink at least once, dequeues what was
// delivered, and garbage-collects batch files no longer referenced.
//
// # Delivery guarantee
//
// An entry is complete once every event converted from it was accepted by
// the sink or written to the dead-letter prefix, and every record that could
// not be converted was dead-lettered. Entries are dequeued (one manifest
// write) through the highest sequence up to which all entries are complete,
// after every sink flush and when idle. Nothing is dequeued before it is
// complete, and no failure of the sink drops events: 429/503 honour
// Retry-After, other 5xx, timeouts and connection errors back off
// exponentially (with jitter, capped at MaxBackoff) forever, 401/403, any
// 3xx (the sink never follows a redirect) and other configuration errors
// retry every AuthRetryInterval with error logs,
// and a 400 (413, 422) bisects the request until the rejected events are
// isolated and dead-lettered with the server's answer. A breaker bounds the
// dead-lettering: after MaxConsecutivePoison events in a row refused alone,
// further refusals hold the queue (retried every AuthRetryInterval, logged
// at error level, gauge sink_breaker_open at 1) instead of dead-lettering
// it, until the sink accepts an event again.
//
// Bound on redelivery: after a crash, or a failed dequeue write, the next
// consumer re-sends exactly the events of the entries that were delivered
// since the last successful dequeue. While busy the consumer dequeues at most
// once per DequeueInterval (default 1s, to leave the manifest's write budget
// to the producers), so in the normal case that is about one DequeueInterval
// of delivered events plus the sink requests in flight or answered behind an
// unfinished one (at most the concurrency limit × SinkBatchSize events: no
// batch starts more than the limit past the oldest unfinished one); it is
// everything delivered since the last successful dequeue if dequeue writes
// were failing.
//
// # Concurrency
//
// Up to SinkConcurrency sink requests are in flight (adaptive by default,
// see limiter.go). They are started in queue order but may be answered in
// any order; an entry completes only when its events and every earlier
// entry's are done, a 400 is bisected only once every earlier request is
// resolved (the breaker counts in queue order), a Retry-After pauses every
// request and a held event stops new ones. Event ids are stable
// (converters are deterministic), so the metering API deduplicates them.
//
// # Unreadable data
//
// A referenced batch that is missing or cannot be decoded, or whose
// metadata is malformed, is counted (buffer_batches_unreadable), logged at
// error level with its location, recorded in a dead-letter marker object
// (with a copy of the batch bytes when there are any), and skipped: the queue
// moves on. A record the converter cannot read at all, or whose
// signal/encoding has no converter, is dead-lettered likewise; when only some
// items of a record fail (an OTLP log record without a subject), the other
// items are delivered and one dead letter lists the failed ones. Dead-letter writes are retried until
// they succeed; only then does the entry count as complete.
//
// # Garbage collection
//
// A GC cycle lists DataPrefix first and reads the manifest second, then
// (with a journal) the live journal segments, and deletes listed objects
// that neither references and that are older than GCGracePeriod. Listing first makes a batch committed during the
// listing referenced; the grace period protects batches uploaded but not yet
// committed (producers re-upload batches older than half of it).
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/internal/backoff"
	"github.com/bucketq/bucketq/internal/defaults"
	"github.com/bucketq/bucketq/internal/objname"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
)

// Config tunes a consumer. Zero fields take their defaults.
type Config struct {
	DataPrefix       string        // default "ingest/data"
	DeadLetterPrefix string        // default "ingest/dead-letter"
	PollInterval     time.Duration // default 1s
	Prefetch         int           // default 4 batches in flight
	SinkBatchSize    int           // default 500 events
	GCInterval       time.Duration // default 5m
	GCGracePeriod    time.Duration // default 10m
	// DequeueInterval spaces the consumer's dequeue writes while it is
	// busy: at most one per interval, so the consumer does not take the
	// manifest's conditional-write budget (~15 writes/s per object on S3
	// Standard) from the producers. Whatever is complete is still dequeued
	// at once when the queue runs empty and on a clean stop. It bounds the
	// redelivery after a crash to about one interval of delivered events.
	// Default 1s.
	DequeueInterval time.Duration
	// SinkConcurrency fixes how many sink requests (of up to
	// SinkBatchSize events each) are in flight; 0 (the default) adapts it
	// between 1 and MaxSinkConcurrency to the sink's round trip and
	// back-pressure (see limiter.go). 1 is the old one-at-a-time
	// delivery, in which the sink also receives the events in manifest
	// order.
	SinkConcurrency int
	// MaxSinkConcurrency caps the adaptive limit. Default 32.
	MaxSinkConcurrency int

	// MinBackoff and MaxBackoff bound the jittered exponential backoff of
	// sink, fetch and dead-letter retries. Defaults 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// AuthRetryInterval is the pause after a 401/403 (or another answer
	// that only an operator can fix). Default 30s.
	AuthRetryInterval time.Duration
	// MaxRetryAfter caps an honoured Retry-After. Default 10m.
	MaxRetryAfter time.Duration
	// MaxConsecutivePoison is the breaker of the 400 policy: once this
	// many events in a row were refused alone by the sink (dead-lettered,
	// with no event delivered in between), a further refusal is taken as
	// the sink refusing everything (a misrouted URL, a gateway answering
	// 400, a wrong API version): the next event is held, not
	// dead-lettered, and retried every AuthRetryInterval with error logs
	// until the sink accepts it; then the count restarts and refused
	// events are dead-lettered again. Default 100; negative disables the
	// breaker (every event refused alone is dead-lettered).
	MaxConsecutivePoison int
	// DisableGC turns off the periodic GC of Run (CollectGarbage still works).
	DisableGC bool
	// Journal, if set, records every entry before its dequeue (RFC 0004):
	// the dequeue waits until the segment is written, and GC keeps the
	// batch files of live segments and deletes expired segments. Nil turns
	// the journal off.
	Journal *journal.Journal
}

// DefaultConfig is the Config a zero Config becomes: every default
// filled in. The bucketq command's option table takes its defaults from it.
func DefaultConfig() Config {
	var c Config
	c.defaults()
	return c
}

func (c *Config) defaults() {
	if c.DataPrefix == "" {
		c.DataPrefix = defaults.DataPrefix // the producer's too
	}
	if c.DeadLetterPrefix == "" {
		c.DeadLetterPrefix = deadletter.DefaultPrefix
	}
	c.DataPrefix = strings.Trim(c.DataPrefix, "/")
	c.DeadLetterPrefix = strings.Trim(c.DeadLetterPrefix, "/")
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.DequeueInterval <= 0 {
		c.DequeueInterval = time.Second
	}
	if c.Prefetch <= 0 {
		c.Prefetch = 4
	}
	if c.SinkBatchSize <= 0 {
		c.SinkBatchSize = 500
	}
	if c.SinkConcurrency < 0 {
		c.SinkConcurrency = 0
	}
	if c.MaxSinkConcurrency <= 0 {
		c.MaxSinkConcurrency = DefaultMaxSinkConcurrency
	}
	if c.GCInterval <= 0 {
		c.GCInterval = 5 * time.Minute
	}
	if c.GCGracePeriod <= 0 {
		c.GCGracePeriod = defaults.GCGracePeriod // the producer's too
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = backoff.DefaultMin
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = backoff.DefaultMax
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.AuthRetryInterval <= 0 {
		c.AuthRetryInterval = 30 * time.Second
	}
	if c.MaxRetryAfter <= 0 {
		c.MaxRetryAfter = sink.DefaultMaxRetryAfter
	}
	if c.MaxConsecutivePoison == 0 {
		c.MaxConsecutivePoison = 100
	}
}

// Consumer is the single reader of one manifest.
type Consumer struct {
	bkt  objstore.Bucket
	q    *manifest.Queue
	conv convert.Converter
	snk  sink.Sink
	cfg  Config
	m    *Metrics
	log  *slog.Logger
	now  func() time.Time

	gcMu sync.Mutex // one GC cycle at a time

	lease leaseStatus // for Ready
}

// New returns a consumer. It refuses prefixes that overlap, because GC
// deletes every unreferenced object under DataPrefix.
func New(bkt objstore.Bucket, q *manifest.Queue, conv convert.Converter, snk sink.Sink, cfg Config, m *Metrics, log *slog.Logger) (*Consumer, error) {
	switch {
	case bkt == nil:
		return nil, errors.New("consumer: nil bucket")
	case q == nil:
		return nil, errors.New("consumer: nil queue")
	case conv == nil:
		return nil, errors.New("consumer: nil converter")
	case snk == nil:
		return nil, errors.New("consumer: nil sink")
	}
	cfg.defaults()
	// GC deletes by prefix, so every name must be clean (no "./ingest" that
	// a textual check would take for another prefix) before the overlap
	// checks; the command checks the same with internal/objname.
	var err error
	if cfg.DataPrefix, err = objname.Prefix(cfg.DataPrefix); err != nil {
		return nil, fmt.Errorf("consumer: DataPrefix: %w", err)
	}
	if cfg.DeadLetterPrefix, err = objname.Prefix(cfg.DeadLetterPrefix); err != nil {
		return nil, fmt.Errorf("consumer: DeadLetterPrefix: %w", err)
	}
	if err := objname.Check(q.Path()); err != nil {
		return nil, fmt.Errorf("consumer: manifest path: %w", err)
	}
	if objname.Overlap(cfg.DeadLetterPrefix, cfg.DataPrefix) {
		return nil, fmt.Errorf("consumer: DeadLetterPrefix %q and DataPrefix %q overlap; GC would delete dead letters", cfg.DeadLetterPrefix, cfg.DataPrefix)
	}
	if cfg.Journal != nil && objname.Overlap(cfg.Journal.Prefix(), cfg.DataPrefix) {
		return nil, fmt.Errorf("consumer: journal prefix %q and DataPrefix %q overlap; GC would delete journal segments", cfg.Journal.Prefix(), cfg.DataPrefix)
	}
	if objname.Within(q.Path(), cfg.DataPrefix) {
		return nil, fmt.Errorf("consumer: manifest %q is under DataPrefix %q; GC would delete it", q.Path(), cfg.DataPrefix)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Consumer{bkt: bkt, q: q, conv: conv, snk: snk, cfg: cfg, m: m, log: log, now: time.Now}, nil
}

// newBackoff is the jittered exponential backoff of one retry loop.
func (c *Consumer) newBackoff() *backoff.Backoff {
	return backoff.New(c.cfg.MinBackoff, c.cfg.MaxBackoff)
}

// sleep waits d or until ctx ends; it reports whether ctx ended.
func sleep(ctx context.Context, d time.Duration) error { return backoff.Sleep(ctx, d) }
