package replay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/replay"
)

const patience = 60 * time.Second

var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// world is a queue whose history was delivered with the journal on: four
// simulated hours of batches, each record's ingestion time known.
type world struct {
	bkt    objstore.Bucket
	store  cas.Store
	q      *manifest.Queue
	ingest map[string]time.Time // event id -> ingestion time of its record
	seqOf  map[string]uint64    // event id -> sequence of its entry
	om     *openmetertest.Server
}

type backend struct {
	name string
	open func(t *testing.T) (objstore.Bucket, cas.Store)
}

var backends = []backend{
	{"filesystem", func(t *testing.T) (objstore.Bucket, cas.Store) {
		bkt, store, err := bucket.OpenDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return bkt, store
	}},
	{"s3", func(t *testing.T) (objstore.Bucket, cas.Store) {
		bkt, store, err := bucket.Open(context.Background(), storetest.S3BucketYAML(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bkt.Close() })
		return bkt, store
	}},
}

func ev(id, subject, typ string) []byte {
	return []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"replay-test","type":%q,"subject":%q,"time":"2026-01-01T00:00:00Z","data":{"n":1}}`, id, typ, subject))
}

// newWorld appends hours×perHour batches of 6 events, one every
// 60/perHour minutes; the last batch of each hour has a second metadata
// item whose records were ingested in the next hour. Then a consumer with
// the journal delivers everything to the fake OpenMeter.
func newWorld(t *testing.T, b backend, hours, perHour int) *world {
	t.Helper()
	ctx := context.Background()
	bkt, store := b.open(t)
	w := &world{bkt: bkt, store: store, ingest: map[string]time.Time{}, seqOf: map[string]uint64{},
		q:  manifest.NewQueue(store, "ingest/manifest", manifest.Options{}),
		om: openmetertest.New(openmetertest.Options{})}
	t.Cleanup(w.om.Close)
	step := time.Hour / time.Duration(perHour)
	n := 0
	for h := 0; h < hours; h++ {
		for k := 0; k < perHour; k++ {
			n++
			at := base.Add(time.Duration(h)*time.Hour + time.Duration(k)*step)
			var recs [][]byte
			var ids []string
			times := []time.Time{}
			for e := 0; e < 6; e++ {
				id := fmt.Sprintf("b%04d-e%d", n, e)
				subj, typ := "cust-a", "usage"
				if e%2 == 1 {
					subj = "cust-b"
				}
				if e%3 == 2 {
					typ = "api"
				}
				recs = append(recs, ev(id, subj, typ))
				ids = append(ids, id)
				times = append(times, at)
			}
			md := []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: at.UnixMilli(), Payload: format.EventsHeader.Bytes()}}
			if k == perHour-1 {
				late := base.Add(time.Duration(h+1)*time.Hour + time.Millisecond)
				md = append(md, manifest.Metadata{StartIndex: 4, IngestionTimeMs: late.UnixMilli(), Payload: format.EventsHeader.Bytes()})
				times[4], times[5] = late, late
			}
			data, err := format.EncodeBatch(format.CompressionZstd, recs)
			if err != nil {
				t.Fatal(err)
			}
			loc := fmt.Sprintf("ingest/data/%06d.batch", n)
			if err := bkt.Upload(ctx, loc, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			seqs, err := w.q.Append(ctx, manifest.NewEntry{Location: loc, Metadata: md})
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				w.ingest[id], w.seqOf[id] = times[i], seqs[0]
			}
		}
	}
	j, err := journal.New(bkt, journal.Config{Retention: 24 * time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := consumer.New(bkt, w.q, convert.NewRegistry(), sink.NewHTTP(w.om.Endpoint, "", sink.HTTPOptions{}),
		consumer.Config{PollInterval: 10 * time.Millisecond, DequeueInterval: 20 * time.Millisecond, SinkBatchSize: 50, DisableGC: true, Journal: j}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	deadline := time.Now().Add(patience)
	for {
		m, err := w.q.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer left %d entries", len(m.Entries))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := w.om.Distinct(); got != len(w.ingest) {
		t.Fatalf("consumer delivered %d distinct events, want %d", got, len(w.ingest))
	}
	return w
}

// delivered maps the ids the consumer delivered to the bytes it sent.
func (w *world) delivered(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	for _, e := range w.om.Events() {
		var b bytes.Buffer
		if err := json.Compact(&b, e.Raw); err != nil {
			t.Fatal(err)
		}
		out[e.ID] = b.Bytes()
	}
	return out
}

func (w *world) config(t *testing.T, path string) replay.Config {
	snk, err := sink.FromURL("file:"+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snk.Close() })
	return replay.Config{Bucket: w.bkt, JournalPrefix: journal.DefaultPrefix, Converter: convert.NewRegistry(), Sink: snk, BatchSize: 7}
}

// readSink returns the events of a file: sink, by id, and the number of lines.
func readSink(t *testing.T, path string) (map[string][]byte, int) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out[e.ID] = append([]byte(nil), sc.Bytes()...)
		n++
	}
	return out, n
}

// sameIDs fails unless got holds exactly the ids of want, byte-identical
// to what the consumer delivered.
func sameIDs(t *testing.T, got map[string][]byte, want []string, delivered map[string][]byte) {
	t.Helper()
	sort.Strings(want)
	var extra, missing []string
	for _, id := range want {
		if _, ok := got[id]; !ok {
			missing = append(missing, id)
		}
	}
	wantSet := map[string]bool{}
	for _, id := range want {
		wantSet[id] = true
	}
	for id, b := range got {
		if !wantSet[id] {
			extra = append(extra, id)
		} else if !bytes.Equal(b, delivered[id]) {
			t.Errorf("event %s replayed as %s, delivered as %s", id, b, delivered[id])
		}
	}
	if len(extra)+len(missing) > 0 {
		sort.Strings(extra)
		t.Fatalf("replayed set differs from the window: %d missing %v, %d extra %v", len(missing), head(missing), len(extra), head(extra))
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// snapshot is every object of the bucket with its bytes' length and the
// manifest's bytes: replay must change none of it.
func snapshot(t *testing.T, w *world) string {
	var b strings.Builder
	err := w.bkt.Iter(context.Background(), "", func(name string) error {
		a, err := w.bkt.Attributes(context.Background(), name)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %v\n", name, a.Size, a.LastModified.UnixNano())
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		t.Fatal(err)
	}
	m, v, err := w.store.Read(context.Background(), w.q.Path())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "manifest %x %s\n", m, v)
	return b.String()
}

func TestReplayWindows(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			w := newWorld(t, b, 4, 12)
			delivered := w.delivered(t)
			before := snapshot(t, w)
			dir := t.TempDir()

			// One hour by ingestion time: exactly the records ingested in
			// it, including the late items of the previous hour's last batch.
			from, to := base.Add(time.Hour), base.Add(2*time.Hour)
			path := filepath.Join(dir, "hour.ndjson")
			sum, err := replay.Run(context.Background(), w.config(t, path), replay.Selection{From: from, To: to})
			if err != nil || !sum.OK() {
				t.Fatalf("replay by time: %v %+v", err, sum)
			}
			var want []string
			for id, at := range w.ingest {
				if !at.Before(from) && at.Before(to) {
					want = append(want, id)
				}
			}
			got, lines := readSink(t, path)
			sameIDs(t, got, want, delivered)
			if lines != len(want) || sum.EventsSent != len(want) {
				t.Fatalf("%d lines, %d sent, want %d", lines, sum.EventsSent, len(want))
			}

			// A sequence range.
			path = filepath.Join(dir, "seq.ndjson")
			sum, err = replay.Run(context.Background(), w.config(t, path), replay.Selection{BySeq: true, FromSeq: 5, ToSeq: 20})
			if err != nil || !sum.OK() {
				t.Fatalf("replay by sequence: %v %+v", err, sum)
			}
			want = want[:0]
			for id, s := range w.seqOf {
				if s >= 5 && s <= 20 {
					want = append(want, id)
				}
			}
			got, _ = readSink(t, path)
			sameIDs(t, got, want, delivered)

			// Filters: one subject and type in the hour.
			path = filepath.Join(dir, "filtered.ndjson")
			sum, err = replay.Run(context.Background(), w.config(t, path), replay.Selection{From: from, To: to, Subjects: []string{"cust-a"}, Types: []string{"usage"}, Signals: []string{"events"}})
			if err != nil || !sum.OK() {
				t.Fatalf("filtered replay: %v %+v", err, sum)
			}
			want = want[:0]
			for id, at := range w.ingest {
				var e struct{ Subject, Type string }
				_ = json.Unmarshal(delivered[id], &e)
				if !at.Before(from) && at.Before(to) && e.Subject == "cust-a" && e.Type == "usage" {
					want = append(want, id)
				}
			}
			got, _ = readSink(t, path)
			sameIDs(t, got, want, delivered)
			if sum.EventsFiltered == 0 {
				t.Fatal("no event counted as filtered")
			}

			if after := snapshot(t, w); after != before {
				t.Fatalf("replay changed the bucket:\nbefore\n%s\nafter\n%s", before, after)
			}
		})
	}
}

// cutSink delivers to next, then ends the replay's context after n
// requests: an interruption between two sink requests, as a Ctrl-C or a
// kill would leave it (a kill loses at most what the checkpoint has not
// yet recorded, which is re-sent).
type cutSink struct {
	sink.Sink
	n      int32
	cancel context.CancelFunc
	sends  atomic.Int32
}

func (s *cutSink) Send(ctx context.Context, evs []json.RawMessage) error {
	if s.sends.Add(1) > s.n {
		s.cancel()
		return ctx.Err()
	}
	return s.Sink.Send(ctx, evs)
}

func TestReplayResumesAfterInterruption(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			w := newWorld(t, b, 2, 12)
			delivered := w.delivered(t)
			dir := t.TempDir()
			path, ck := filepath.Join(dir, "out.ndjson"), filepath.Join(dir, "ck.json")
			sel := replay.Selection{From: base, To: base.Add(2 * time.Hour)}
			cfg := w.config(t, path)
			cfg.Checkpoint = ck
			ctx, cancel := context.WithCancel(context.Background())
			cfg.Sink = &cutSink{Sink: cfg.Sink, n: 4, cancel: cancel}
			if _, err := replay.Run(ctx, cfg, sel); !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted replay: %v", err)
			}
			partial, _ := readSink(t, path)
			if len(partial) == 0 || len(partial) >= len(w.ingest) {
				t.Fatalf("interrupted replay sent %d of %d events", len(partial), len(w.ingest))
			}
			// Without --resume an unfinished checkpoint is refused.
			cfg2 := w.config(t, path)
			cfg2.Checkpoint = ck
			if _, err := replay.Run(context.Background(), cfg2, sel); !errors.Is(err, replay.ErrBadCheckpoint) {
				t.Fatalf("fresh run over an unfinished checkpoint: %v", err)
			}
			// The same selection cannot resume it on another journal either
			// (another partition's sequences): it would skip that
			// journal's entries below the checkpoint.
			cfg3 := w.config(t, path)
			cfg3.Checkpoint, cfg3.Resume = ck, true
			cfg3.JournalPrefix += "-1"
			if _, err := replay.Run(context.Background(), cfg3, sel); !errors.Is(err, replay.ErrBadCheckpoint) {
				t.Fatalf("resume on another journal: %v", err)
			}
			cfg2.Resume = true
			sum, err := replay.Run(context.Background(), cfg2, sel)
			if err != nil || !sum.OK() || sum.ResumedAfter == nil {
				t.Fatalf("resumed replay: %v %+v", err, sum)
			}
			var want []string
			for id, at := range w.ingest {
				if at.Before(base.Add(2 * time.Hour)) {
					want = append(want, id)
				}
			}
			got, lines := readSink(t, path)
			sameIDs(t, got, want, delivered)
			// The resume re-sent at most the entries after the checkpoint:
			// fewer lines than two full replays.
			if lines >= 2*len(want) {
				t.Fatalf("%d lines for %d events: the resume started over", lines, len(want))
			}
			// A different selection cannot resume this checkpoint.
			cfg2.Resume = true
			if _, err := replay.Run(context.Background(), cfg2, replay.Selection{BySeq: true}); !errors.Is(err, replay.ErrBadCheckpoint) {
				t.Fatalf("resume of another selection: %v", err)
			}
		})
	}
}

// TestReplayReportsWhatIsMissing: a batch file gone and sequences no
// segment holds are listed, the rest is sent.
func TestReplayReportsWhatIsMissing(t *testing.T) {
	w := newWorld(t, backends[0], 1, 6)
	if err := w.bkt.Delete(context.Background(), "ingest/data/000002.batch"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out.ndjson")
	sum, err := replay.Run(context.Background(), w.config(t, path), replay.Selection{BySeq: true, FromSeq: 0, ToSeq: 9})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, p := range sum.Problems {
		kinds = append(kinds, p.String())
	}
	joined := strings.Join(kinds, "\n")
	if sum.OK() || !strings.Contains(joined, "batch_missing: sequence 1 ingest/data/000002.batch") || !strings.Contains(joined, "gap: sequences 6..9") {
		t.Fatalf("problems:\n%s", joined)
	}
	got, _ := readSink(t, path)
	if len(got) != 5*6 {
		t.Fatalf("sent %d events, want the 30 of the 5 batches still there", len(got))
	}
}

// TestReplayDryRunSendsNothing: a dry run counts and prints, sends nothing.
func TestReplayDryRunSendsNothing(t *testing.T) {
	w := newWorld(t, backends[0], 1, 4)
	var out bytes.Buffer
	cfg := replay.Config{Bucket: w.bkt, JournalPrefix: journal.DefaultPrefix, Converter: convert.NewRegistry(), DryRun: &out}
	sum, err := replay.Run(context.Background(), cfg, replay.Selection{BySeq: true})
	if err != nil || !sum.OK() {
		t.Fatal(err, sum)
	}
	if sum.EventsSent != 24 || !strings.Contains(out.String(), "would send sequence 3 ingest/data/000004.batch") || !strings.Contains(out.String(), `"id":"b0001-e0"`) {
		t.Fatalf("dry run: %d events\n%s", sum.EventsSent, out.String())
	}
}

// gateSink tracks the requests in flight; with stall, the request of the
// first event waits until the context ends (a slow answer overtaken by
// later ones).
type gateSink struct {
	sink.Sink
	delay        time.Duration
	stall        bool
	n, in, maxIn atomic.Int32
	later        chan struct{} // closed when a request after the first was answered
	once         sync.Once
}

func (s *gateSink) Send(ctx context.Context, evs []json.RawMessage) error {
	s.n.Add(1)
	in := s.in.Add(1)
	defer s.in.Add(-1)
	for {
		m := s.maxIn.Load()
		if in <= m || s.maxIn.CompareAndSwap(m, in) {
			break
		}
	}
	first := bytes.Contains(evs[0], []byte(`"b0001-e0"`))
	if s.stall && first {
		<-ctx.Done()
		return ctx.Err()
	}
	time.Sleep(s.delay)
	err := s.Sink.Send(ctx, evs)
	if !first && s.later != nil {
		s.once.Do(func() { close(s.later) })
	}
	return err
}

// TestReplaySendsConcurrently: replay paces its sink requests with the
// consumer's limiter: adaptive keeps several in flight, sink_concurrency 1
// one at a time, and every event arrives either way.
func TestReplaySendsConcurrently(t *testing.T) {
	w := newWorld(t, backends[0], 1, 12)
	delivered := w.delivered(t)
	var want []string
	for id := range w.ingest {
		if w.ingest[id].Before(base.Add(time.Hour)) {
			want = append(want, id)
		}
	}
	for _, tc := range []struct {
		conc           int
		minMax, maxMax int32
	}{{0, 2, 32}, {1, 1, 1}, {3, 2, 3}} {
		t.Run(fmt.Sprintf("sink_concurrency=%d", tc.conc), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.ndjson")
			cfg := w.config(t, path)
			gs := &gateSink{Sink: cfg.Sink, delay: 5 * time.Millisecond}
			cfg.Sink, cfg.SinkConcurrency = gs, tc.conc
			sum, err := replay.Run(context.Background(), cfg, replay.Selection{From: base, To: base.Add(time.Hour)})
			if err != nil || !sum.OK() {
				t.Fatalf("replay: %v %+v", err, sum)
			}
			if m := gs.maxIn.Load(); m < tc.minMax || m > tc.maxMax {
				t.Fatalf("at most %d requests in flight, want %d..%d", m, tc.minMax, tc.maxMax)
			}
			got, _ := readSink(t, path)
			sameIDs(t, got, want, delivered)
			if sum.EventsSent != len(want) {
				t.Fatalf("summary says %d sent, want %d", sum.EventsSent, len(want))
			}
		})
	}
}

// TestReplayCheckpointWaitsForSlowBatch: when later requests are answered
// before an earlier one, the checkpoint does not pass the earlier one's
// entries; an interruption then re-sends them on --resume.
func TestReplayCheckpointWaitsForSlowBatch(t *testing.T) {
	w := newWorld(t, backends[0], 1, 12)
	delivered := w.delivered(t)
	dir := t.TempDir()
	path, ck := filepath.Join(dir, "out.ndjson"), filepath.Join(dir, "ck.json")
	sel := replay.Selection{BySeq: true, FromSeq: 0}
	cfg := w.config(t, path)
	cfg.Checkpoint, cfg.SinkConcurrency = ck, 4
	gs := &gateSink{Sink: cfg.Sink, stall: true, later: make(chan struct{})}
	cfg.Sink = gs
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-gs.later; time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := replay.Run(ctx, cfg, sel); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted replay: %v", err)
	}
	b, err := os.ReadFile(ck)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Have    bool   `json:"have_through"`
		Through uint64 `json:"through_sequence"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	// The first request holds the first 7 events: entry 1 and part of 2.
	if c.Have {
		t.Fatalf("checkpoint passed sequence %d while the first request was unanswered: %s", c.Through, b)
	}
	cfg2 := w.config(t, path)
	cfg2.Checkpoint, cfg2.Resume = ck, true
	sum, err := replay.Run(context.Background(), cfg2, sel)
	if err != nil || !sum.OK() {
		t.Fatalf("resume: %v %+v", err, sum)
	}
	t.Logf("resume: %+v; checkpoint was %s", sum, b)
	got, _ := readSink(t, path)
	var want []string
	for id := range w.ingest {
		want = append(want, id)
	}
	sameIDs(t, got, want, delivered)
}
