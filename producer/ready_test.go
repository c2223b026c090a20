package producer

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
)

// TestReadyFollowsCommits: Ready stays nil while the store fails for less
// than the threshold, turns to an error naming the failure once it has
// failed for longer with a batch waiting, and is nil again as soon as a
// batch is committed; for a failing upload and for a failing manifest
// commit (CAS).
func TestReadyFollowsCommits(t *testing.T) {
	t.Parallel()
	const threshold = 30 * time.Second
	for _, mode := range []string{"upload", "commit"} {
		t.Run(mode, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				var failing atomic.Bool
				failing.Store(true)
				e := newEnv(t, Config{FlushInterval: 5 * time.Millisecond}, func(e *env) {
					if mode == "upload" {
						e.bkt.failUploads.Store(1 << 40)
						return
					}
					e.q = manifest.NewQueue(e.store, manifestPath, manifest.Options{MinBackoff: time.Millisecond, RetryTimeout: 5 * time.Millisecond})
					e.store.BeforeWrite = func(string) error {
						if failing.Load() {
							return errors.New("injected manifest outage")
						}
						return nil
					}
				})
				if err := e.p.Ready(threshold); err != nil {
					t.Fatalf("fresh producer: Ready = %v", err)
				}
				ch := appendAsync(e.p, format.EventsHeader, recs("a", 2, 10))
				failures := e.m.UploadFailures
				if mode == "commit" {
					failures = e.m.CommitFailures
				}
				// An upload fails at once; the queue reports a failed
				// commit when its 5ms retry timeout ends.
				time.Sleep(10 * time.Millisecond)
				settled(t, "a failure", func() bool { return val(failures) >= 1 })

				if err := e.p.Ready(threshold); err != nil {
					t.Fatalf("failing for 0s: Ready = %v, want nil (under the threshold)", err)
				}
				time.Sleep(threshold - time.Second)
				if err := e.p.Ready(threshold); err != nil {
					t.Fatalf("failing for threshold-1s: Ready = %v, want nil", err)
				}
				time.Sleep(2 * time.Second)
				err := e.p.Ready(threshold)
				if !errors.Is(err, ErrNotReady) {
					t.Fatalf("failing for threshold+1s with a batch waiting: Ready = %v, want ErrNotReady", err)
				}
				if want := "injected"; !strings.Contains(err.Error(), want) {
					t.Errorf("Ready error %q does not name the failure (%q)", err, want)
				}

				// The store recovers: the waiting batch is committed at
				// the next retry and the producer is ready again at once.
				e.bkt.failUploads.Store(0)
				failing.Store(false)
				if err := waitErr(t, ch); err != nil {
					t.Fatalf("append after recovery: %v", err)
				}
				if err := e.p.Ready(threshold); err != nil {
					t.Fatalf("after a commit: Ready = %v, want nil", err)
				}
			})
		})
	}
}

// TestReadyEvidenceExpires: with no batch waiting, a failure stretch counts
// only while its last failure is younger than the threshold, so a producer
// out of rotation (no requests, no commits) comes back.
func TestReadyEvidenceExpires(t *testing.T) {
	bubble(t, func(t *testing.T) {
		const threshold = 30 * time.Second
		e := newEnv(t, Config{FlushInterval: 5 * time.Millisecond, CommitTimeout: 50 * time.Millisecond})
		e.bkt.failUploads.Store(1 << 40)
		// Two requests fail (their batches are abandoned at CommitTimeout),
		// 20s apart.
		if err := waitErr(t, appendAsync(e.p, format.EventsHeader, recs("a", 1, 10))); err == nil {
			t.Fatal("append succeeded on a failing bucket")
		}
		time.Sleep(20 * time.Second)
		if err := waitErr(t, appendAsync(e.p, format.EventsHeader, recs("b", 1, 10))); err == nil {
			t.Fatal("append succeeded on a failing bucket")
		}
		cases := []struct {
			advance time.Duration
			ready   bool
		}{
			{5 * time.Second, true},   // failing 25s: under the threshold
			{10 * time.Second, false}, // failing 35s, last failure 15s ago
			{16 * time.Second, true},  // last failure 31s ago, nothing waiting: stale
		}
		for _, c := range cases {
			time.Sleep(c.advance)
			if err := e.p.Ready(threshold); (err == nil) != c.ready {
				t.Fatalf("after +%s: Ready = %v, want ready=%v", c.advance, err, c.ready)
			}
		}
	})
}

// TestReadyFalseWhenDraining: a producer shutting down leaves rotation.
func TestReadyFalseWhenDraining(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	e.p.Drain()
	if err := e.p.Ready(time.Minute); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotReady) {
		t.Fatalf("after Drain: Ready = %v, want ErrNotReady and ErrClosed", err)
	}
}
