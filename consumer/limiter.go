package consumer

import (
	"context"
	"sync"
	"time"
)

// Adaptive concurrency (in the manner of Vector's adaptive request
// concurrency): the limit on sink requests in flight is adjusted once per
// window of about one round trip.
//
//   - It grows while the round-trip time stays near its moving minimum and
//     the limit was reached in the window (otherwise more room would not be
//     used): doubling until the first decrease (slow start, so a distant
//     sink is filled in a few round trips), then by one.
//   - It shrinks to half on back-pressure (429, 503, other 5xx, timeouts
//     and connection errors) and to 0.9× when the window's mean RTT rose
//     above rttTolerance × the moving minimum + rttSlack: the sink queues
//     requests instead of serving them faster.
//   - It stays within [1, max].
//
// The moving minimum follows the lowest window mean at once and drifts up
// slowly (1/32 of the gap per window), so a sink that became slower for
// good raises it instead of pinning the limit at 1.
const (
	rttTolerance    = 2.0
	rttSlack        = 5 * time.Millisecond
	backoffRatio    = 0.5
	rttRiseRatio    = 0.9
	minRTTDrift     = 32
	minWindowLength = time.Millisecond
	// initialLimit: any metering API serves a few concurrent requests,
	// and starting at 4 saves two round trips of slow start (0.4s at 200ms).
	initialLimit = 4
)

// DefaultMaxSinkConcurrency caps the adaptive limit (Config.MaxSinkConcurrency).
const DefaultMaxSinkConcurrency = 32

// limiter bounds the sink requests in flight and pauses all of them after
// a Retry-After. One run owns it: the run goroutine acquires slots, the
// senders release them and report each request's outcome.
type limiter struct {
	m        *Metrics
	now      func() time.Time
	adaptive bool
	max      int

	mu       sync.Mutex
	limit    int
	inflight int
	// pauseUntil: no request starts before it (a Retry-After, or a hold
	// for an operator error, pauses every sender, not only the one told).
	pauseUntil time.Time

	// Adaptive state.
	slowStart  bool
	minRTT     time.Duration // moving minimum of window means; 0 = none yet
	winStart   time.Time
	winSum     time.Duration
	winN       int
	winBackoff bool // back-pressure seen in the window
	winFull    bool // inflight reached limit in the window
}

// newLimiter returns a fixed limiter when fixed > 0, else an adaptive one
// starting at initialLimit and capped at max.
func newLimiter(fixed, max int, m *Metrics) *limiter {
	l := &limiter{m: m, now: time.Now, limit: fixed, max: fixed}
	if fixed <= 0 {
		l.adaptive, l.limit, l.max, l.slowStart = true, min(initialLimit, max), max, true
	}
	m.SinkConcurrencyLimit.Set(float64(l.limit))
	m.SinkRequestsInFlight.Set(0)
	return l
}

// acquire takes a slot if fewer than limit are in use.
func (l *limiter) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight >= l.limit {
		l.winFull = true
		return false
	}
	l.inflight++
	if l.inflight >= l.limit {
		l.winFull = true
	}
	l.m.SinkRequestsInFlight.Set(float64(l.inflight))
	return true
}

// full records that the limit kept a batch from starting.
func (l *limiter) full() {
	l.mu.Lock()
	l.winFull = true
	l.mu.Unlock()
}

func (l *limiter) release() {
	l.mu.Lock()
	l.inflight--
	l.m.SinkRequestsInFlight.Set(float64(l.inflight))
	l.mu.Unlock()
}

func (l *limiter) active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight
}

// current is the limit now.
func (l *limiter) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// pause keeps every request from starting before until.
func (l *limiter) pause(until time.Time) {
	l.mu.Lock()
	if until.After(l.pauseUntil) {
		l.pauseUntil = until
	}
	l.mu.Unlock()
}

// wait returns once no pause is in force, or ctx's error.
func (l *limiter) wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		d := time.Until(l.pauseUntil)
		l.mu.Unlock()
		if d <= 0 {
			return ctx.Err()
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

// observe records one answered request's round trip.
func (l *limiter) observe(rtt time.Duration) { l.record(rtt, false) }

// backPressure records a request the sink throttled, failed or timed out.
func (l *limiter) backPressure() { l.record(0, true) }

func (l *limiter) record(rtt time.Duration, backoff bool) {
	if !l.adaptive {
		if !backoff {
			l.m.SinkRTTSeconds.Set(rtt.Seconds())
		}
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.winStart.IsZero() {
		l.winStart = now
	}
	if backoff {
		l.winBackoff = true
	} else {
		l.winSum += rtt
		l.winN++
	}
	length := max(l.minRTT, minWindowLength)
	if l.winN > 0 && l.minRTT == 0 {
		length = max(l.winSum/time.Duration(l.winN), minWindowLength)
	}
	if now.Sub(l.winStart) < length {
		return
	}
	l.adjust()
	l.winStart, l.winSum, l.winN, l.winBackoff = now, 0, 0, false
	l.winFull = l.inflight >= l.limit
}

// adjust ends a window: l.mu is held.
func (l *limiter) adjust() {
	var mean time.Duration
	if l.winN > 0 {
		mean = l.winSum / time.Duration(l.winN)
		l.m.SinkRTTSeconds.Set(mean.Seconds())
	}
	switch {
	case l.winBackoff:
		l.limit = max(1, int(float64(l.limit)*backoffRatio))
		l.slowStart = false
	case l.winN > 0 && l.minRTT > 0 && mean > time.Duration(float64(l.minRTT)*rttTolerance)+rttSlack:
		l.limit = max(1, int(float64(l.limit)*rttRiseRatio))
		l.slowStart = false
	case l.winFull:
		if l.slowStart {
			l.limit *= 2
		} else {
			l.limit++
		}
		l.limit = min(l.limit, l.max)
	}
	if l.winN > 0 {
		switch {
		case l.minRTT == 0 || mean < l.minRTT:
			l.minRTT = mean
		default:
			l.minRTT += (mean - l.minRTT) / minRTTDrift
		}
		l.m.SinkRTTMinSeconds.Set(l.minRTT.Seconds())
	}
	l.m.SinkConcurrencyLimit.Set(float64(l.limit))
}

// SinkLimiter is the limiter above (fixed, or adaptive AIMD) for a sender
// outside the consumer's run, such as replay, so that both pace the same
// sink the same way. Acquire blocks for a slot; each request's outcome is
// reported with Observe or BackPressure; Release frees the slot.
type SinkLimiter struct {
	l    *limiter
	free chan struct{} // signalled on each release
}

// NewSinkLimiter returns a limiter fixed at fixed requests in flight when
// fixed > 0, else adaptive up to max (DefaultMaxSinkConcurrency when max
// <= 0). m (NewMetrics(nil) when nil) gets the sink_concurrency_limit,
// sink_requests_in_flight and sink_rtt gauges.
func NewSinkLimiter(fixed, max int, m *Metrics) *SinkLimiter {
	if max <= 0 {
		max = DefaultMaxSinkConcurrency
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &SinkLimiter{l: newLimiter(fixed, max, m), free: make(chan struct{}, 1)}
}

// Acquire takes a slot, waiting for a Release while the limit is reached,
// or returns ctx's error.
func (s *SinkLimiter) Acquire(ctx context.Context) error {
	for !s.l.acquire() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.free:
		}
	}
	return ctx.Err()
}

// Release frees a slot taken by Acquire.
func (s *SinkLimiter) Release() {
	s.l.release()
	select {
	case s.free <- struct{}{}:
	default:
	}
}

// Observe records one answered request's round trip (a 2xx, or a refusal
// answered in time).
func (s *SinkLimiter) Observe(rtt time.Duration) { s.l.observe(rtt) }

// BackPressure records a request the sink throttled, failed or timed out.
func (s *SinkLimiter) BackPressure() { s.l.backPressure() }

// Limit is the current limit on requests in flight.
func (s *SinkLimiter) Limit() int { return s.l.current() }
