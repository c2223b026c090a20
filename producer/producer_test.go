package producer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

const manifestPath = "ingest/manifest"

// flakyBucket fails the first failUploads uploads, can delay uploads, and
// counts successful uploads.
type flakyBucket struct {
	objstore.Bucket
	failUploads atomic.Int64
	uploads     atomic.Int64 // successful
	attempts    atomic.Int64
	delay       func(name string, n int64) time.Duration // n = attempt number from 1
}

func (b *flakyBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	n := b.attempts.Add(1)
	if b.delay != nil {
		if d := b.delay(name, n); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if b.failUploads.Add(-1) >= 0 {
		return fmt.Errorf("injected upload failure of %s", name)
	}
	if err := b.Bucket.Upload(ctx, name, r, opts...); err != nil {
		return err
	}
	b.uploads.Add(1)
	return nil
}

type env struct {
	t      *testing.T
	dir    string
	bkt    *flakyBucket
	store  *memstore.Store
	q      *manifest.Queue
	writes atomic.Int64
	m      *Metrics
	p      *Producer
}

// testLogger writes to the test log only on failure-worthy levels.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("PRODUCER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(t *testing.T, cfg Config, setup ...func(*env)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), store: memstore.New(), m: NewMetrics(nil)}
	fs, err := filesystem.NewBucket(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	e.bkt = &flakyBucket{Bucket: fs}
	e.q = manifest.NewQueue(e.store, manifestPath, manifest.Options{
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, RetryTimeout: 2 * time.Second,
		OnWrite: func() { e.writes.Add(1) },
	})
	for _, f := range setup {
		f(e)
	}
	e.p, err = New(e.bkt, e.q, cfg, e.m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.p.Close(ctx)
	})
	return e
}

// committed is one manifest entry with its decoded batch.
type committed struct {
	entry   manifest.Entry
	records [][]byte
}

// readCommitted reads the manifest and decodes every batch it references.
func (e *env) readCommitted() []committed {
	e.t.Helper()
	ctx := context.Background()
	man, err := e.q.Read(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []committed
	for _, en := range man.Entries {
		rc, err := e.bkt.Get(ctx, en.Location)
		if err != nil {
			e.t.Fatalf("entry %d: get %s: %v", en.Sequence, en.Location, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			e.t.Fatal(err)
		}
		b, err := format.DecodeBatch(data)
		if err != nil {
			e.t.Fatalf("entry %d: decode %s: %v", en.Sequence, en.Location, err)
		}
		if !strings.HasPrefix(en.Location, DefaultDataPrefix+"/") || !strings.HasSuffix(en.Location, ".batch") {
			e.t.Errorf("location %q is not %s/{ULID}.batch", en.Location, DefaultDataPrefix)
		}
		checkMetadata(e.t, en, len(b.Records))
		out = append(out, committed{entry: en, records: b.Records})
	}
	return out
}

// checkMetadata checks the invariants of an entry's metadata items.
func checkMetadata(t *testing.T, en manifest.Entry, n int) {
	t.Helper()
	if len(en.Metadata) == 0 {
		t.Fatalf("entry %d has no metadata", en.Sequence)
	}
	if en.Metadata[0].StartIndex != 0 {
		t.Errorf("entry %d: first metadata StartIndex %d, want 0", en.Sequence, en.Metadata[0].StartIndex)
	}
	for i, md := range en.Metadata {
		if _, _, err := format.ParseHeader(md.Payload); err != nil {
			t.Errorf("entry %d metadata %d: %v", en.Sequence, i, err)
		}
		if int(md.StartIndex) >= n {
			t.Errorf("entry %d metadata %d: StartIndex %d beyond %d records", en.Sequence, i, md.StartIndex, n)
		}
		if md.IngestionTimeMs <= 0 {
			t.Errorf("entry %d metadata %d: IngestionTimeMs %d", en.Sequence, i, md.IngestionTimeMs)
		}
		if i > 0 {
			prev := en.Metadata[i-1]
			if md.StartIndex <= prev.StartIndex {
				t.Errorf("entry %d metadata %d: StartIndex %d not after %d", en.Sequence, i, md.StartIndex, prev.StartIndex)
			}
			if bytes.Equal(md.Payload, prev.Payload) {
				t.Errorf("entry %d metadata %d: same header as the previous item (runs must be merged)", en.Sequence, i)
			}
		}
	}
}

// headerOf returns the header of record i from the entry's metadata.
func headerOf(en manifest.Entry, i int) format.Header {
	var h format.Header
	for _, md := range en.Metadata {
		if int(md.StartIndex) > i {
			break
		}
		h, _, _ = format.ParseHeader(md.Payload)
	}
	return h
}

func recs(prefix string, n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		r := fmt.Sprintf("%s-%d-", prefix, i)
		if len(r) < size {
			r += strings.Repeat("x", size-len(r))
		}
		out[i] = []byte(r)
	}
	return out
}

// appendAsync runs Append in a goroutine and returns its result channel.
func appendAsync(p *Producer, h format.Header, records [][]byte) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- p.Append(context.Background(), h, records) }()
	return ch
}

// bubble runs f in a synctest bubble, in parallel with the package's other
// tests. Time in the bubble is a fake clock that moves only when every
// goroutine of the test is blocked: flush intervals, seal timers, backoffs
// and timeouts take no real time, and a duration measured inside is exact.
// newEnv's producer and all it started must end with f (its Close runs as
// a cleanup inside the bubble), or the test fails with a deadlock.
func bubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	t.Parallel()
	synctest.Test(t, f)
}

// settled waits, in a bubble, until every other goroutine is blocked
// without time passing, and fails unless cond then holds.
func settled(t *testing.T, what string, cond func() bool) {
	t.Helper()
	synctest.Wait()
	if !cond() {
		t.Fatalf("waiting for %s: not so once every goroutine is blocked", what)
	}
}

// waitErr returns what an Append sent on ch; in a bubble, 15s of fake time
// without an answer fail the test.
func waitErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("Append did not return")
		return nil
	}
}

// notReturned checks, in a bubble, that the Append of ch is still waiting
// once every goroutine is blocked.
func notReturned(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	synctest.Wait()
	select {
	case err := <-ch:
		t.Fatalf("Append returned (%v) %s", err, what)
	default:
	}
}

// accepted reports how many records sit in the open batch.
func (p *Producer) openRecords() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		return 0
	}
	return p.cur.records
}

var logsHeader = format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf)

func TestAckOnlyAfterCommit(t *testing.T) {
	bubble(t, func(t *testing.T) {
		release := make(chan struct{})
		var entered atomic.Bool
		e := newEnv(t, Config{FlushInterval: 5 * time.Millisecond}, func(e *env) {
			e.store.BeforeWrite = func(string) error {
				entered.Store(true)
				<-release
				return nil
			}
		})
		ch := appendAsync(e.p, format.EventsHeader, recs("a", 3, 20))
		settled(t, "in the manifest write", entered.Load)
		if e.bkt.uploads.Load() != 1 {
			t.Fatalf("uploads = %d before the commit, want 1", e.bkt.uploads.Load())
		}
		notReturned(t, ch, "while its batch was uploaded but not yet committed")
		close(release)
		if err := waitErr(t, ch); err != nil {
			t.Fatal(err)
		}
		got := e.readCommitted()
		if len(got) != 1 || len(got[0].records) != 3 {
			t.Fatalf("committed %+v, want one batch of 3", got)
		}
		if n := val(e.m.BatchSent); n != 1 {
			t.Errorf("BatchSent = %v", n)
		}
		if n := val(e.m.BufferedBytes); n != 0 {
			t.Errorf("BufferedBytes = %v after commit", n)
		}
	})
}

func TestAppendFailsWhenNotDurable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(*env)
	}{
		{"commit always fails", func(e *env) {
			e.store.BeforeWrite = func(string) error { return errors.New("injected manifest outage") }
		}},
		{"upload always fails", func(e *env) { e.bkt.failUploads.Store(1 << 40) }},
	}
	const timeout = 300 * time.Millisecond
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				e := newEnv(t, Config{FlushInterval: 5 * time.Millisecond, CommitTimeout: timeout}, tc.setup)
				start := time.Now()
				err := e.p.Append(context.Background(), format.EventsHeader, recs("a", 2, 10))
				if err == nil {
					t.Fatal("Append succeeded although nothing could be committed")
				}
				// The batch is abandoned at its deadline: a retry pause
				// that would pass it is cut short (virtual time in the
				// bubble, so the bound is exact up to the seal).
				if took := time.Since(start); took < timeout || took > timeout+5*time.Millisecond {
					t.Errorf("Append failed after %v, want CommitTimeout %v", took, timeout)
				}
				if got := e.readCommitted(); len(got) != 0 {
					t.Fatalf("manifest has %d entries", len(got))
				}
				if val(e.m.BufferedBytes) != 0 {
					t.Errorf("failed batch still counted as buffered")
				}
				if val(e.m.UploadFailures)+val(e.m.CommitFailures) == 0 {
					t.Errorf("no failure counted")
				}
			})
		})
	}
}

// checkPauses checks the pauses between retries, each measured in a bubble
// from one attempt's start to the next: pause i is the i-th of one jittered
// backoff from minBackoff to maxBackoff, between half and all of its step
// (internal/backoff). A second backoff or pause on top of it, or one step
// skipped, falls outside.
func checkPauses(t *testing.T, what string, attempts []time.Time, extra time.Duration) {
	t.Helper()
	step := minBackoff
	for i := 1; i < len(attempts); i++ {
		pause := attempts[i].Sub(attempts[i-1]) - extra
		if pause < step/2 || pause > step {
			t.Errorf("%s: pause %d is %v, want one backoff step of %v: in [%v, %v]", what, i, pause, step, step/2, step)
		}
		step = min(2*step, maxBackoff)
	}
}

// TestRetriesUploadFailures: a failed upload is retried after one backoff
// pause, each pause the next step, until it succeeds.
func TestRetriesUploadFailures(t *testing.T) {
	bubble(t, func(t *testing.T) {
		const failures = 8 // steps 20ms ... 1.28s, then the 2s cap
		var attempts []time.Time
		e := newEnv(t, Config{FlushInterval: 5 * time.Millisecond}, func(e *env) {
			e.bkt.delay = func(string, int64) time.Duration {
				attempts = append(attempts, time.Now()) // one upload at a time
				return 0
			}
		})
		e.bkt.failUploads.Store(failures)
		if err := e.p.Append(context.Background(), format.EventsHeader, recs("a", 2, 10)); err != nil {
			t.Fatal(err)
		}
		if n := val(e.m.UploadFailures); n != failures {
			t.Errorf("UploadFailures = %v, want %d", n, failures)
		}
		if len(attempts) != failures+1 {
			t.Fatalf("%d upload attempts, want %d", len(attempts), failures+1)
		}
		checkPauses(t, "upload", attempts, 0)
		if got := e.readCommitted(); len(got) != 1 {
			t.Fatalf("%d entries", len(got))
		}
	})
}

// TestRetriesCommitFailures: a failed manifest commit is retried after one
// backoff pause of internal/backoff's, each the next step up to the cap:
// the commit loop neither pauses twice nor doubles a step on top of it.
// The queue gives up after one write here, so every write is one attempt
// of the producer's own loop.
func TestRetriesCommitFailures(t *testing.T) {
	bubble(t, func(t *testing.T) {
		const (
			failures = 8               // steps 20ms ... 1.28s, then the 2s cap
			giveUp   = time.Nanosecond // the queue's retry timeout: one write per call
		)
		var writes []time.Time
		e := newEnv(t, Config{FlushInterval: 5 * time.Millisecond}, func(e *env) {
			e.q = manifest.NewQueue(e.store, manifestPath, manifest.Options{MinBackoff: time.Millisecond, RetryTimeout: giveUp})
			e.store.BeforeWrite = func(string) error {
				writes = append(writes, time.Now()) // the committer writes one at a time
				if len(writes) <= failures {
					return errors.New("injected manifest outage")
				}
				return nil
			}
		})
		if err := e.p.Append(context.Background(), format.EventsHeader, recs("a", 2, 10)); err != nil {
			t.Fatal(err)
		}
		if n := val(e.m.CommitFailures); n != failures {
			t.Errorf("CommitFailures = %v, want %d", n, failures)
		}
		if len(writes) != failures+1 {
			t.Fatalf("%d manifest writes, want %d", len(writes), failures+1)
		}
		// Each failed call of the queue ends giveUp after its write.
		checkPauses(t, "commit", writes, giveUp)
		if got := e.readCommitted(); len(got) != 1 {
			t.Fatalf("%d entries", len(got))
		}
	})
}

// A write that landed although the queue reported failure must not be
// appended a second time when the producer retries.
func TestUncertainCommitNotDuplicated(t *testing.T) {
	bubble(t, func(t *testing.T) {
		var lost atomic.Int64
		var readsFailUntil atomic.Int64 // unix nanos
		lost.Store(1)
		e := newEnv(t, Config{FlushInterval: 5 * time.Millisecond}, func(e *env) {
			e.q = manifest.NewQueue(e.store, manifestPath, manifest.Options{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond, RetryTimeout: 20 * time.Millisecond})
			e.store.AfterWrite = func(string) error {
				if lost.Add(-1) >= 0 {
					// The queue's own read-back fails too, long enough for
					// its call to give up.
					readsFailUntil.Store(time.Now().Add(100 * time.Millisecond).UnixNano())
					return errors.New("injected lost response")
				}
				return nil
			}
			e.store.BeforeRead = func(string) error {
				if time.Now().UnixNano() < readsFailUntil.Load() {
					time.Sleep(time.Millisecond)
					return errors.New("injected read failure")
				}
				return nil
			}
		})
		if err := e.p.Append(context.Background(), format.EventsHeader, recs("a", 2, 10)); err != nil {
			t.Fatal(err)
		}
		got := e.readCommitted()
		if len(got) != 1 {
			t.Fatalf("manifest has %d entries, want exactly 1 (no duplicate)", len(got))
		}
		if val(e.m.CommitFailures) < 1 {
			t.Fatal("the injected lost response did not reach the producer; test proves nothing")
		}
	})
}

func TestSizeFlushKeepsAppendsWhole(t *testing.T) {
	bubble(t, func(t *testing.T) {
		// Records of 30 bytes cost 34 in the batch; footer is 7.
		e := newEnv(t, Config{FlushInterval: time.Hour, FlushSizeBytes: 100, MinSealInterval: time.Hour})
		a := appendAsync(e.p, format.EventsHeader, recs("a", 2, 30)) // 75 bytes: stays open
		settled(t, "append a accepted", func() bool { return e.p.openRecords() == 2 })
		notReturned(t, a, "before any flush trigger")
		b := appendAsync(e.p, format.EventsHeader, recs("b", 2, 30)) // would make 143: seals a first
		if err := waitErr(t, a); err != nil {
			t.Fatal(err)
		}
		settled(t, "append b accepted", func() bool { return e.p.openRecords() == 2 })
		c := appendAsync(e.p, logsHeader, recs("c", 1, 200)) // larger than the threshold: own batch
		for _, ch := range []<-chan error{b, c} {
			if err := waitErr(t, ch); err != nil {
				t.Fatal(err)
			}
		}
		got := e.readCommitted()
		want := [][][]byte{recs("a", 2, 30), recs("b", 2, 30), recs("c", 1, 200)}
		if len(got) != len(want) {
			t.Fatalf("%d batches, want %d", len(got), len(want))
		}
		for i := range want {
			if !slices.EqualFunc(got[i].records, want[i], bytes.Equal) {
				t.Errorf("batch %d records %q, want %q", i, got[i].records, want[i])
			}
		}
		if h := headerOf(got[2].entry, 0); h != logsHeader {
			t.Errorf("batch 2 header %v, want %v", h, logsHeader)
		}
		if n := val(e.m.BatchCreated); n != 3 {
			t.Errorf("BatchCreated = %v", n)
		}
	})
}

// TestIntervalFlush: with group commit held back by the cost cap, a batch
// is sealed by its flush timer, FlushInterval after its first record: the
// Append is answered then (upload and commit take no time in the bubble).
func TestIntervalFlush(t *testing.T) {
	t.Parallel()
	for _, interval := range []time.Duration{30 * time.Millisecond, 150 * time.Millisecond} {
		t.Run(interval.String(), func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				e := newEnv(t, Config{FlushInterval: interval, MinSealInterval: time.Hour})
				start := time.Now()
				if err := e.p.Append(context.Background(), format.EventsHeader, recs("a", 1, 10)); err != nil {
					t.Fatal(err)
				}
				if took := time.Since(start); took != interval {
					t.Errorf("flushed after %v, want the %v interval", took, interval)
				}
				if got := e.readCommitted(); len(got) != 1 {
					t.Fatalf("%d batches", len(got))
				}
			})
		})
	}
}

func TestGroupCommit(t *testing.T) {
	bubble(t, func(t *testing.T) {
		release := make(chan struct{})
		var calls atomic.Int64
		e := newEnv(t, Config{FlushInterval: time.Hour, FlushSizeBytes: 50, UploadConcurrency: 8}, func(e *env) {
			e.store.BeforeWrite = func(string) error {
				if calls.Add(1) == 1 {
					<-release
				}
				return nil
			}
		})
		const n = 6
		chans := []<-chan error{appendAsync(e.p, format.EventsHeader, recs("r0", 1, 60))}
		settled(t, "first manifest write", func() bool { return calls.Load() == 1 })
		for i := 1; i < n; i++ {
			chans = append(chans, appendAsync(e.p, format.EventsHeader, recs(fmt.Sprintf("r%d", i), 1, 60)))
		}
		settled(t, "all uploads", func() bool { return e.bkt.uploads.Load() == n })
		notReturned(t, chans[0], "while the manifest write is held")
		close(release)
		for _, ch := range chans {
			if err := waitErr(t, ch); err != nil {
				t.Fatal(err)
			}
		}
		if w := e.writes.Load(); w != 2 {
			t.Errorf("%d manifest writes for %d batches, want 2 (the 5 held-up batches in one group)", w, n)
		}
		got := e.readCommitted()
		if len(got) != n {
			t.Fatalf("%d entries, want %d", len(got), n)
		}
		if c, s := groupHist(t, e.m); c != 2 || s != n {
			t.Errorf("CommitGroupEntries: %d groups of %v batches, want 2 of %d", c, s, n)
		}
	})
}

// groupHist returns the sample count and sum of CommitGroupEntries.
func groupHist(t *testing.T, m *Metrics) (uint64, float64) {
	t.Helper()
	var pb dto.Metric
	if err := m.CommitGroupEntries.Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount(), pb.GetHistogram().GetSampleSum()
}

func TestOrderFollowsAcceptanceNotUploadSpeed(t *testing.T) {
	bubble(t, func(t *testing.T) {
		const n = 6
		e := newEnv(t, Config{FlushInterval: time.Hour, FlushSizeBytes: 50, UploadConcurrency: n}, func(e *env) {
			e.bkt.delay = func(_ string, attempt int64) time.Duration {
				// The earliest batches upload slowest.
				return time.Duration(n-attempt) * 40 * time.Millisecond
			}
		})
		var chans []<-chan error
		for i := range n {
			chans = append(chans, appendAsync(e.p, format.EventsHeader, recs(fmt.Sprintf("r%d", i), 1, 60)))
			settled(t, "batch sealed", func() bool { return val(e.m.BatchCreated) == float64(i+1) })
		}
		for _, ch := range chans {
			if err := waitErr(t, ch); err != nil {
				t.Fatal(err)
			}
		}
		got := e.readCommitted()
		if len(got) != n {
			t.Fatalf("%d entries", len(got))
		}
		for i, c := range got {
			if want := fmt.Sprintf("r%d-0-", i); !bytes.HasPrefix(c.records[0], []byte(want)) {
				t.Errorf("sequence %d holds %q, want %s...", c.entry.Sequence, c.records[0], want)
			}
		}
	})
}

func TestBackpressure(t *testing.T) {
	bubble(t, func(t *testing.T) {
		release := make(chan struct{})
		e := newEnv(t, Config{FlushInterval: 5 * time.Millisecond, MaxBufferedBytes: 1000}, func(e *env) {
			e.store.BeforeWrite = func(string) error { <-release; return nil }
		})
		first := appendAsync(e.p, format.EventsHeader, recs("a", 1, 596)) // 600 buffered
		settled(t, "buffered", func() bool { return val(e.m.BufferedBytes) == 600 })
		start := time.Now()
		err := e.p.Append(context.Background(), format.EventsHeader, recs("b", 1, 596))
		if !errors.Is(err, ErrBackpressure) {
			t.Fatalf("err = %v, want ErrBackpressure", err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("backpressure took %v, want at once", time.Since(start))
		}
		if n := val(e.m.Backpressure); n != 1 {
			t.Errorf("Backpressure = %v", n)
		}
		// Still fits.
		small := appendAsync(e.p, format.EventsHeader, recs("c", 1, 396)) // 1000 exactly
		settled(t, "buffered", func() bool { return val(e.m.BufferedBytes) == 1000 })
		close(release)
		for _, ch := range []<-chan error{first, small} {
			if err := waitErr(t, ch); err != nil {
				t.Fatal(err)
			}
		}
		if n := val(e.m.BufferedBytes); n != 0 {
			t.Errorf("BufferedBytes = %v after commit", n)
		}
		if err := e.p.Append(context.Background(), format.EventsHeader, recs("b", 1, 596)); err != nil {
			t.Fatalf("after the commit released memory: %v", err)
		}
		// Larger than the whole bound: refused, never blocks.
		if err := e.p.Append(context.Background(), format.EventsHeader, recs("d", 1, 2000)); !errors.Is(err, ErrBackpressure) {
			t.Fatalf("oversized append: %v", err)
		}
		got := e.readCommitted()
		var all []string
		for _, c := range got {
			for _, r := range c.records {
				all = append(all, string(r[:1]))
			}
		}
		slices.Sort(all)
		if !slices.Equal(all, []string{"a", "b", "c"}) {
			t.Errorf("committed records %v, want a b c (the refused ones never)", all)
		}
	})
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestReuploadBeforeCommitWhenUploadIsOld(t *testing.T) {
	t.Parallel()
	const grace = time.Minute
	cases := []struct {
		name     string
		advance  time.Duration
		reupload bool
	}{
		{"younger than half the grace period", grace/2 - time.Second, false},
		{"older than half the grace period", grace/2 + time.Second, true},
		{"older than the grace period", 2 * grace, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
				var first atomic.Bool
				first.Store(true)
				e := newEnv(t, Config{FlushInterval: 5 * time.Millisecond, GCGracePeriod: grace}, func(e *env) {
					e.store.BeforeWrite = func(string) error {
						if first.Swap(false) {
							// The first commit fails and time passes before the retry.
							clk.Add(tc.advance)
							return errors.New("injected manifest outage")
						}
						return nil
					}
					// One attempt per queue call: the backoff outlasts the timeout.
					e.q = manifest.NewQueue(e.store, manifestPath, manifest.Options{MinBackoff: time.Second, RetryTimeout: 50 * time.Millisecond})
				})
				e.p.now = clk.Now
				want := recs("a", 3, 10)
				if err := e.p.Append(context.Background(), format.EventsHeader, want); err != nil {
					t.Fatal(err)
				}
				var files []string
				err := e.bkt.Iter(context.Background(), DefaultDataPrefix, func(n string) error { files = append(files, n); return nil })
				if err != nil {
					t.Fatal(err)
				}
				got := e.readCommitted()
				if len(got) != 1 || !slices.EqualFunc(got[0].records, want, bytes.Equal) {
					t.Fatalf("committed %+v", got)
				}
				reuploads := val(e.m.Reuploads)
				if tc.reupload {
					if reuploads != 1 || len(files) != 2 {
						t.Fatalf("reuploads %v, files %v; want 1 re-upload and 2 files", reuploads, files)
					}
					// The committed file is the newer one; the old one is an orphan for GC.
					if got[0].entry.Location != files[1] {
						t.Errorf("committed %s, want the re-uploaded %s (files %v)", got[0].entry.Location, files[1], files)
					}
				} else if reuploads != 0 || len(files) != 1 || got[0].entry.Location != files[0] {
					t.Fatalf("reuploads %v, files %v, committed %s; want the first upload committed", reuploads, files, got[0].entry.Location)
				}
				if ts := got[0].entry.Metadata[0].IngestionTimeMs; ts != time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli() {
					t.Errorf("IngestionTimeMs %d is not the clock's time at append", ts)
				}
			})
		})
	}
}

func TestCloseFlushesOpenBatch(t *testing.T) {
	bubble(t, func(t *testing.T) {
		e := newEnv(t, Config{FlushInterval: time.Hour, MinSealInterval: time.Hour})
		ch := appendAsync(e.p, format.EventsHeader, recs("a", 2, 10))
		settled(t, "accepted", func() bool { return e.p.openRecords() == 2 })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// Committed by the time Close returned.
		if got := e.readCommitted(); len(got) != 1 || len(got[0].records) != 2 {
			t.Fatalf("committed %+v", got)
		}
		if err := waitErr(t, ch); err != nil {
			t.Fatal(err)
		}
		if err := e.p.Append(ctx, format.EventsHeader, recs("b", 1, 10)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Append after Close: %v", err)
		}
		if err := e.p.Close(ctx); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestCloseGivesUpWithContext(t *testing.T) {
	bubble(t, func(t *testing.T) {
		e := newEnv(t, Config{FlushInterval: time.Hour, MinSealInterval: time.Hour, CommitTimeout: time.Hour}, func(e *env) {
			e.store.BeforeWrite = func(string) error { return errors.New("injected manifest outage") }
		})
		ch := appendAsync(e.p, format.EventsHeader, recs("a", 2, 10))
		settled(t, "accepted", func() bool { return e.p.openRecords() == 2 })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := e.p.Close(ctx); err == nil {
			t.Fatal("Close reported success although nothing was committed")
		}
		if err := waitErr(t, ch); err == nil {
			t.Fatal("Append acknowledged data that was never committed")
		}
		if err := e.p.Close(context.Background()); err != nil {
			t.Fatalf("second Close after abort: %v", err)
		}
	})
}

func TestConcurrentAppendersExactContents(t *testing.T) {
	t.Parallel()
	for _, comp := range []format.Compression{format.CompressionNone, format.CompressionZstd} {
		t.Run(comp.String(), func(t *testing.T) {
			e := newEnv(t, Config{FlushInterval: 2 * time.Millisecond, FlushSizeBytes: 2048, Compression: comp.String(), UploadConcurrency: 3})
			e.bkt.failUploads.Store(5)
			headers := []format.Header{format.EventsHeader, logsHeader, format.NewHeader(format.SignalMetrics, format.EncodingOTLPProtobuf)}
			const writers, appends = 8, 40
			var wg sync.WaitGroup
			errs := make(chan error, writers*appends)
			for w := range writers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					for a := range appends {
						hi := rng.IntN(len(headers))
						rs := make([][]byte, 1+rng.IntN(3))
						for k := range rs {
							rs[k] = fmt.Appendf(nil, "w%d/a%03d/r%d/h%d/%s", w, a, k, hi, strings.Repeat("z", rng.IntN(100)))
						}
						if err := e.p.Append(context.Background(), headers[hi], rs); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			got := e.readCommitted()
			// Every record exactly once, with its header, and each
			// writer's records in the order it appended them.
			seen := map[string]bool{}
			last := map[string]string{}
			for _, c := range got {
				for i, r := range c.records {
					s := string(r)
					if seen[s] {
						t.Fatalf("record %q committed twice", s)
					}
					seen[s] = true
					parts := strings.Split(s, "/")
					var hi int
					fmt.Sscanf(parts[3], "h%d", &hi)
					if h := headerOf(c.entry, i); h != headers[hi] {
						t.Errorf("record %q has header %v, want %v", s, h, headers[hi])
					}
					key := parts[1] + "/" + parts[2]
					if prev, ok := last[parts[0]]; ok && key <= prev {
						t.Errorf("writer %s: %s committed after %s", parts[0], key, prev)
					}
					last[parts[0]] = key
				}
			}
			total := 0
			for w := range writers {
				rng := rand.New(rand.NewPCG(uint64(w), 1))
				for range appends {
					rng.IntN(len(headers))
					n := 1 + rng.IntN(3)
					for range n {
						rng.IntN(100)
					}
					total += n
				}
			}
			if len(seen) != total {
				t.Errorf("%d records committed, want %d", len(seen), total)
			}
			for i, c := range got {
				if c.entry.Sequence != uint64(i) {
					t.Errorf("entry %d has sequence %d", i, c.entry.Sequence)
				}
			}
			if n := val(e.m.BatchSent); int(n) != len(got) {
				t.Errorf("BatchSent %v, entries %d", n, len(got))
			}
			if val(e.m.BufferedBytes) != 0 {
				t.Errorf("BufferedBytes not back to 0")
			}
			// No orphans without failures: every file is referenced.
			entries, _ := os.ReadDir(filepath.Join(e.dir, DefaultDataPrefix))
			if len(entries) != len(got) {
				t.Errorf("%d files for %d entries", len(entries), len(got))
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	fs, _ := filesystem.NewBucket(t.TempDir())
	q := manifest.NewQueue(memstore.New(), "m", manifest.Options{})
	m := NewMetrics(nil)
	cases := []struct {
		name string
		bkt  objstore.Bucket
		q    *manifest.Queue
		cfg  Config
		m    *Metrics
	}{
		{"nil bucket", nil, q, Config{}, m},
		{"nil queue", fs, nil, Config{}, m},
		{"bad compression", fs, q, Config{Compression: "lz4"}, m},
		{"bad format version", fs, q, Config{FormatVersion: 3}, m},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.bkt, tc.q, tc.cfg, tc.m, nil); err == nil {
				t.Fatal("want error")
			}
		})
	}
	// nil metrics: collectors of its own, registered nowhere.
	p, err := New(fs, q, Config{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.m == nil || p.m == m {
		t.Fatal("nil metrics must get collectors of their own")
	}
	if p.cfg.DataPrefix != DefaultDataPrefix || p.cfg.FlushInterval != DefaultFlushInterval || p.cfg.FlushSizeBytes != DefaultFlushSizeBytes ||
		p.cfg.MaxBufferedBytes != DefaultMaxBufferedBytes || p.cfg.GCGracePeriod != DefaultGCGracePeriod ||
		p.cfg.UploadConcurrency != DefaultUploadConcurrency || p.cfg.CommitTimeout != DefaultCommitTimeout {
		t.Errorf("defaults not applied: %+v", p.cfg)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Append(context.Background(), format.EventsHeader, nil); err != nil {
		t.Errorf("empty append: %v", err)
	}
}

// val reads a counter or gauge (prometheus/testutil needs a module this
// repository does not pin).
func val(c prometheus.Metric) float64 {
	var pb dto.Metric
	if err := c.Write(&pb); err != nil {
		panic(err)
	}
	if pb.Counter != nil {
		return pb.GetCounter().GetValue()
	}
	return pb.GetGauge().GetValue()
}

func TestQueueOptionsCountWrites(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	store := memstore.New()
	q := manifest.NewQueue(store, manifestPath, QueueOptions(m))
	if _, err := q.Append(context.Background(), manifest.NewEntry{Location: "x", Metadata: []manifest.Metadata{{Payload: format.EventsHeader.Bytes()}}}); err != nil {
		t.Fatal(err)
	}
	if n := val(m.ManifestWrites); n != 1 {
		t.Errorf("ManifestWrites{producer} = %v", n)
	}
	var conflicts atomic.Int64
	store.BeforeWrite = func(name string) error {
		if conflicts.Add(1) == 1 {
			cur, _, _ := store.Read(context.Background(), name)
			store.Put(name, cur) // someone else wrote: our version is stale
		}
		return nil
	}
	if _, err := q.Append(context.Background(), manifest.NewEntry{Location: "y", Metadata: []manifest.Metadata{{Payload: format.EventsHeader.Bytes()}}}); err != nil {
		t.Fatal(err)
	}
	if n := val(m.ManifestConflicts); n != 1 {
		t.Errorf("ManifestConflicts{producer} = %v", n)
	}
}

// TestZeroConfigDefaults: a zero Config gets the bucketq command's defaults
// (cmd/bucketq checks the command's side against these constants), and the
// compression default is what the batches are written with.
func TestZeroConfigDefaults(t *testing.T) {
	t.Parallel()
	fs, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	q := manifest.NewQueue(memstore.New(), DefaultManifestPath, QueueOptions(m))
	p, err := New(fs, q, Config{}, m, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"data prefix", p.cfg.DataPrefix, "ingest/data"},
		{"flush interval", p.cfg.FlushInterval, 250 * time.Millisecond},
		{"flush size bytes", p.cfg.FlushSizeBytes, 4 << 20},
		{"compression", p.cfg.Compression, "zstd"},
		{"format version", p.cfg.FormatVersion, format.BatchVersion2},
		{"max buffered bytes", p.cfg.MaxBufferedBytes, int64(128 << 20)},
		{"gc grace period", p.cfg.GCGracePeriod, 10 * time.Minute},
		{"upload concurrency", p.cfg.UploadConcurrency, 4},
		{"commit timeout", p.cfg.CommitTimeout, 2 * time.Minute},
		{"DefaultManifestPath", DefaultManifestPath, "ingest/manifest"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}

	// The default compression is the one batches are written with, and
	// "none" writes none.
	for _, tc := range []struct {
		name string
		cfg  Config
		want format.Compression
	}{
		{"zero", Config{}, format.CompressionZstd},
		{"zstd", Config{Compression: "zstd"}, format.CompressionZstd},
		{"none", Config{Compression: "none"}, format.CompressionNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.FlushInterval = time.Millisecond
			e := newEnv(t, tc.cfg)
			if err := e.p.Append(context.Background(), format.EventsHeader, recs("c", 3, 50)); err != nil {
				t.Fatal(err)
			}
			man, err := e.q.Read(context.Background())
			if err != nil || len(man.Entries) != 1 {
				t.Fatalf("manifest %+v, %v", man, err)
			}
			rc, err := e.bkt.Get(context.Background(), man.Entries[0].Location)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			f, err := format.ReadFooter(data)
			if err != nil {
				t.Fatal(err)
			}
			if f.Compression != tc.want {
				t.Errorf("batch written with %s, want %s", f.Compression, tc.want)
			}
		})
	}
}

// TestDrainAnswersWaitingAppends: with a flush interval far longer than the
// test, an Append waiting on the open batch is answered, with its records
// committed, once Drain is called; Appends after Drain are answered without
// waiting for the interval too; after Close they fail with ErrClosed.
func TestDrainAnswersWaitingAppends(t *testing.T) {
	bubble(t, func(t *testing.T) {
		e := newEnv(t, Config{FlushInterval: time.Hour, MinSealInterval: time.Hour})
		first := appendAsync(e.p, format.EventsHeader, recs("a", 2, 10))
		settled(t, "accepted", func() bool { return e.p.openRecords() == 2 })
		notReturned(t, first, "before Drain, with an hour-long flush interval")

		e.p.Drain()
		if err := waitErr(t, first); err != nil {
			t.Fatalf("waiting Append after Drain: %v", err)
		}
		got := e.readCommitted()
		if len(got) != 1 || len(got[0].records) != 2 || string(got[0].records[0]) != string(recs("a", 2, 10)[0]) {
			t.Fatalf("committed after Drain: %+v", got)
		}

		// Appends still accepted while draining are sealed at once.
		second := appendAsync(e.p, logsHeader, recs("b", 1, 10))
		if err := waitErr(t, second); err != nil {
			t.Fatalf("Append after Drain: %v", err)
		}
		if got := e.readCommitted(); len(got) != 2 || len(got[1].records) != 1 || headerOf(got[1].entry, 0) != logsHeader {
			t.Fatalf("committed after the second Append: %+v", got)
		}
		e.p.Drain() // again: no effect, no panic

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.p.Append(ctx, format.EventsHeader, recs("c", 1, 10)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Append after Close: %v", err)
		}
		e.p.Drain() // after Close: no effect
		if n := len(e.readCommitted()); n != 2 {
			t.Fatalf("%d entries after Close, want 2", n)
		}
	})
}

// TestDamagedManifestFailsAtOnce: a zero-byte or bit-flipped manifest is
// damage; the producer must answer with an error at once, write nothing over
// it, and not hold the request for CommitTimeout (issue 9, items 2 and 11:
// producers held requests ~121 s, then one committed on top of an empty
// object and the consumer's GC deleted every batch it had listed).
func TestDamagedManifestFailsAtOnce(t *testing.T) {
	t.Parallel()
	good := (&manifest.Manifest{NextSequence: 3, Epoch: 2, Entries: []manifest.Entry{
		{Sequence: 2, Location: "ingest/data/old.batch", Metadata: []manifest.Metadata{{Payload: format.EventsHeader.Bytes()}}}}}).Encode()
	flipped := bytes.Clone(good)
	flipped[12] ^= 0x08
	for name, damaged := range map[string][]byte{"zero bytes": {}, "one bit flipped": flipped} {
		t.Run(name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				e := newEnv(t, Config{FlushInterval: time.Millisecond, CommitTimeout: time.Hour, GCGracePeriod: 4 * time.Hour}, func(e *env) {
					e.store.Put(manifestPath, damaged)
				})
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				err := e.p.Append(ctx, format.EventsHeader, [][]byte{[]byte(`{"id":"1"}`)})
				var ce *manifest.CorruptError
				if !errors.As(err, &ce) {
					t.Fatalf("Append = %v, want an error wrapping *manifest.CorruptError", err)
				}
				// Sealed at once, uploaded and refused at the first read:
				// no time passes in the bubble unless something retried.
				if waited := time.Since(start); waited != 0 {
					t.Fatalf("Append failed only after %s: it retried a damaged manifest", waited)
				}
				if cur, _, _ := e.store.Read(ctx, manifestPath); !bytes.Equal(cur, damaged) {
					t.Fatalf("the damaged manifest was overwritten with %d bytes", len(cur))
				}
			})
		})
	}
}
