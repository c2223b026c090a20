package producer

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// commitHealth is the producer's recent record of uploads and commits, the
// evidence behind Ready.
type commitHealth struct {
	mu           sync.Mutex
	failingSince time.Time // first failure since the last commit; zero while commits succeed
	lastFailure  time.Time
	lastErr      error
	failures     int // since failingSince
}

// noteFailure records a failed upload, manifest read or manifest commit.
func (p *Producer) noteFailure(err error) {
	now := p.now()
	h := &p.health
	h.mu.Lock()
	if h.failingSince.IsZero() {
		h.failingSince = now
		h.failures = 0
	}
	h.lastFailure = now
	h.lastErr = err
	h.failures++
	h.mu.Unlock()
}

// noteCommitted records a batch committed to the manifest: the store works.
func (p *Producer) noteCommitted() {
	h := &p.health
	h.mu.Lock()
	h.failingSince = time.Time{}
	h.lastErr = nil
	h.failures = 0
	h.mu.Unlock()
}

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
	now := p.now()
	h := &p.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failingSince.IsZero() || now.Sub(h.failingSince) < threshold {
		return nil
	}
	if waiting == 0 && now.Sub(h.lastFailure) >= threshold {
		return nil // stale: nothing tried since
	}
	return fmt.Errorf("%w: no batch committed for %s: %d upload or manifest failures, the last %s ago: %v",
		ErrNotReady, now.Sub(h.failingSince).Round(time.Second), h.failures, now.Sub(h.lastFailure).Round(time.Second), h.lastErr)
}
