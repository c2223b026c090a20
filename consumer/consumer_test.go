package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

type harness struct {
	t     *testing.T
	dir   string
	bkt   objstore.Bucket
	store *memstore.Store
	q     *manifest.Queue
	om    *openmetertest.Server
	m     *Metrics
	n     int
}

func newHarness(t *testing.T, opts openmetertest.Options) *harness {
	t.Helper()
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	h := &harness{
		t: t, dir: dir, bkt: bkt, store: store,
		q:  manifest.NewQueue(store, "ingest/manifest", manifest.Options{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, RetryTimeout: 300 * time.Millisecond}),
		om: openmetertest.NewInMemory(opts),
		m:  NewMetrics(nil),
	}
	t.Cleanup(h.om.Close)
	return h
}

func event(id string, extra ...string) []byte {
	data := `{"n":1}`
	if len(extra) > 0 {
		data = extra[0]
	}
	return []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"test","type":"usage","subject":"cust","time":"2024-01-01T00:00:00Z","data":%s}`, id, data))
}

// put uploads a batch and appends its entry; the metadata items are given
// explicitly (nil: one events item over all records).
func (h *harness) put(recs [][]byte, md []manifest.Metadata) (uint64, string) {
	h.t.Helper()
	data, err := format.EncodeBatch(format.CompressionZstd, recs)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.putRaw(data, md)
}

func (h *harness) putRaw(data []byte, md []manifest.Metadata) (uint64, string) {
	h.t.Helper()
	h.n++
	loc := fmt.Sprintf("ingest/data/2024/%06d.batch", h.n)
	if data != nil {
		if err := h.bkt.Upload(context.Background(), loc, strings.NewReader(string(data))); err != nil {
			h.t.Fatal(err)
		}
	}
	if md == nil {
		md = []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: time.Now().Add(-time.Minute).UnixMilli(), Payload: format.EventsHeader.Bytes()}}
	}
	seqs, err := h.q.Append(context.Background(), manifest.NewEntry{Location: loc, Metadata: md})
	if err != nil {
		h.t.Fatal(err)
	}
	return seqs[0], loc
}

// events appends n batches of per events each, ids "b<batch>-e<event>".
func (h *harness) events(batches, per int) []string {
	var ids []string
	for b := 0; b < batches; b++ {
		var recs [][]byte
		for e := 0; e < per; e++ {
			id := fmt.Sprintf("b%d-e%d", h.n+1, e)
			ids = append(ids, id)
			recs = append(recs, event(id))
		}
		h.put(recs, nil)
	}
	return ids
}

func (h *harness) config(mut func(*Config)) Config {
	cfg := Config{
		PollInterval: 10 * time.Millisecond, Prefetch: 3, SinkBatchSize: 4,
		GCInterval: time.Hour, GCGracePeriod: time.Hour,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		AuthRetryInterval: 200 * time.Millisecond, DisableGC: true,
	}
	if mut != nil {
		mut(&cfg)
	}
	return cfg
}

func (h *harness) consumer(cfg Config, token string) *Consumer {
	h.t.Helper()
	c, err := New(h.bkt, h.q, convert.NewRegistry(), h.httpSink(token), cfg, h.m, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

type running struct {
	cancel context.CancelFunc
	done   chan error
}

func start(c *Consumer) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(stopPatience):
		t.Fatalf("Run did not stop within %v of cancel", stopPatience)
	}
}

// fenced waits for Run to return ErrFenced; stillRunning says what it
// means when Run has not returned within patience.
func (r *running) fenced(t *testing.T, stillRunning string) {
	t.Helper()
	select {
	case err := <-r.done:
		if !errors.Is(err, manifest.ErrFenced) {
			t.Fatalf("Run returned %v, want ErrFenced", err)
		}
	case <-time.After(patience):
		t.Fatal(stillRunning)
	}
}

// stopPatience bounds how long Run may take to return after a cancel: it
// takes milliseconds (the final dequeue is bounded at 5s).
const stopPatience = 20 * time.Second

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) queueLen() int {
	m, err := h.q.Read(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return len(m.Entries)
}

func (h *harness) deadLetters() map[string]deadletter.Letter {
	h.t.Helper()
	out := map[string]deadletter.Letter{}
	err := h.bkt.Iter(context.Background(), "ingest/dead-letter/", func(name string) error {
		if !strings.HasSuffix(name, ".json") {
			return nil
		}
		rc, err := h.bkt.Get(context.Background(), name)
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		dl, err := deadletter.Decode(b)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if dl.Version != deadletter.Version {
			return fmt.Errorf("%s: version %d, want %d (checksummed)", name, dl.Version, deadletter.Version)
		}
		out[name] = dl
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func ids(evs []openmetertest.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func TestDeliversInOrderThenDequeues(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{Mode: openmetertest.Konnect, Token: "tok"})
	want := h.events(6, 7)
	// One request at a time: the sink then receives the events in
	// manifest order (with more, requests may arrive in any order).
	c := h.consumer(h.config(func(c *Config) { c.SinkConcurrency = 1 }), "tok")
	r := start(c)
	defer r.stop(t)
	if !h.om.WaitEvents(len(want), patience) {
		t.Fatalf("delivered %d of %d", len(h.om.Events()), len(want))
	}
	waitFor(t, "queue drained", patience, func() bool { return h.queueLen() == 0 })
	got := ids(h.om.Events())
	if !slices.Equal(got, want) {
		t.Fatalf("delivered out of order or wrong:\n got %v\nwant %v", got, want)
	}
	if h.om.Duplicates() != 0 {
		t.Fatalf("%d duplicates", h.om.Duplicates())
	}
	// 42 events in sink batches of 4: 11 requests, all 202.
	if n := h.om.Requests(202); n != 11 {
		t.Fatalf("%d requests, want 11 (by status %v)", n, h.om.RequestsByStatus())
	}
	waitFor(t, "acks", patience, func() bool { return value(h.m.Acks) == 6 })
	if v := value(h.m.ConsumerLastDequeue); v != 5 {
		t.Fatalf("last dequeued %v, want 5", v)
	}
	if v := value(h.m.ConsumerLagSeconds); v != 0 {
		t.Fatalf("lag %v with an empty queue", v)
	}
	if v := value(h.m.BatchesCollected); v != 6 {
		t.Fatalf("batches collected %v", v)
	}
	if v := value(h.m.SinkEvents.WithLabelValues("sent")); v != 42 {
		t.Fatalf("sink events sent %v", v)
	}
	if v := value(h.m.ConsumerEpoch); v != 1 {
		t.Fatalf("epoch %v", v)
	}
	// More entries later are picked up by polling.
	more := h.events(1, 3)
	if !h.om.WaitEvents(len(want)+len(more), patience) {
		t.Fatal("entries appended later were not delivered")
	}
}

func TestCrashBeforeDequeueRedeliversSameEvents(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		want := h.events(3, 4)
		var writes atomic.Int32
		h.store.BeforeWrite = func(string) error {
			if writes.Add(1) == 1 {
				return nil // the fence
			}
			return errors.New("injected: manifest write lost")
		}
		r := start(h.consumer(h.config(nil), ""))
		if !h.om.WaitEvents(len(want), patience) {
			t.Fatal("first delivery incomplete")
		}
		r.stop(t) // the "crash": no dequeue could land
		if n := h.queueLen(); n != 3 {
			t.Fatalf("queue has %d entries after a crash before dequeue, want 3", n)
		}
		first := h.om.Events()

		h.store.BeforeWrite = nil
		r2 := start(h.consumer(h.config(nil), ""))
		defer r2.stop(t)
		if !h.om.WaitEvents(2*len(want), patience) {
			t.Fatal("no redelivery")
		}
		eventually(t, "queue drained", func() bool { return h.queueLen() == 0 })
		all := h.om.Events()
		if len(all) != 2*len(want) || h.om.Distinct() != len(want) || h.om.Duplicates() != len(want) {
			t.Fatalf("events %d distinct %d duplicates %d", len(all), h.om.Distinct(), h.om.Duplicates())
		}
		// By id: concurrent requests arrive in any order.
		firstRaw := map[string]string{}
		for _, e := range first {
			firstRaw[e.ID] = string(e.Raw)
		}
		for i, e := range all[len(want):] {
			if string(e.Raw) != firstRaw[e.ID] {
				t.Fatalf("redelivered event %d (%s) differs:\n%s\n%s", i, e.ID, e.Raw, firstRaw[e.ID])
			}
		}
	})
}

func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		want := h.events(1, 2)
		h.om.FailNext(1, 429, "1")
		begin := time.Now()
		r := start(h.consumer(h.config(nil), ""))
		defer r.stop(t)
		if !h.om.WaitEvents(len(want), patience) {
			t.Fatal("not delivered after 429")
		}
		// The first request is answered at once; the retry waits the
		// whole Retry-After, not the short backoff, and no longer.
		if d := time.Since(begin); d != time.Second {
			t.Fatalf("delivered %v after a 429 with Retry-After: 1, want 1s", d)
		}
		if h.om.Requests(429) != 1 || h.om.Requests(204) != 1 {
			t.Fatalf("statuses %v", h.om.RequestsByStatus())
		}
		if v := value(h.m.SinkRequests.WithLabelValues("429")); v != 1 {
			t.Fatalf("sink_requests{429} = %v", v)
		}
	})
}

func TestServerErrorsRetried(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		want := h.events(2, 3)
		h.om.FailNext(3, 503, "")
		h.om.FailNext(2, 500, "")
		r := start(h.consumer(h.config(func(c *Config) { c.SinkBatchSize = 100 }), ""))
		defer r.stop(t)
		if !h.om.WaitEvents(len(want), patience) {
			t.Fatal("not delivered after 503s")
		}
		eventually(t, "queue drained", func() bool { return h.queueLen() == 0 })
		if !slices.Equal(ids(h.om.Events()), want) || h.om.Requests(503) != 3 || h.om.Requests(500) != 2 {
			t.Fatalf("events %v statuses %v", ids(h.om.Events()), h.om.RequestsByStatus())
		}
		if v := value(h.m.SinkEvents.WithLabelValues("retried")); v != 5*6 {
			t.Fatalf("retried events %v, want 30", v)
		}
	})
}

// TestAuthFailureRetriesSlowlyAndKeepsQueue: a 401 is retried every
// AuthRetryInterval (not with the short backoff), nothing is delivered or
// dequeued, and the lag shows the stall. On the bubble's clock the spacing
// is exact.
func TestAuthFailureRetriesSlowlyAndKeepsQueue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{Token: "right"})
		h.events(1, 2)
		cfg := h.config(nil)
		if cfg.AuthRetryInterval <= 2*cfg.MaxBackoff {
			t.Fatalf("AuthRetryInterval %v must be well above MaxBackoff %v for this test to tell them apart", cfg.AuthRetryInterval, cfg.MaxBackoff)
		}
		rs := newRecordingSink(h.httpSink("wrong"))
		r := start(h.consumerWith(cfg, rs))
		eventually(t, "three requests answered 401", func() bool { return rs.answered(401) >= 3 })
		r.stop(t)
		sends := rs.records()
		for i, s := range sends {
			if s.done && s.status != 401 {
				t.Fatalf("request %d answered %d (%v), want 401", i, s.status, s.err)
			}
			if i > 0 {
				if gap := s.start.Sub(sends[i-1].start); gap != cfg.AuthRetryInterval {
					t.Fatalf("request %d sent %v after the previous 401, want AuthRetryInterval %v", i, gap, cfg.AuthRetryInterval)
				}
			}
		}
		if n := h.om.Requests(401); n < 3 {
			t.Fatalf("the server answered 401 %d times, want at least 3", n)
		}
		if len(h.om.Events()) != 0 || h.queueLen() != 1 {
			t.Fatalf("events %d queue %d", len(h.om.Events()), h.queueLen())
		}
		if lag := value(h.m.ConsumerLagSeconds); lag < 59 {
			t.Fatalf("lag %v while stalled on an entry ingested a minute ago", lag)
		}
	})
}

func TestPoisonEventsBisectedAndDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{Poison: openmetertest.PoisonFlag})
	var want []string
	poison := map[string]bool{"b1-e3": true, "b2-e0": true, "b2-e9": true}
	for b := 1; b <= 3; b++ {
		var recs [][]byte
		for e := 0; e < 10; e++ {
			id := fmt.Sprintf("b%d-e%d", b, e)
			if poison[id] {
				recs = append(recs, event(id, `{"poison":true}`))
			} else {
				recs = append(recs, event(id))
				want = append(want, id)
			}
		}
		h.put(recs, nil)
	}
	r := start(h.consumer(h.config(func(c *Config) { c.SinkBatchSize = 16 }), ""))
	defer r.stop(t)
	waitFor(t, "queue drained", patience, func() bool { return h.queueLen() == 0 })
	got := ids(h.om.Events())
	if !slices.Equal(got, want) || h.om.Duplicates() != 0 {
		t.Fatalf("delivered %v (dups %d), want %v", got, h.om.Duplicates(), want)
	}
	dls := h.deadLetters()
	if len(dls) != len(poison) {
		t.Fatalf("%d dead letters, want %d: %v", len(dls), len(poison), dls)
	}
	for name, dl := range dls {
		var ev struct{ ID string }
		if err := json.Unmarshal(dl.Event, &ev); err != nil || !poison[ev.ID] {
			t.Fatalf("%s: event %s is not a poison event (%v)", name, dl.Event, err)
		}
		if dl.Reason != "poison_event" || dl.Status != 400 || !strings.Contains(dl.Response, "poison") ||
			dl.RecordIndex == nil || dl.Location == "" || !strings.HasSuffix(ev.ID, fmt.Sprintf("e%d", *dl.RecordIndex)) {
			t.Fatalf("%s: %+v", name, dl)
		}
	}
	if v := value(h.m.SinkEvents.WithLabelValues("dead_lettered")); v != 3 {
		t.Fatalf("dead_lettered %v", v)
	}
	// The skipped counter's reason label is the dead letter's reason.
	if v := value(h.m.EntriesSkipped.WithLabelValues("poison_event")); v != 3 {
		t.Fatalf("skipped poison_event %v", v)
	}
	if v := value(h.m.DeadLetterWrites); v != 3 {
		t.Fatalf("dead letter writes %v", v)
	}
}

func TestConverterErrorsAndUnknownSignalDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	now := time.Now().UnixMilli()
	unknown := format.NewHeader(format.SignalType(9), format.EncodingCloudEventsJSON)
	// Entry 0: a record that is not a JSON object and one that only looks
	// like one, between good ones.
	h.put([][]byte{event("a"), []byte("not json"), event("b"), []byte(`{"id":"broken",}`)}, nil)
	// Entry 1: two metadata items, events then an unknown signal.
	h.put([][]byte{event("c"), []byte("x1"), []byte("x2"), []byte("x3")}, []manifest.Metadata{
		{StartIndex: 0, IngestionTimeMs: now, Payload: format.EventsHeader.Bytes()},
		{StartIndex: 1, IngestionTimeMs: now, Payload: unknown.Bytes()},
	})
	// Entry 2: a known signal nothing is registered for.
	h.put([][]byte{[]byte("otlp")}, []manifest.Metadata{
		{StartIndex: 0, IngestionTimeMs: now, Payload: format.NewHeader(format.SignalLogs, format.EncodingOTLPProtobuf).Bytes()},
	})
	h.events(1, 1)
	r := start(h.consumer(h.config(nil), ""))
	defer r.stop(t)
	waitFor(t, "queue drained", patience, func() bool { return h.queueLen() == 0 })
	if got := ids(h.om.Events()); !slices.Equal(got, []string{"a", "b", "c", "b4-e0"}) {
		t.Fatalf("delivered %v", got)
	}
	dls := h.deadLetters()
	var conv, unk []deadletter.Letter
	for _, dl := range dls {
		switch dl.Reason {
		case "unknown_signal":
			unk = append(unk, dl)
		default:
			conv = append(conv, dl)
		}
	}
	slices.SortFunc(conv, func(a, b deadletter.Letter) int { return *a.RecordIndex - *b.RecordIndex })
	if len(conv) != 2 || conv[0].Reason != "convert_error" || conv[0].Sequence != 0 || *conv[0].RecordIndex != 1 || !strings.Contains(conv[0].Error, "not a JSON object") ||
		len(conv[0].Records) != 1 || string(conv[0].Records[0]) != "not json" {
		t.Fatalf("converter dead letters %+v", conv)
	}
	if c := conv[1]; c.Reason != "convert_error" || *c.RecordIndex != 3 || !strings.Contains(c.Error, "not valid JSON") || string(c.Records[0]) != `{"id":"broken",}` {
		t.Fatalf("invalid JSON dead letter %+v", c)
	}
	if len(unk) != 2 {
		t.Fatalf("unknown-signal dead letters %+v", unk)
	}
	slices.SortFunc(unk, func(a, b deadletter.Letter) int { return int(a.Sequence) - int(b.Sequence) })
	if unk[0].Sequence != 1 || *unk[0].RecordIndex != 1 || unk[0].RecordCount != 3 || unk[0].Signal != "unknown(9)" || string(unk[0].Records[2]) != "x3" {
		t.Fatalf("unknown signal dead letter %+v", unk[0])
	}
	if unk[1].Sequence != 2 || unk[1].Signal != "logs" || !strings.Contains(unk[1].Error, "no converter") {
		t.Fatalf("unregistered signal dead letter %+v", unk[1])
	}
	if v := value(h.m.EntriesSkipped.WithLabelValues("unknown_signal")); v != 4 {
		t.Fatalf("skipped unknown_signal %v", v)
	}
	if v := value(h.m.EntriesSkipped.WithLabelValues("convert_error")); v != 2 {
		t.Fatalf("skipped convert_error %v", v)
	}
}

func TestMissingAndCorruptBatchesMarkedAndSkipped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	now := time.Now().UnixMilli()
	_, missing := h.putRaw(nil, nil)                           // seq 0: never uploaded
	_, garbage := h.putRaw([]byte("this is not a batch"), nil) // seq 1
	good, _ := format.EncodeBatch(format.CompressionNone, [][]byte{event("x")})
	h.putRaw(good, []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: now, Payload: []byte{2, 4, 2, 0}}})                                                                                       // seq 2: header version 2
	h.putRaw(good, []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: now, Payload: format.EventsHeader.Bytes()}, {StartIndex: 5, IngestionTimeMs: now, Payload: format.EventsHeader.Bytes()}}) // seq 3: range past the batch
	want := h.events(1, 2)                                                                                                                                                                        // seq 4
	r := start(h.consumer(h.config(nil), ""))
	defer r.stop(t)
	waitFor(t, "queue drained", patience, func() bool { return h.queueLen() == 0 })
	if got := ids(h.om.Events()); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	dls := h.deadLetters()
	bySeq := map[uint64]deadletter.Letter{}
	for _, dl := range dls {
		bySeq[dl.Sequence] = dl
	}
	if len(dls) != 4 {
		t.Fatalf("dead letters %v", dls)
	}
	if dl := bySeq[0]; dl.Reason != "batch_missing" || dl.Location != missing || dl.Error == "" {
		t.Fatalf("missing marker %+v", dl)
	}
	if dl := bySeq[1]; dl.Reason != "batch_corrupt" || dl.Location != garbage || dl.BatchCopy == "" {
		t.Fatalf("corrupt marker %+v", dl)
	} else {
		rc, err := h.bkt.Get(context.Background(), dl.BatchCopy)
		if err != nil {
			t.Fatalf("batch copy: %v", err)
		}
		rc.Close()
	}
	if dl := bySeq[2]; dl.Reason != "batch_corrupt" || !strings.Contains(dl.Error, "metadata item 0") {
		t.Fatalf("bad header marker %+v", dl)
	}
	if dl := bySeq[3]; dl.Reason != "batch_corrupt" || !strings.Contains(dl.Error, "covers records") {
		t.Fatalf("bad range marker %+v", dl)
	}
	if v := value(h.m.BatchesCorrupt.WithLabelValues("missing")); v != 1 {
		t.Fatalf("missing %v", v)
	}
	if v := value(h.m.BatchesCorrupt.WithLabelValues("corrupt")); v != 3 {
		t.Fatalf("corrupt %v", v)
	}
	for reason, want := range map[string]float64{"batch_missing": 1, "batch_corrupt": 3} {
		if v := value(h.m.EntriesSkipped.WithLabelValues(reason)); v != want {
			t.Fatalf("skipped %s %v, want %v", reason, v, want)
		}
	}
}

// flakyBucket fails the first Gets of each object with a transient error.
type flakyBucket struct {
	objstore.Bucket
	fails atomic.Int32
}

func (b *flakyBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if b.fails.Add(-1) >= 0 {
		return nil, errors.New("injected: connection reset")
	}
	return b.Bucket.Get(ctx, name)
}

func TestTransientFetchErrorsRetriedNotMissing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	want := h.events(2, 2)
	fb := &flakyBucket{Bucket: h.bkt}
	fb.fails.Store(5)
	c, err := New(fb, h.q, convert.NewRegistry(), h.httpSink(""), h.config(nil), h.m, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := start(c)
	defer r.stop(t)
	waitFor(t, "queue drained", patience, func() bool { return h.queueLen() == 0 })
	if got := ids(h.om.Events()); !slices.Equal(got, want) || len(h.deadLetters()) != 0 {
		t.Fatalf("delivered %v, dead letters %v", got, h.deadLetters())
	}
}

func TestFencedConsumerStops(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		h.events(1, 1)
		a := start(h.consumer(h.config(nil), ""))
		if !h.om.WaitEvents(1, patience) {
			t.Fatal("not delivered")
		}
		b := start(h.consumer(h.config(nil), ""))
		defer b.stop(t)
		a.fenced(t, "old consumer still running after a newer one fenced it")
		a.cancel()
		h.events(1, 1)
		if !h.om.WaitEvents(2, patience) {
			t.Fatal("new consumer does not deliver")
		}
	})
}

// TestCleanStopAbandonsInFlightAndKeepsQueue: a stop does not wait for the
// sink's answer (here it never comes until the test ends) but cancels the
// request, and dequeues nothing that was not delivered.
func TestCleanStopAbandonsInFlightAndKeepsQueue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		h.events(2, 2)
		arrived := make(chan struct{}, 16)
		abandoned := make(chan struct{}, 16)
		release := make(chan struct{})
		srv := openmetertest.HandlerClient(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
				abandoned <- struct{}{}
			case <-release:
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}))
		t.Cleanup(func() { close(release) })
		r := start(h.consumerWith(h.config(nil), sink.NewHTTP(openmetertest.InMemoryURL+"/api/v1/events", "", sink.HTTPOptions{Client: srv})))
		select {
		case <-arrived:
		case <-time.After(patience):
			t.Fatal("no sink request arrived")
		}
		r.stop(t) // fails after stopPatience if the stop waits for the answer
		select {
		case <-abandoned:
		case <-time.After(patience):
			t.Fatal("the in-flight request was not cancelled by the stop")
		}
		if h.queueLen() != 2 {
			t.Fatalf("queue %d after a stop mid-request, want 2", h.queueLen())
		}
		if len(arrived) != 0 {
			t.Fatalf("%d more requests after the first", len(arrived))
		}
	})
}

func TestGarbageCollection(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	ctx := context.Background()
	old := time.Now().Add(-2 * time.Hour)
	upload := func(name string, age time.Time) {
		if err := h.bkt.Upload(ctx, name, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(h.dir, name), age, age); err != nil {
			t.Fatal(err)
		}
	}
	_, ref := h.put([][]byte{event("r")}, nil)
	if err := os.Chtimes(filepath.Join(h.dir, ref), old, old); err != nil {
		t.Fatal(err)
	}
	upload("ingest/data/2024/orphan-old.batch", old)
	upload("ingest/data/2023/deep/orphan-old2.batch", old)
	upload("ingest/data/2024/orphan-young.batch", time.Now())
	upload("other/old.batch", old)
	upload("ingest/dead-letter/x/old.json", old)
	upload("ingest/database-lookalike/old.batch", old)

	c := h.consumer(h.config(nil), "")
	n, err := c.CollectGarbage(ctx)
	if err != nil || n != 2 {
		t.Fatalf("CollectGarbage = %d, %v; want 2 deletions", n, err)
	}
	exists := func(name string) bool {
		ok, err := h.bkt.Exists(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for name, want := range map[string]bool{
		ref:                                 true,
		"ingest/data/2024/orphan-old.batch": false,
		"ingest/data/2023/deep/orphan-old2.batch": false,
		"ingest/data/2024/orphan-young.batch":     true,
		"other/old.batch":                         true,
		"ingest/dead-letter/x/old.json":           true,
		"ingest/database-lookalike/old.batch":     true,
	} {
		if exists(name) != want {
			t.Errorf("%s exists = %v, want %v", name, !want, want)
		}
	}
	if v := value(h.m.GCFilesDeleted); v != 2 {
		t.Fatalf("gc deleted metric %v", v)
	}

	// Run's periodic GC deletes the batch once it is delivered and dequeued.
	cfg := h.config(func(c *Config) { c.DisableGC = false; c.GCInterval = 20 * time.Millisecond })
	r := start(h.consumer(cfg, ""))
	defer r.stop(t)
	waitFor(t, "delivered batch collected", patience, func() bool { return !exists(ref) })
	if len(h.om.Events()) != 1 || !exists("ingest/data/2024/orphan-young.batch") {
		t.Fatalf("events %d, young orphan exists %v", len(h.om.Events()), exists("ingest/data/2024/orphan-young.batch"))
	}
}

func TestNewRejectsOverlappingPrefixes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	snk := h.httpSink("")
	for _, cfg := range []Config{
		{DataPrefix: "ingest", DeadLetterPrefix: "ingest/dead-letter"},
		{DataPrefix: "ingest/data", DeadLetterPrefix: "ingest/data/"},
		{DataPrefix: "ingest"}, // the manifest ingest/manifest would be collected
	} {
		if _, err := New(h.bkt, h.q, convert.NewRegistry(), snk, cfg, nil, nil); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
	if _, err := New(h.bkt, h.q, convert.NewRegistry(), snk, Config{}, nil, nil); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
}

// value reads a counter or gauge.
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var d dto.Metric
	if err := (<-ch).Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func TestFenceRetriedWhileStoreFails(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		want := h.events(1, 2)
		var fails atomic.Int32
		fails.Store(12) // more than one Fence call retries within its 300ms RetryTimeout
		h.store.BeforeWrite = func(string) error {
			if fails.Add(-1) >= 0 {
				return errors.New("injected: store unavailable")
			}
			return nil
		}
		h.store.BeforeRead = func(string) error {
			if fails.Load() > 0 {
				time.Sleep(30 * time.Millisecond)
			}
			return nil
		}
		r := start(h.consumer(h.config(nil), ""))
		defer r.stop(t)
		if !h.om.WaitEvents(len(want), patience) {
			t.Fatal("consumer did not start after the store recovered")
		}
		select {
		case err := <-r.done:
			t.Fatalf("Run returned %v", err)
		default:
		}
	})
}

func TestFencedWhileSinkIsDownStops(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, openmetertest.Options{})
		h.events(1, 1)
		h.om.FailNext(-1, 503, "")
		a := start(h.consumer(h.config(nil), ""))
		eventually(t, "first 503", func() bool { return h.om.Requests(503) > 0 })
		if _, err := h.q.Fence(context.Background()); err != nil {
			t.Fatal(err)
		}
		a.fenced(t, "consumer kept retrying the sink after being fenced")
		a.cancel()
		if h.queueLen() != 1 {
			t.Fatal("entry lost")
		}
	})
}

// TestNewRefusesUncleanPrefixes: GC deletes by prefix, so "./ingest/data"
// or "ingest/data/.." must not slip past the overlap check as another name
// (issue 9, item 5), for library users as for the command.
func TestNewRefusesUncleanPrefixes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, openmetertest.Options{})
	for _, tc := range []struct{ data, dead string }{
		{"./ingest/data", "ingest/dead-letter"},
		{"ingest/data/..", "ingest/dead-letter"},
		{"ingest//data", "ingest/dead-letter"},
		{"ingest/data", "ingest/data/./dl"},
		{"ingest", "ingest/./dead"},
	} {
		cfg := h.config(func(c *Config) { c.DataPrefix, c.DeadLetterPrefix = tc.data, tc.dead })
		if _, err := New(h.bkt, h.q, convert.NewRegistry(), noopSink{}, cfg, h.m, nil); err == nil {
			t.Errorf("New accepted data prefix %q and dead-letter prefix %q", tc.data, tc.dead)
		}
	}
	cfg := h.config(func(c *Config) { c.DataPrefix, c.DeadLetterPrefix = "ingest/data/", "ingest/dead-letter" })
	if _, err := New(h.bkt, h.q, convert.NewRegistry(), noopSink{}, cfg, h.m, nil); err != nil {
		t.Errorf("a trailing slash is still accepted: %v", err)
	}
}

type noopSink struct{}

func (noopSink) Send(context.Context, []json.RawMessage) error { return nil }
func (noopSink) Close() error                                  { return nil }
