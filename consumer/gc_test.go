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
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
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
	for _, op := range []string{"delete", "attributes"} {
		t.Run(op, func(t *testing.T) {
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
			c, err := New(fb, h.q, convert.NewRegistry(), sink.NewHTTP(h.om.Endpoint, "", sink.HTTPOptions{Timeout: patience}), cfg, h.m, slog.New(slog.NewTextHandler(&logs, nil)))
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
			waitFor(t, "the failed object deleted by a later cycle", patience, func() bool { return !exists(flaky) })

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
	}
}
