package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

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
	"github.com/bucketq/bucketq/producer"
	"github.com/bucketq/bucketq/replay"
)

// Issue 12's scenario on the S3 test server: five simulated hours of
// ingestion (100k events), delivered by a consumer with the journal on and
// GC compacting it, replayed by `bucketq replay`.
const (
	scenarioSteps     = 125               // ingestion instants, one every scenarioStep of simulated time
	scenarioStep      = 144 * time.Second // 125 steps: five hours; the 25th is exactly on each hour
	scenarioAppenders = 4                 // concurrent Appends per step, over two producers
	scenarioPerAppend = 200               // events per Append: 800 a step, 100,000 in all
	scenarioSpan      = 2 * time.Second   // the journal's compaction window, scaled to the run
	scenarioGC        = 250 * time.Millisecond
)

var scenarioBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// seqLog records every manifest entry the consumer read: which batch file
// each sequence names, independently of the journal.
type seqLog struct {
	cas.Store
	mu  sync.Mutex
	loc map[uint64]string
}

func (s *seqLog) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	b, v, err := s.Store.Read(ctx, name)
	if err == nil {
		if m, derr := manifest.Decode(b); derr == nil {
			s.mu.Lock()
			for _, e := range m.Entries {
				s.loc[e.Sequence] = e.Location
			}
			s.mu.Unlock()
		}
	}
	return b, v, err
}

func (s *seqLog) locations(from, to uint64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for seq, l := range s.loc {
		if seq >= from && seq <= to {
			out = append(out, l)
		}
	}
	return out
}

// readOnly is the bucket replay gets: any write or delete is recorded and
// refused.
type readOnly struct {
	objstore.Bucket
	mu     sync.Mutex
	writes []string
}

func (b *readOnly) refuse(what string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes = append(b.writes, what)
	return fmt.Errorf("replay wrote to the bucket: %s", what)
}

func (b *readOnly) Upload(_ context.Context, name string, _ io.Reader, _ ...objstore.ObjectUploadOption) error {
	return b.refuse("upload " + name)
}

func (b *readOnly) Delete(_ context.Context, name string) error { return b.refuse("delete " + name) }

// idsOf returns the event ids in the given batch files.
func idsOf(t *testing.T, bkt objstore.Bucket, locs []string) []string {
	t.Helper()
	var ids []string
	for _, l := range locs {
		batch := readBatch(t, bkt, l)
		for _, r := range batch.Records {
			var e struct{ ID string }
			if err := json.Unmarshal(r, &e); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// sameEvents fails unless the events (id -> compact JSON, and how many
// lines carried them) are exactly want, each once, byte-identical to
// what the consumer delivered.
func sameEvents(t *testing.T, what string, got map[string][]byte, lines int, want []string, delivered map[string][]byte) {
	t.Helper()
	var missing, extra []string
	wantSet := make(map[string]bool, len(want))
	for _, id := range want {
		wantSet[id] = true
		if _, ok := got[id]; !ok {
			missing = append(missing, id)
		}
	}
	for id, b := range got {
		if !wantSet[id] {
			extra = append(extra, id)
		} else if !bytes.Equal(b, delivered[id]) {
			t.Fatalf("%s: event %s replayed as %s, delivered as %s", what, id, b, delivered[id])
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing)+len(extra) > 0 || lines != len(want) {
		t.Fatalf("%s: %d events in %d lines, want the %d of the window once each; missing %d %v, extra %d %v",
			what, len(got), lines, len(want), len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))])
	}
}

// readEvents reads a file: sink's lines: events by id, and the line count.
func readEvents(t *testing.T, path string) (map[string][]byte, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ ID string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		out[e.ID] = append([]byte(nil), sc.Bytes()...)
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out, n
}

// TestReplayScenarioS3 is issue 12's scenario on the S3 test server. Two
// producers ingest 100,000 events at 125 instants over five simulated
// hours (their clocks set per instant, so each event's ingestion time is
// known), a consumer with the journal delivers them to the fake OpenMeter
// while GC runs every 250 ms and compacts the journal (2 s windows). In
// the middle, a replay of the history journaled so far runs beside the
// live producers, consumer and GC through a bucket that refuses writes:
// it writes nothing and sends exactly that history. At the end
// `bucketq replay --from/--to` of the second hour and `--from-seq/--to-seq`
// of the middle third of the sequences into file: sinks send exactly the
// delivered events of the window (ids compared with the instants and with
// the batch files the manifest named; bytes with what was delivered),
// from a compacted journal.
func TestReplayScenarioS3(t *testing.T) {
	if testing.Short() {
		t.Skip("100k events through S3")
	}
	yaml := storetest.S3BucketYAML(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	bkt, store, err := bucket.Open(ctx, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	om := openmetertest.New(openmetertest.Options{})
	defer om.Close()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))

	seqs := &seqLog{Store: store, loc: map[uint64]string{}}
	jm := journal.NewMetrics(nil)
	j, err := journal.New(bkt, journal.Config{Retention: 24 * time.Hour, CompactSpan: scenarioSpan, CompactAge: scenarioGC}, jm)
	if err != nil {
		t.Fatal(err)
	}
	q := manifest.NewQueue(seqs, producer.DefaultManifestPath, consumer.QueueOptions(nil))
	c, err := consumer.New(bkt, q, convert.NewRegistry(), sink.NewHTTP(om.Endpoint, "", sink.HTTPOptions{}),
		consumer.Config{PollInterval: 10 * time.Millisecond, DequeueInterval: 20 * time.Millisecond, GCInterval: scenarioGC, Journal: j}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	cdone := make(chan error, 1)
	go func() { cdone <- c.Run(ctx) }()

	var sim atomic.Int64 // the producers' clock, in Unix ms
	sim.Store(scenarioBase.UnixMilli())
	var prods []*producer.Producer
	for range 2 {
		p, err := producer.New(bkt, manifest.NewQueue(store, producer.DefaultManifestPath, manifest.Options{}), producer.Config{FlushInterval: 2 * time.Millisecond}, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		p.SetClock(func() time.Time { return time.UnixMilli(sim.Load()) })
		prods = append(prods, p)
	}
	ingested := map[string]time.Time{} // event id -> ingestion time
	step := func(i int) {
		at := scenarioBase.Add(time.Duration(i) * scenarioStep)
		sim.Store(at.UnixMilli())
		var g errgroup.Group
		for a := range scenarioAppenders {
			var recs [][]byte
			for e := range scenarioPerAppend {
				id := fmt.Sprintf("t%03d-a%d-e%03d", i, a, e)
				ingested[id] = at
				recs = append(recs, fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"scenario","type":"usage","subject":"cust-%d","time":%q,"data":{"tokens":%d}}`,
					id, e%7, at.Format(time.RFC3339), e))
			}
			g.Go(func() error { return prods[a%len(prods)].Append(ctx, format.EventsHeader, recs) })
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("instant %d: %v", i, err)
		}
	}
	// The head of the queue: every sequence below it was dequeued, hence
	// journaled (RFC 0004).
	head := func() uint64 {
		m, err := q.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Entries) > 0 {
			return m.Entries[0].Sequence
		}
		return m.NextSequence
	}

	for i := range scenarioSteps / 2 {
		step(i)
	}
	// Replay beside the live processes: the history up to the sequence
	// the consumer has dequeued through now.
	waitFor(t, func() bool { return head() > 0 }, &logs)
	liveTo := head() - 1
	ro := &readOnly{Bucket: bkt}
	liveOut := filepath.Join(t.TempDir(), "live.ndjson")
	liveSink, err := sink.FromURL("file:"+liveOut, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	liveDone := make(chan error, 1)
	go func() {
		sum, err := replay.Run(ctx, replay.Config{Bucket: ro, JournalPrefix: journal.DefaultPrefix, Converter: convert.NewRegistry(), Sink: liveSink}, replay.Selection{BySeq: true, FromSeq: 0, ToSeq: liveTo})
		if err == nil && !sum.OK() {
			err = fmt.Errorf("problems: %v", sum.Problems)
		}
		liveDone <- err
	}()
	for i := scenarioSteps / 2; i < scenarioSteps; i++ {
		step(i)
	}
	produced := time.Since(start)
	if err := <-liveDone; err != nil {
		t.Fatalf("replay beside the live consumer: %v", err)
	}
	liveSink.Close()
	if len(ro.writes) > 0 {
		t.Fatalf("replay wrote to the bucket: %v", ro.writes)
	}
	for _, p := range prods {
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	total := scenarioSteps * scenarioAppenders * scenarioPerAppend
	waitFor(t, func() bool {
		m, err := q.Read(ctx)
		return err == nil && len(m.Entries) == 0 && om.Distinct() == total
	}, &logs)
	delivered := time.Since(start)
	cancel()
	if err := <-cdone; err != nil {
		t.Fatal(err)
	}
	journaling := time.Since(start) // every segment was written within it

	// One more GC cycle, once every window has closed: the journal is
	// compacted to about one segment per window of the run.
	j.SetClock(func() time.Time { return time.Now().Add(time.Minute) })
	if _, err := c.CollectGarbage(context.Background()); err != nil {
		t.Fatal(err)
	}
	segs, err := j.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	writes := int(testutil.ToFloat64(jm.Writes))
	windows := int(journaling/scenarioSpan) + 2 // aligned windows it can meet
	t.Logf("produced in %v, delivered in %v; %d journal segments written, %d left after compaction (%d windows), %d compacted; %d duplicate deliveries",
		produced.Round(time.Millisecond), delivered.Round(time.Millisecond), writes, len(segs), windows, int(testutil.ToFloat64(jm.SegmentsCompacted)), om.Duplicates())
	if writes < 3*windows || len(segs) > windows {
		t.Fatalf("%d segments written, %d left: compaction should leave at most one per %v window (%d)", writes, len(segs), scenarioSpan, windows)
	}

	dels := map[string][]byte{}
	for _, e := range om.Events() {
		var b bytes.Buffer
		if err := json.Compact(&b, e.Raw); err != nil {
			t.Fatal(err)
		}
		dels[e.ID] = b.Bytes()
	}
	got, lines := readEvents(t, liveOut)
	sameEvents(t, fmt.Sprintf("replay of sequences 0..%d beside the live consumer", liveTo), got, lines, idsOf(t, bkt, seqs.locations(0, liveTo)), dels)

	conf := filepath.Join(t.TempDir(), "s3.yaml")
	indented := "object_store:\n  " + strings.ReplaceAll(strings.TrimSpace(string(yaml)), "\n", "\n  ") + "\n"
	if err := os.WriteFile(conf, []byte(indented), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(out string, args ...string) (map[string][]byte, int) {
		t.Helper()
		var stderr bytes.Buffer
		args = append([]string{"replay", "--config", conf, "--quiet", "--sink", "file:" + out}, args...)
		if code := runMain(context.Background(), args, io.Discard, &stderr, func(string) string { return "" }); code != 0 {
			t.Fatalf("bucketq %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
		}
		return readEvents(t, out)
	}
	dir := t.TempDir()

	// The second hour by ingestion time: its instants 25..49, including
	// the one exactly at its start and none of the one at its end.
	from, to := scenarioBase.Add(time.Hour), scenarioBase.Add(2*time.Hour)
	var want []string
	for id, at := range ingested {
		if !at.Before(from) && at.Before(to) {
			want = append(want, id)
		}
	}
	got, lines = cli(filepath.Join(dir, "hour.ndjson"), "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
	sameEvents(t, "bucketq replay --from/--to of the second hour", got, lines, want, dels)
	t.Logf("replayed %d events of the second hour", len(want))

	// The middle third of the sequences.
	last := slices.Max(slices.Collect(maps.Keys(seqs.loc)))
	a, b := last/3, 2*last/3
	got, lines = cli(filepath.Join(dir, "seq.ndjson"), "--from-seq", fmt.Sprint(a), "--to-seq", fmt.Sprint(b))
	sameEvents(t, fmt.Sprintf("bucketq replay --from-seq %d --to-seq %d", a, b), got, lines, idsOf(t, bkt, seqs.locations(a, b)), dels)
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}
