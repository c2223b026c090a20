// Package backoff is bucketq's one retry pause: a jittered exponential
// backoff (each pause between half and all of a step that doubles from Min
// to Max) and a sleep that ends with its context. The queue's manifest
// writes, the producer's uploads, the consumer's fetches, sink requests and
// dead-letter writes, and dead-letter redrive all pause with it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Defaults of the consumer, the producer and redrive: the first pause is
// at most DefaultMin, no pause is longer than DefaultMax.
const (
	DefaultMin = 200 * time.Millisecond
	DefaultMax = 30 * time.Second
)

// Backoff is a jittered exponential backoff. The zero value pauses with
// DefaultMin and DefaultMax. Not safe for concurrent use: each retry loop
// has its own.
type Backoff struct {
	Min, Max time.Duration
	cur      time.Duration
}

// New is a Backoff from min to max; a bound <= 0 takes its default and max
// is at least min.
func New(min, max time.Duration) *Backoff {
	return &Backoff{Min: min, Max: max}
}

// Next returns the next pause, between half and all of the current step,
// and doubles the step up to Max.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	hi = max(hi, lo)
	if b.cur == 0 {
		b.cur = lo
	} else {
		b.cur = min(2*b.cur, hi)
	}
	return Jitter(b.cur)
}

// Reset starts the steps again from Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Jitter returns a duration in [d/2, d].
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx ends, returning ctx's error if it ended
// (at once, without waiting, when d <= 0 and ctx has ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
