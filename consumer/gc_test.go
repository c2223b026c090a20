package consumer

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
)

// failOnceBucket fails the first Delete or Attributes call for one object
// with a transient (not not-found) error and counts the calls per object.
type failOnceBucket struct {
	objstore.Bucket
	op, name string // "delete" or "attributes", and the object

	mu    sync.Mutex
	calls map[string]int // op+" "+name -> calls
	fired bool
}

var errInjected = errors.New("injected: storage unavailable")

func (b *failOnceBucket) hit(op, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.calls == nil {
		b.calls = map[string]int{}
	}
	b.calls[op+" "+name]++
	if op == b.op && name == b.name && !b.fired {
		b.fired = true
		return errInjected
	}
	return nil
}

func (b *failOnceBucket) count(op, name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[op+" "+name]
}

func (b *failOnceBucket) Delete(ctx context.Context, name string) error {
	if err := b.hit("delete", name); err != nil {
		return err
	}
	return b.Bucket.Delete(ctx, name)
}

func (b *failOnceBucket) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	if err := b.hit("attributes", name); err != nil {
		return objstore.ObjectAttributes{}, err
	}
	return b.Bucket.Attributes(ctx, name)
}

// TestGCFailureCountedLoggedAndRetriedNextCycle: a GC deletion that fails
// (in the delete itself or in reading the object's age) is counted in
// buffer_gc_files_failed, logged with the object and the error, and the
// object is deleted by a later cycle of Run's GC loop; other garbage is
// deleted in the failing cycle, and nothing referenced or young is touched.
func TestGCFailureCountedLoggedAndRetriedNextCycle(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"delete", "attributes"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, openmetertest.Options{})
				ctx := context.Background()
				old := time.Now().Add(-2 * time.Hour)
				age := func(name string, when time.Time) {
					if err := os.Chtimes(filepath.Join(h.dir, name), when, when); err != nil {
						t.Fatal(err)
					}
				}
				upload := func(name string, when time.Time) {
					if err := h.bkt.Upload(ctx, name, strings.NewReader("x")); err != nil {
						t.Fatal(err)
					}
					age(name, when)
				}
				// A referenced, old batch that stays queued: the sink is down.
				_, ref := h.put([][]byte{event("r")}, nil)
				age(ref, old)
				h.om.FailNext(-1, 503, "")
				const flaky, other, young = "ingest/data/2024/flaky-old.batch", "ingest/data/2024/other-old.batch", "ingest/data/2024/young.batch"
				upload(flaky, old)
				upload(other, old)
				upload(young, time.Now())

				fb := &failOnceBucket{Bucket: h.bkt, op: op, name: flaky}
				var logs syncBuffer
				cfg := h.config(func(c *Config) { c.DisableGC = false; c.GCInterval = 20 * time.Millisecond })
				c, err := New(fb, h.q, convert.NewRegistry(), h.httpSink(""), cfg, h.m, slog.New(slog.NewTextHandler(&logs, nil)))
				if err != nil {
					t.Fatal(err)
				}
				r := start(c)
				defer r.stop(t)
				exists := func(name string) bool {
					ok, err := h.bkt.Exists(ctx, name)
					if err != nil {
						t.Fatal(err)
					}
					return ok
				}
				eventually(t, "the failed object deleted by a later cycle", func() bool { return !exists(flaky) })

				if n := fb.count(op, flaky); n < 2 {
					t.Fatalf("%s of %s called %d times: a later cycle did not retry it", op, flaky, n)
				}
				if v := value(h.m.GCFilesFailed); v != 1 {
					t.Fatalf("buffer_gc_files_failed = %v, want 1", v)
				}
				if v := value(h.m.GCFilesDeleted); v != 2 {
					t.Fatalf("buffer_gc_files_deleted = %v, want 2 (%s and %s)", v, flaky, other)
				}
				var logged string
				for _, line := range strings.Split(logs.String(), "\n") {
					if strings.Contains(line, "gc cycle incomplete") {
						logged = line
						break
					}
				}
				if !strings.Contains(logged, "level=WARN") || !strings.Contains(logged, flaky) || !strings.Contains(logged, errInjected.Error()) || !strings.Contains(logged, "deleted=1") {
					t.Fatalf("the failed cycle's log line %q does not say it deleted 1 and name %s and the error; logs:\n%s", logged, flaky, logs.String())
				}
				for name, want := range map[string]bool{ref: true, young: true, other: false} {
					if exists(name) != want {
						t.Errorf("%s exists = %v, want %v", name, !want, want)
					}
				}
				if h.queueLen() != 1 || len(h.om.Events()) != 0 {
					t.Fatalf("queue %d events %d: the referenced batch was meant to stay queued", h.queueLen(), len(h.om.Events()))
				}
			})
		})
	}
}

// secondsBucket reports modification times in whole seconds, as S3's
// LastModified does, and commits one batch to the manifest the first time
// GC asks for its age: a producer's commit landing just after GC read the
// manifest.
type secondsBucket struct {
	objstore.Bucket
	name   string
	commit func()
	once   sync.Once
}

func (b *secondsBucket) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	if name == b.name {
		b.once.Do(b.commit)
	}
	a, err := b.Bucket.Attributes(ctx, name)
	a.LastModified = a.LastModified.Truncate(time.Second)
	return a, err
}

// TestGCAllowsForWholeSecondTimestamps: a batch 1.4 s old (within the 3/4
// of a 2 s grace period in which a producer may still commit it) when GC
// reads the manifest, and committed just after, must survive although the
// store rounds its age up to 2.3 s. GC compared the rounded time with the
// grace period alone and deleted the batch the manifest now referenced
// (issue 9, item 4: an acknowledged event lost with a short grace period).
func TestGCAllowsForWholeSecondTimestamps(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	ctx := context.Background()
	const grace = 2 * time.Second
	clock := &fakeClock{t: time.Unix(time.Now().Unix(), 100e6)} // x.1 s
	const name = "ingest/data/2024/late-commit.batch"
	if err := h.bkt.Upload(ctx, name, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	mtime := clock.Now().Add(-1400 * time.Millisecond) // x-1.3 s, reported as x-2 s
	if err := os.Chtimes(filepath.Join(h.dir, name), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	fb := &secondsBucket{Bucket: h.bkt, name: name, commit: func() {
		if _, err := h.q.Append(ctx, manifest.NewEntry{Location: name, Metadata: []manifest.Metadata{{Payload: format.EventsHeader.Bytes()}}}); err != nil {
			t.Error(err)
		}
	}}
	cfg := h.config(func(c *Config) { c.GCGracePeriod = grace })
	c, err := New(fb, h.q, convert.NewRegistry(), h.httpSink(""), cfg, h.m, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.now = clock.Now
	if _, err := c.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.bkt.Exists(ctx, name); err != nil || !ok {
		t.Fatalf("GC deleted %s, which the manifest references (exists %v, %v)", name, ok, err)
	}
	// Once it is older than the grace period plus the slack by the store's
	// clock, an unreferenced file goes.
	const orphan = "ingest/data/2024/orphan.batch"
	if err := h.bkt.Upload(ctx, orphan, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	old := clock.Now().Add(-grace - TimestampSlack - time.Second)
	if err := os.Chtimes(filepath.Join(h.dir, orphan), old, old); err != nil {
		t.Fatal(err)
	}
	if n, err := c.CollectGarbage(ctx); err != nil || n != 1 {
		t.Fatalf("second cycle deleted %d, %v; want the orphan", n, err)
	}
}
