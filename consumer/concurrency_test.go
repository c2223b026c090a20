package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/internal/openmetertest"
)

// chaoticSink answers each request after a random delay (so requests in
// flight together are answered out of order), fails some with a 500 (so
// their batch is retried while later ones are delivered), and refuses with
// a 400 every request holding a poison event. It records each accepted
// event before it answers.
type chaoticSink struct {
	mu       sync.Mutex
	rng      *rand.Rand
	accepted map[string]int
	maxDelay time.Duration
	inFlight atomic.Int64
	maxSeen  atomic.Int64
}

func (s *chaoticSink) Send(ctx context.Context, evs []json.RawMessage) error {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxSeen.Load()
		if n <= m || s.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	s.mu.Lock()
	delay := time.Duration(s.rng.Int64N(int64(s.maxDelay)))
	fail := s.rng.IntN(6) == 0
	s.mu.Unlock()
	if err := sleep(ctx, delay); err != nil {
		return err
	}
	if fail {
		return &sink.HTTPError{Status: 500}
	}
	var ids []string
	for _, ev := range evs {
		var e struct{ ID string }
		if err := json.Unmarshal(ev, &e); err != nil {
			return err
		}
		if strings.HasPrefix(e.ID, "poison") {
			return &sink.HTTPError{Status: 400, Body: "poison"}
		}
		ids = append(ids, e.ID)
	}
	s.mu.Lock()
	for _, id := range ids {
		s.accepted[id]++
	}
	s.mu.Unlock()
	return nil
}

func (s *chaoticSink) Close() error { return nil }

func (s *chaoticSink) isAccepted(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted[id] > 0
}

// TestDequeueNeverPassesAnUnfinishedEntry models the dequeue rule under
// concurrency: a sink answering out of order after random delays, failing
// some requests (retried while later ones succeed) and refusing poison
// events (bisected and dead-lettered). After every manifest write, every
// entry no longer in the manifest must have had each of its events accepted
// or dead-lettered: the consumer dequeues through the lowest contiguous
// finished sequence, never through the highest.
func TestDequeueNeverPassesAnUnfinishedEntry(t *testing.T) {
	t.Parallel()
	for _, conc := range []int{0, 8} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, openmetertest.Options{})
				events := map[uint64][]string{} // entry sequence -> its event ids
				poison := map[string]bool{}
				for i := range 200 {
					n := 1 + i%5 // entries of 1..5 events: requests straddle entries
					var recs [][]byte
					var idsOf []string
					for j := range n {
						id := fmt.Sprintf("e%d-%d", i, j)
						if (i*7+j)%23 == 0 {
							id = "poison-" + id
							poison[id] = true
						}
						idsOf = append(idsOf, id)
						recs = append(recs, event(id))
					}
					seq, _ := h.put(recs, nil)
					events[seq] = idsOf
				}
				snk := &chaoticSink{rng: rand.New(rand.NewPCG(uint64(conc), 17)), accepted: map[string]int{}, maxDelay: 15 * time.Millisecond}

				var mu sync.Mutex
				var violations []string
				dequeues := 0
				checkDequeued := func() {
					m, err := h.q.Read(context.Background())
					if err != nil {
						return
					}
					left := map[uint64]bool{}
					for _, e := range m.Entries {
						left[e.Sequence] = true
					}
					var deadLettered map[string]bool
					mu.Lock()
					defer mu.Unlock()
					dequeues++
					for seq, idsOf := range events {
						if left[seq] {
							continue
						}
						for _, id := range idsOf {
							if snk.isAccepted(id) {
								continue
							}
							if poison[id] {
								if deadLettered == nil {
									deadLettered = map[string]bool{}
									for _, pid := range h.poisonIDs() {
										deadLettered[pid] = true
									}
								}
								if deadLettered[id] {
									continue
								}
							}
							violations = append(violations, fmt.Sprintf("entry %d dequeued before its event %s was accepted or dead-lettered", seq, id))
						}
					}
				}
				h.store.AfterWrite = func(string) error { checkDequeued(); return nil }

				cfg := h.config(func(c *Config) {
					c.SinkConcurrency = conc
					c.SinkBatchSize = 3
					c.DequeueInterval = time.Nanosecond // dequeue after every answer
				})
				r := start(h.consumerWith(cfg, snk))
				eventually(t, "queue drained", func() bool { return h.queueLen() == 0 })
				r.stop(t)

				mu.Lock()
				defer mu.Unlock()
				if len(violations) > 0 {
					t.Fatalf("%d violations of the dequeue rule in %d manifest writes, first: %s", len(violations), dequeues, violations[0])
				}
				var wantDead []string
				for seq, idsOf := range events {
					for _, id := range idsOf {
						if poison[id] {
							wantDead = append(wantDead, id)
						} else if !snk.isAccepted(id) {
							t.Fatalf("event %s of entry %d never accepted", id, seq)
						}
					}
				}
				slices.Sort(wantDead)
				if got := h.poisonIDs(); !slices.Equal(got, wantDead) {
					t.Fatalf("dead-lettered %v, want %v", got, wantDead)
				}
				t.Logf("%d manifest writes checked; at most %d requests in flight", dequeues, snk.maxSeen.Load())
				if conc > 1 && snk.maxSeen.Load() < 2 {
					t.Fatalf("never more than one request in flight: the test does not exercise concurrency")
				}
			})
		})
	}
}

// rateLimitedSink accepts at most limit requests in any second and answers
// the others 429 with Retry-After: 1.
type rateLimitedSink struct {
	limit    int
	mu       sync.Mutex
	accepted []time.Time
	ok, shed int
	events   map[string]int
}

func (s *rateLimitedSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var evs []struct{ ID string }
	if err := json.NewDecoder(r.Body).Decode(&evs); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	time.Sleep(2 * time.Millisecond)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	recent := s.accepted[:0]
	for _, at := range s.accepted {
		if now.Sub(at) < time.Second {
			recent = append(recent, at)
		}
	}
	s.accepted = recent
	if len(s.accepted) >= s.limit {
		s.shed++
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	s.accepted = append(s.accepted, now)
	s.ok++
	for _, e := range evs {
		s.events[e.ID]++
	}
	w.WriteHeader(http.StatusNoContent)
}

// timedRequest is one request as the consumer made it.
type timedRequest struct {
	start, end time.Time
	status     int
	retryAfter time.Duration
}

// clockedSink is the HTTP sink, recording when each request started and
// when the consumer got its answer.
type clockedSink struct {
	*sink.HTTP
	mu   sync.Mutex
	reqs []timedRequest
}

func (s *clockedSink) SendStatus(ctx context.Context, evs []json.RawMessage) (int, error) {
	start := time.Now()
	status, err := s.HTTP.SendStatus(ctx, evs)
	tr := timedRequest{start: start, end: time.Now(), status: status}
	var he *sink.HTTPError
	if errors.As(err, &he) {
		tr.retryAfter = he.RetryAfter
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, tr)
	s.mu.Unlock()
	return status, err
}

func (s *clockedSink) Send(ctx context.Context, evs []json.RawMessage) error {
	_, err := s.SendStatus(ctx, evs)
	return err
}

// TestRateLimitedSinkSettlesWithoutEarlyRetries: a sink that answers 429
// with Retry-After: 1 above 20 requests/s. The consumer (adaptive
// concurrency, the default) delivers everything at about the allowed rate,
// starts no request before a Retry-After it was given has passed (every
// sender pauses, not only the one told), is not refused more often than
// served, and dead-letters nothing.
func TestRateLimitedSinkSettlesWithoutEarlyRetries(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const (
			allowed = 20 // requests per second
			entries = 60
			per     = 4 // events per entry and per request
		)
		rl := &rateLimitedSink{limit: allowed, events: map[string]int{}}
		h := newHarness(t, openmetertest.Options{})
		h.events(entries, per)
		snk := &clockedSink{HTTP: sink.NewHTTP(openmetertest.InMemoryURL+"/api/v1/events", "", sink.HTTPOptions{Client: openmetertest.HandlerClient(rl)})}
		cfg := h.config(func(c *Config) { c.SinkBatchSize = per })
		began := time.Now()
		r := start(h.consumerWith(cfg, snk))
		eventually(t, "queue drained", func() bool { return h.queueLen() == 0 })
		elapsed := time.Since(began)
		r.stop(t)

		snk.mu.Lock()
		reqs := slices.Clone(snk.reqs)
		snk.mu.Unlock()
		rl.mu.Lock()
		ok, shed, distinct := rl.ok, rl.shed, len(rl.events)
		rl.mu.Unlock()
		t.Logf("%d events in %v: %d requests accepted (%.1f/s, allowed %d/s), %d answered 429",
			entries*per, elapsed, ok, float64(ok)/elapsed.Seconds(), allowed, shed)
		if distinct != entries*per {
			t.Fatalf("sink received %d distinct events, want %d", distinct, entries*per)
		}
		if dls := h.deadLetters(); len(dls) != 0 {
			t.Fatalf("%d dead letters, want none", len(dls))
		}
		if shed == 0 {
			t.Fatalf("the sink never throttled: the test does not exercise Retry-After")
		}
		for _, a := range reqs {
			if a.status != http.StatusTooManyRequests {
				continue
			}
			if a.retryAfter != time.Second {
				t.Fatalf("429 with Retry-After %v, want 1s", a.retryAfter)
			}
			for _, b := range reqs {
				// On the bubble's clock a request that passed the pause
				// check before the 429 was read starts at that same instant.
				if b.start.After(a.end) && b.start.Before(a.end.Add(a.retryAfter)) {
					t.Fatalf("a request started %v after a 429 answered with Retry-After %v", b.start.Sub(a.end), a.retryAfter)
				}
			}
		}
		if shed > ok {
			t.Fatalf("%d requests answered 429 for %d accepted: the consumer keeps hammering a throttling sink", shed, ok)
		}
		// Settles near the allowed rate: generous, a quarter of it.
		if rate := float64(ok) / elapsed.Seconds(); rate < allowed/4 {
			t.Fatalf("%.1f accepted requests/s, want near the allowed %d/s", rate, allowed)
		}
	})
}

// fakeLimiter is a limiter on a clock the test moves.
func fakeLimiter(fixed, max int) (*limiter, *fakeClock, *Metrics) {
	m := NewMetrics(nil)
	l := newLimiter(fixed, max, m)
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l.now = clk.Now
	return l, clk, m
}

// fill takes every slot the limit allows and reports how many it took.
func fill(l *limiter) int {
	n := 0
	for l.acquire() {
		n++
	}
	return n
}

// rounds runs n round trips of rtt with the limiter full: each slot
// answered after rtt and taken again.
func rounds(l *limiter, clk *fakeClock, n int, rtt time.Duration) {
	for range n {
		fill(l)
		clk.Add(rtt)
		for range l.active() {
			l.release()
			l.observe(rtt)
		}
	}
}

func TestAdaptiveLimiterGrowsWhileRTTIsFlat(t *testing.T) {
	t.Parallel()
	l, clk, m := fakeLimiter(0, 32)
	if l.current() != initialLimit {
		t.Fatalf("starts at %d, want %d", l.current(), initialLimit)
	}
	rounds(l, clk, 5, 50*time.Millisecond)
	if got := l.current(); got < 16 {
		t.Fatalf("after 5 flat round trips the limit is %d, want slow start to reach at least 16", got)
	}
	rounds(l, clk, 40, 50*time.Millisecond)
	if got := l.current(); got != 32 {
		t.Fatalf("limit %d after 45 flat round trips, want the cap 32", got)
	}
	if v := value(m.SinkConcurrencyLimit); v != 32 {
		t.Fatalf("sink_concurrency_limit %v, want 32", v)
	}
	if v := value(m.SinkRTTSeconds); v != 0.05 {
		t.Fatalf("sink_rtt_seconds %v, want 0.05", v)
	}
}

func TestAdaptiveLimiterShrinks(t *testing.T) {
	t.Parallel()
	l, clk, _ := fakeLimiter(0, 32)
	rounds(l, clk, 20, 20*time.Millisecond)
	before := l.current()
	// Back-pressure: halved (once per window).
	clk.Add(25 * time.Millisecond)
	l.backPressure()
	if got := l.current(); got != before/2 {
		t.Fatalf("after a 429 the limit is %d, want %d", got, before/2)
	}
	// RTT rising well above its moving minimum: shrinks every round.
	mid := l.current()
	rounds(l, clk, 3, 200*time.Millisecond)
	if got := l.current(); got >= mid {
		t.Fatalf("RTT 10x its minimum: limit %d, was %d", got, mid)
	}
	// Repeated back-pressure never goes below 1.
	for range 20 {
		clk.Add(time.Second)
		l.backPressure()
	}
	if got := l.current(); got != 1 {
		t.Fatalf("limit %d after repeated back-pressure, want 1", got)
	}
	// Growth after a decrease is additive: +1 per round.
	rounds(l, clk, 1, 200*time.Millisecond)
	rounds(l, clk, 1, 200*time.Millisecond)
	if got := l.current(); got > 3 {
		t.Fatalf("limit %d two rounds after a decrease, want additive growth", got)
	}
}

func TestFixedLimiterNeverMoves(t *testing.T) {
	t.Parallel()
	l, clk, m := fakeLimiter(6, 32)
	rounds(l, clk, 10, time.Millisecond)
	for range 5 {
		clk.Add(time.Second)
		l.backPressure()
	}
	if got := fill(l); got != 6 || l.current() != 6 || value(m.SinkConcurrencyLimit) != 6 {
		t.Fatalf("fixed 6: took %d slots, limit %d, gauge %v", got, l.current(), value(m.SinkConcurrencyLimit))
	}
}
