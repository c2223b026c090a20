package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestNextDoublesWithinJitter: each pause lies in [step/2, step], the step
// doubling from Min and capped at Max; Reset starts again from Min.
func TestNextDoublesWithinJitter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		min, max time.Duration
		steps    []time.Duration
	}{
		{"explicit", 100 * time.Millisecond, 500 * time.Millisecond,
			[]time.Duration{100, 200, 400, 500, 500}},
		{"defaults", 0, 0,
			[]time.Duration{200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000}},
		{"max below min", time.Second, time.Millisecond,
			[]time.Duration{1000, 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for round := 0; round < 2; round++ {
				b := New(tc.min, tc.max)
				for i, s := range tc.steps {
					step := s * time.Millisecond
					for k := 0; k < 20; k++ {
						bb := *b
						got := bb.Next()
						if got < step/2 || got > step {
							t.Fatalf("pause %d: %v, want in [%v, %v]", i, got, step/2, step)
						}
					}
					b.Next()
				}
				b.Reset()
				if got := b.Next(); got > tc.steps[0]*time.Millisecond {
					t.Fatalf("after Reset: %v, want <= %v", got, tc.steps[0]*time.Millisecond)
				}
			}
		})
	}
}

// TestSleep: Sleep waits the whole pause, ends early with its context, and
// reports an ended context even for a zero pause.
func TestSleep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(t.Context(), time.Minute); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != time.Minute {
			t.Fatalf("slept %v, want 1m", d)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start = time.Now()
		if err := Sleep(ctx, time.Hour); err != context.DeadlineExceeded {
			t.Fatalf("err %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("slept %v, want 1s", d)
		}
		if err := Sleep(ctx, 0); err != context.DeadlineExceeded {
			t.Fatalf("zero pause on an ended context: %v", err)
		}
		if err := Sleep(t.Context(), 0); err != nil {
			t.Fatalf("zero pause: %v", err)
		}
	})
}
