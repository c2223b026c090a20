package consumer

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/bucketq/bucketq/internal/openmetertest"
)

// TestReadyOnlyWhileHoldingLease walks a consumer through every lease
// state: not started, fencing while the store fails (the error named),
// holding the lease (ready), fenced by a newer consumer, and, for another
// consumer, stopped after a clean stop.
func TestReadyOnlyWhileHoldingLease(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		h.events(1, 1)
		c := h.consumer(h.config(nil), "")
		wantNotReady := func(what, msg string) {
			t.Helper()
			err := c.Ready()
			if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), msg) {
				t.Fatalf("%s: Ready = %v, want ErrNotReady saying %q", what, err, msg)
			}
		}
		wantNotReady("before Run", "not started")

		// The store refuses writes: Run keeps fencing and is not ready.
		var failing atomic.Bool
		failing.Store(true)
		h.store.BeforeWrite = func(string) error {
			if failing.Load() {
				return errors.New("injected: store unavailable")
			}
			return nil
		}
		a := start(c)
		eventually(t, "a fencing failure reported", func() bool {
			err := c.Ready()
			return err != nil && strings.Contains(err.Error(), "injected: store unavailable")
		})
		wantNotReady("while fencing fails", "fencing the queue")

		// The store recovers: the lease is taken and the consumer is ready.
		failing.Store(false)
		eventually(t, "lease held", func() bool { return c.Ready() == nil })
		if !h.om.WaitEvents(1, patience) {
			t.Fatal("ready consumer does not deliver")
		}

		// A newer consumer fences this one.
		if _, err := h.q.Fence(context.Background()); err != nil {
			t.Fatal(err)
		}
		a.fenced(t, "fenced consumer still running")
		wantNotReady("after being fenced", "fenced by a newer consumer")

		// A consumer stopped cleanly is not ready either.
		b := h.consumer(h.config(nil), "")
		rb := start(b)
		eventually(t, "second consumer holds the lease", func() bool { return b.Ready() == nil })
		rb.stop(t)
		if err := b.Ready(); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "stopped") {
			t.Fatalf("after a clean stop: Ready = %v", err)
		}
	})
}
