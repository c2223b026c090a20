package consumer

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/internal/openmetertest"
)

// refuseAll is a poison predicate matching every event: the sink answers
// 400 to every request, as behind a misrouted proxy.
func refuseAll(openmetertest.Event) bool { return true }

// startHeld starts a consumer on 2 batches of 3 events that the sink
// refuses one by one: after 2 refusals in a row the breaker holds the
// queue, and with AuthRetryInterval an hour it keeps holding.
func startHeld(t *testing.T) (*harness, *running) {
	h := newHarness(t, openmetertest.Options{Poison: refuseAll})
	h.events(2, 3)
	c, _ := h.loggedConsumer(h.config(func(c *Config) {
		c.MaxConsecutivePoison = 2
		c.AuthRetryInterval = time.Hour
	}))
	return h, start(c)
}

// loggedConsumer builds a consumer on the harness's HTTP sink whose log
// lines go to the returned buffer.
func (h *harness) loggedConsumer(cfg Config) (*Consumer, *syncBuffer) {
	h.t.Helper()
	logs := &syncBuffer{}
	c, err := New(h.bkt, h.q, convert.NewRegistry(), h.httpSink(""), cfg, h.m, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		h.t.Fatal(err)
	}
	return c, logs
}

// poisonIDs returns the ids of the events in the dead letters, sorted.
func (h *harness) poisonIDs() []string {
	h.t.Helper()
	var out []string
	for name, dl := range h.deadLetters() {
		var ev struct{ ID string }
		if dl.Reason != "poison_event" || json.Unmarshal(dl.Event, &ev) != nil {
			h.t.Fatalf("%s: not a poison event dead letter: %+v", name, dl)
		}
		out = append(out, ev.ID)
	}
	slices.Sort(out)
	return out
}

// TestBreakerHoldsQueueWhenSinkRefusesEverything: a sink that answers 400
// to everything gets exactly MaxConsecutivePoison events dead-lettered;
// then the queue is held (nothing more dead-lettered or dequeued, the lag
// grows, an error names the status and the response), retried every
// AuthRetryInterval; once the sink accepts events again the rest is
// delivered in order and nothing more is dead-lettered.
func TestBreakerHoldsQueueWhenSinkRefusesEverything(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		max       int // Config.MaxConsecutivePoison
		per       int // events per batch (3 batches)
		wantDead  int
		wantQueue int // entries left: those not wholly dead-lettered
		batchSize int
	}{
		{name: "threshold 5", max: 5, per: 10, wantDead: 5, wantQueue: 3, batchSize: 4},
		{name: "default threshold 100", max: 0, per: 40, wantDead: 100, wantQueue: 1, batchSize: 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, openmetertest.Options{Poison: refuseAll})
				all := h.events(3, tc.per)
				c, logs := h.loggedConsumer(h.config(func(c *Config) {
					c.MaxConsecutivePoison = tc.max
					c.SinkBatchSize = tc.batchSize
				}))
				r := start(c)
				defer r.stop(t)

				held := h.m.SinkEvents.WithLabelValues("held")
				eventuallyValue(t, "the breaker holding the queue for three retries", func() float64 { return value(held) }, func(v float64) bool { return v >= 3 })
				if got, want := h.poisonIDs(), sortedCopy(all[:tc.wantDead]); !slices.Equal(got, want) {
					t.Fatalf("dead-lettered %d events %v, want the first %d %v", len(got), got, tc.wantDead, want)
				}
				// Entries wholly dead-lettered before the breaker tripped are
				// dequeued while held; the held one and those after it stay.
				eventually(t, fmt.Sprintf("%d entries left in the queue", tc.wantQueue), func() bool { return h.queueLen() == tc.wantQueue })
				if n := len(h.om.Events()); n != 0 {
					t.Fatalf("the refusing sink accepted %d events", n)
				}
				if lag := value(h.m.ConsumerLagSeconds); lag < 59 {
					t.Fatalf("lag %v while held on entries ingested a minute ago", lag)
				}
				out := logs.String()
				for _, want := range []string{"level=ERROR", "SINK REFUSES EVERY EVENT", "status=400", "rejected as poison",
					fmt.Sprintf("consecutive_refused=%d", tc.wantDead), "bucketq dead-letters redrive"} {
					if !strings.Contains(out, want) {
						t.Fatalf("log lacks %q:\n%s", want, out)
					}
				}

				if n := len(h.deadLetters()); n != tc.wantDead {
					t.Fatalf("%d dead letters while held, want %d", n, tc.wantDead)
				}
				if n := h.queueLen(); n != tc.wantQueue {
					t.Fatalf("queue holds %d entries while held, want %d", n, tc.wantQueue)
				}
				h.om.SetPoison(nil) // the operator fixed the route
				eventually(t, "queue drained after the sink recovered", func() bool { return h.queueLen() == 0 })
				// Sorted: concurrent requests arrive in any order.
				if got, want := sortedCopy(ids(h.om.Events())), sortedCopy(all[tc.wantDead:]); !slices.Equal(got, want) || h.om.Duplicates() != 0 {
					t.Fatalf("delivered %v (dups %d), want %v", got, h.om.Duplicates(), want)
				}
				if n := len(h.deadLetters()); n != tc.wantDead {
					t.Fatalf("%d dead letters after recovery, want still %d", n, tc.wantDead)
				}
				if v := value(h.m.SinkEvents.WithLabelValues("dead_lettered")); v != float64(tc.wantDead) {
					t.Fatalf("dead_lettered %v, want %d", v, tc.wantDead)
				}
				if !strings.Contains(logs.String(), "sink accepts events again") {
					t.Fatalf("no recovery log line:\n%s", logs.String())
				}
			})
		})
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestBreakerHeldRetriesAreSlow: held retries are spaced by
// AuthRetryInterval (exactly, on the bubble's clock), not by the short
// backoff.
func TestBreakerHeldRetriesAreSlow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{Poison: refuseAll})
		h.events(1, 4)
		cfg := h.config(func(c *Config) { c.MaxConsecutivePoison = 2 })
		if cfg.AuthRetryInterval <= 2*cfg.MaxBackoff {
			t.Fatalf("AuthRetryInterval %v must be well above MaxBackoff %v for this test to tell them apart", cfg.AuthRetryInterval, cfg.MaxBackoff)
		}
		rs := newRecordingSink(h.httpSink(""))
		r := start(h.consumerWith(cfg, rs))
		held := h.m.SinkEvents.WithLabelValues("held")
		eventuallyValue(t, "three held retries", func() float64 { return value(held) }, func(v float64) bool { return v >= 3 })
		r.stop(t)
		// Requests: [4] 400, [2] 400, [1] dead-lettered, [1] dead-lettered,
		// [2] 400, [1] held, [1] held, ...: from the 6th on, each is a retry of
		// the held event.
		sends := rs.records()
		if len(sends) < 7 {
			t.Fatalf("%d requests, want at least 7", len(sends))
		}
		for i := 6; i < len(sends); i++ {
			if gap := sends[i].start.Sub(sends[i-1].start); gap != cfg.AuthRetryInterval {
				t.Fatalf("held retry %d sent %v after the previous one, want AuthRetryInterval %v", i, gap, cfg.AuthRetryInterval)
			}
		}
		if n := len(h.deadLetters()); n != 2 {
			t.Fatalf("%d dead letters, want 2", n)
		}
	})
}

// TestBreakerStopsPromptlyWhileHeld: a cancel during a (long) held wait
// makes Run return at once, and nothing held is dequeued or dead-lettered.
func TestBreakerStopsPromptlyWhileHeld(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h, r := startHeld(t)
		held := h.m.SinkEvents.WithLabelValues("held")
		eventuallyValue(t, "the breaker holding the queue", func() float64 { return value(held) }, func(v float64) bool { return v >= 1 })
		r.stop(t) // fails unless Run returns within stopPatience, far below the hour
		if n := h.queueLen(); n != 2 {
			t.Fatalf("queue holds %d entries after a stop while held, want 2", n)
		}
		if n := len(h.deadLetters()); n != 2 {
			t.Fatalf("%d dead letters, want 2", n)
		}
	})
}

// TestBreakerNotTrippedByPoisonBursts: bursts of poison events no longer
// than the threshold, separated by good events (within a sink request,
// across requests and across batches), are all dead-lettered and every good
// event delivered: each delivery resets the count. Two request sizes move
// the request boundaries.
func TestBreakerNotTrippedByPoisonBursts(t *testing.T) {
	t.Parallel()
	const max = 3
	// Bursts of 2 at e1-e2 and e8-e9 of every batch (e9 and the next
	// batch's e1 are one good event apart), and one burst of exactly max.
	poison := map[string]bool{"b5-e4": true, "b5-e5": true, "b5-e6": true}
	for b := 1; b <= 5; b++ {
		for _, e := range []int{1, 2, 8, 9} {
			poison[fmt.Sprintf("b%d-e%d", b, e)] = true
		}
	}
	// Concurrency 8 has bursts split across requests in flight together:
	// the breaker still counts in queue order, not in answer order.
	for _, tc := range []struct{ size, conc int }{{4, 0}, {7, 0}, {4, 8}, {7, 8}} {
		size := tc.size
		t.Run(fmt.Sprintf("request size %d concurrency %d", size, tc.conc), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, openmetertest.Options{Poison: openmetertest.PoisonFlag})
			var want, wantDead []string
			for b := 1; b <= 5; b++ {
				var recs [][]byte
				for e := 0; e < 10; e++ {
					id := fmt.Sprintf("b%d-e%d", b, e)
					if poison[id] {
						recs = append(recs, event(id, `{"poison":true}`))
						wantDead = append(wantDead, id)
					} else {
						recs = append(recs, event(id))
						want = append(want, id)
					}
				}
				h.put(recs, nil)
			}
			slices.Sort(wantDead)
			c, logs := h.loggedConsumer(h.config(func(c *Config) {
				c.MaxConsecutivePoison = max
				c.SinkBatchSize = size
				c.SinkConcurrency = tc.conc
			}))
			r := start(c)
			defer r.stop(t)
			waitFor(t, "queue drained", patience, func() bool { return h.queueLen() == 0 })
			// Sorted: concurrent requests arrive in any order.
			if got := sortedCopy(ids(h.om.Events())); !slices.Equal(got, sortedCopy(want)) || h.om.Duplicates() != 0 {
				t.Fatalf("delivered %v (dups %d), want %v", got, h.om.Duplicates(), want)
			}
			if got := h.poisonIDs(); !slices.Equal(got, wantDead) {
				t.Fatalf("dead-lettered %v, want %v", got, wantDead)
			}
			if v := value(h.m.SinkEvents.WithLabelValues("held")); v != 0 {
				t.Fatalf("%v events held by the breaker, want none", v)
			}
			if strings.Contains(logs.String(), "SINK REFUSES EVERY EVENT") {
				t.Fatalf("breaker tripped:\n%s", logs.String())
			}
		})
	}
}

// TestBreakerDisabled: a negative MaxConsecutivePoison (the command's
// max_consecutive_poison: 0) keeps the old policy: a sink refusing
// everything gets the whole queue dead-lettered.
func TestBreakerDisabled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{Poison: refuseAll})
	all := h.events(3, 10)
	c, logs := h.loggedConsumer(h.config(func(c *Config) { c.MaxConsecutivePoison = -1 }))
	r := start(c)
	defer r.stop(t)
	waitFor(t, "queue drained into dead letters", patience, func() bool { return h.queueLen() == 0 })
	if got := h.poisonIDs(); !slices.Equal(got, sortedCopy(all)) {
		t.Fatalf("dead-lettered %v, want every event %v", got, all)
	}
	if v := value(h.m.SinkEvents.WithLabelValues("held")); v != 0 {
		t.Fatalf("%v events held with the breaker disabled", v)
	}
	if strings.Contains(logs.String(), "SINK REFUSES EVERY EVENT") {
		t.Fatalf("breaker tripped while disabled:\n%s", logs.String())
	}
}
