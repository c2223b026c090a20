package producer

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// FailureEvidence is passive evidence that writes fail: the failures
// since the last success, and when. The producer's Ready judges its uploads
// and commits by it, and partition.Spreader its Appends across partitions.
// The zero value holds no failure. It is safe for concurrent use.
type FailureEvidence struct {
	mu           sync.Mutex
	failingSince time.Time // first failure since the last success; zero while writes succeed
	lastFailure  time.Time
	lastErr      error
	failures     int // since failingSince
}

// Failed records a failure at now.
func (e *FailureEvidence) Failed(now time.Time, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failingSince.IsZero() {
		e.failingSince, e.failures = now, 0
	}
	e.lastFailure, e.lastErr = now, err
	e.failures++
}

// Succeeded records a success: it clears the failures.
func (e *FailureEvidence) Succeeded() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failingSince, e.lastErr, e.failures = time.Time{}, nil, 0
}

// Failing returns nil unless writes have been failing for at least
// threshold with no success since and the evidence is current: work is
// still waiting, or the last failure is less than threshold old. Then it
// returns an error wrapping ErrNotReady: what (the writes that have not
// succeeded), for how long, how many failures (of the kind failures names)
// and the last one.
func (e *FailureEvidence) Failing(now time.Time, threshold time.Duration, waiting bool, what, failures string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failingSince.IsZero() || now.Sub(e.failingSince) < threshold {
		return nil
	}
	if !waiting && now.Sub(e.lastFailure) >= threshold {
		return nil // stale: nothing tried since
	}
	return fmt.Errorf("%w: %s for %s: %d %s, the last %s ago: %v",
		ErrNotReady, what, now.Sub(e.failingSince).Round(time.Second), e.failures, failures, now.Sub(e.lastFailure).Round(time.Second), e.lastErr)
}

// noteFailure records a failed upload, manifest read or manifest commit.
func (p *Producer) noteFailure(err error) { p.health.Failed(p.now(), err) }

// noteCommitted records a batch committed to the manifest: the store works.
func (p *Producer) noteCommitted() { p.health.Succeeded() }

// ErrNotReady wraps every error Ready returns.
var ErrNotReady = errors.New("producer not ready")

// Ready returns nil while the producer can commit batches, and an error
// wrapping ErrNotReady that names the last failure once batch uploads or
// manifest commits have been failing for at least threshold with no batch
// committed since. A bucket or manifest that fails for less than threshold
// is a blip the retries absorb; one that fails for longer means requests
// sent here wait up to the commit timeout and then get 503, so a load
// balancer should send them to another producer.
//
// The evidence is passive (the producer writes nothing to find out), so it
// expires: once no batch is waiting and the last failure is threshold old,
// Ready returns nil again. Otherwise a producer taken out of rotation would
// get no requests, so no commit, and never come back; if the store still
// fails, the next requests fail again and Ready turns false after
// threshold. A commit clears the failure at once.
//
// Ready also returns ErrClosed (wrapped) once Drain or Close was called, so
// a producer shutting down is taken out of rotation at once.
func (p *Producer) Ready(threshold time.Duration) error {
	p.mu.Lock()
	closing, waiting := p.closed || p.draining, p.unfinished
	p.mu.Unlock()
	if closing {
		return fmt.Errorf("%w: %w", ErrNotReady, ErrClosed)
	}
	return p.health.Failing(p.now(), threshold, waiting > 0, "no batch committed", "upload or manifest failures")
}
