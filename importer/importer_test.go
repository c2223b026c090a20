package importer_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/importer"
	"github.com/bucketq/bucketq/internal/openmetertest"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/producer"
)

// openBuckets returns the source bucket and the queue's bucket and store:
// on the real S3 test server when the environment names one (each under a
// prefix of its own), else directory buckets.
func openBuckets(t *testing.T) (src objstore.Bucket, queue objstore.Bucket, store cas.Store) {
	t.Helper()
	open := func(conf []byte, dir string) (objstore.Bucket, cas.Store) {
		var (
			b   objstore.Bucket
			s   cas.Store
			err error
		)
		if conf != nil {
			b, s, err = bucket.Open(context.Background(), conf, nil)
		} else {
			b, s, err = bucket.OpenDir(dir)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b, s
	}
	if os.Getenv(storetest.S3EnvEndpoint) != "" || os.Getenv("CI") == "true" {
		src, _ = open(storetest.S3BucketYAML(t), "")
		queue, store = open(storetest.S3BucketYAML(t), "")
		return src, queue, store
	}
	src, _ = open(nil, t.TempDir())
	queue, store = open(nil, t.TempDir())
	return src, queue, store
}

func gzipBytes(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func zstdBytes(s string) []byte {
	w, _ := zstd.NewWriter(nil)
	defer w.Close()
	return w.EncodeAll([]byte(s), nil)
}

// corpus is the source objects and what importing them must give.
type corpus struct {
	objects map[string][]byte
	good    map[string]bool     // event ids every good row must be delivered under
	bad     map[string][]string // "object row" -> reason, of every dead letter expected
}

func (c *corpus) addBad(object string, row int, reason string) {
	c.bad[fmt.Sprintf("%s %d", object, row)] = append(c.bad[fmt.Sprintf("%s %d", object, row)], reason)
}

const badRowEvery = 17

// buildCorpus makes n objects of mixed formats and compressions with bad
// rows, plus a truncated gzip, an empty object and an empty gzip.
func buildCorpus(n, rowsPer int) *corpus {
	c := &corpus{objects: map[string][]byte{}, good: map[string]bool{}, bad: map[string][]string{}}
	for i := range n {
		var sb strings.Builder
		var name string
		switch i % 5 {
		case 0, 1, 2: // NDJSON CloudEvents: plain, gzip, zstd
			name = fmt.Sprintf("usage/2026/11/ce-%03d.ndjson", i)
			for r := 1; r <= rowsPer; r++ {
				if r%badRowEvery == 0 {
					sb.WriteString(`{"specversion":"1.0","id":"broken` + "\n")
					c.addBad(name+[]string{"", ".gz", ".zst"}[i%5], r, importer.ReasonRow)
					continue
				}
				id := fmt.Sprintf("ce-%d-%d", i, r)
				fmt.Fprintf(&sb, `{"specversion":"1.0","id":%q,"source":"import-test","type":"api-calls","subject":"customer-%d","time":"2026-11-01T00:00:00Z","data":{"n":%d}}`+"\n", id, r%7, r)
				c.good[id] = true
			}
		case 3: // CSV, mapped; gzip on odd objects
			name = fmt.Sprintf("usage/2026/11/rows-%03d.csv", i)
			sb.WriteString("customer,tokens,ts\n")
			for r := 1; r <= rowsPer; r++ {
				line := fmt.Sprintf("c-%d,%d,2026-11-02T10:00:00Z", r%5, r)
				if r%badRowEvery == 0 {
					line = fmt.Sprintf("c-%d,not-a-number,2026-11-02T10:00:00Z", r%5) // mapping fails
					c.addBad(name+[]string{"", ".gz"}[i%2], r, importer.ReasonRow)
				} else {
					obj := name + []string{"", ".gz"}[i%2]
					c.good[importer.DerivedID(obj, int64(r), []byte(line))] = true
				}
				sb.WriteString(line + "\n")
			}
		case 4: // JSON array, mapped
			name = fmt.Sprintf("usage/2026/11/arr-%03d.json", i)
			sb.WriteString("[\n")
			for r := 1; r <= rowsPer; r++ {
				el := fmt.Sprintf(`{"customer":"c-%d","tokens":%d,"ts":"2026-11-03T10:00:00Z"}`, r%3, r)
				if r%badRowEvery == 0 {
					el = `"not an object"`
					c.addBad(name, r, importer.ReasonRow)
				} else {
					c.good[importer.DerivedID(name, int64(r), []byte(el))] = true
				}
				if r > 1 {
					sb.WriteString(",\n")
				}
				sb.WriteString(el)
			}
			sb.WriteString("\n]\n")
		}
		data := []byte(sb.String())
		switch {
		case i%5 == 1 || (i%5 == 3 && i%2 == 1):
			name, data = name+".gz", gzipBytes(sb.String())
		case i%5 == 2:
			name, data = name+".zst", zstdBytes(sb.String())
		}
		c.objects[name] = data
	}
	// A truncated gzip: a whole first member (rows 1-3), then a second
	// member cut inside its header: rows 1-3 are delivered, the tail from
	// row 4 on is one import_object dead letter.
	var tr strings.Builder
	for r := 1; r <= 3; r++ {
		id := fmt.Sprintf("tr-%d", r)
		fmt.Fprintf(&tr, `{"specversion":"1.0","id":%q,"source":"import-test","type":"api-calls","subject":"c","time":"2026-11-01T00:00:00Z"}`+"\n", id)
		c.good[id] = true
	}
	second := gzipBytes(`{"specversion":"1.0","id":"lost","source":"s","type":"t","subject":"c"}` + "\n")
	c.objects["usage/2026/11/truncated.ndjson.gz"] = append(gzipBytes(tr.String()), second[:12]...)
	c.addBad("usage/2026/11/truncated.ndjson.gz", 4, importer.ReasonObject)
	c.objects["usage/2026/11/empty.ndjson"] = nil
	c.objects["usage/2026/11/empty.csv.gz"] = gzipBytes("")
	c.objects["other/not-matched.ndjson"] = []byte(`{"specversion":"1.0","id":"nope","source":"s","type":"t","subject":"c"}` + "\n")
	return c
}

var mapping = importer.Mapping{
	Type:    `"tokens"`,
	Source:  `"import-test"`,
	Subject: `row.customer`,
	Time:    `row.ts`,
	Data:    map[string]string{"tokens": `int(row.tokens)`},
}

// env is a queue with a real producer, and a consumer delivering to the
// fake OpenMeter.
type env struct {
	t          *testing.T
	src, queue objstore.Bucket
	store      cas.Store
	prod       *producer.Producer
	q          *manifest.Queue
	om         *openmetertest.Server
}

func newEnv(t *testing.T, c *corpus) *env {
	src, queue, store := openBuckets(t)
	ctx := context.Background()
	for name, data := range c.objects {
		if err := src.Upload(ctx, name, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t, src: src, queue: queue, store: store, om: openmetertest.New(openmetertest.Options{})}
	t.Cleanup(e.om.Close)
	m := producer.NewMetrics(nil)
	e.q = manifest.NewQueue(store, producer.DefaultManifestPath, producer.QueueOptions(m))
	var err error
	e.prod, err = producer.New(queue, e.q, producer.Config{FlushInterval: 20 * time.Millisecond}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.prod.Close(context.Background()) })
	return e
}

func (e *env) importer(app producer.Appender, mod func(*importer.Config)) *importer.Importer {
	e.t.Helper()
	mp, err := importer.Compile(mapping)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := importer.Config{
		Source: e.src, Queue: e.queue, Store: e.store, App: app,
		Job: "nov", Prefix: "usage/", Match: "*", Mapper: mp, Parallel: 3, ChunkRows: 7, MaxErrors: -1,
	}
	if mod != nil {
		mod(&cfg)
	}
	im, err := importer.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return im
}

// deliver runs a consumer until the fake OpenMeter holds want distinct
// events and the manifest is empty.
func (e *env) deliver(want int) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cq := manifest.NewQueue(e.store, producer.DefaultManifestPath, manifest.Options{})
	c, err := consumer.New(e.queue, cq, convert.NewRegistry(), sink.NewHTTP(e.om.Endpoint, "", sink.HTTPOptions{}),
		consumer.Config{PollInterval: 20 * time.Millisecond, DequeueInterval: 20 * time.Millisecond, DisableGC: true}, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		man, err := cq.Read(context.Background())
		if err == nil && len(man.Entries) == 0 && e.om.Distinct() >= want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("delivery did not finish: %d distinct of %d", e.om.Distinct(), want)
}

// checkDelivered: every good id exactly the expected set, and dead letters
// name every bad row.
func (e *env) check(c *corpus, maxDup int) {
	e.t.Helper()
	seen := map[string]int{}
	for _, ev := range e.om.Events() {
		seen[ev.ID]++
	}
	for id := range c.good {
		if seen[id] == 0 {
			e.t.Errorf("good row with id %s not delivered", id)
		}
	}
	for id := range seen {
		if !c.good[id] {
			e.t.Errorf("unexpected event %s delivered", id)
		}
	}
	if d := e.om.Duplicates(); d > maxDup {
		e.t.Errorf("%d duplicates delivered, want at most %d", d, maxDup)
	}
	got := map[string][]string{}
	err := e.queue.Iter(context.Background(), "ingest/dead-letter/", func(name string) error {
		rc, err := e.queue.Get(context.Background(), name)
		if err != nil {
			return err
		}
		defer rc.Close()
		var b bytes.Buffer
		b.ReadFrom(rc)
		dl, err := deadletter.Decode(b.Bytes())
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !strings.Contains(dl.Error, dl.Location) || dl.RecordIndex == nil || !strings.Contains(dl.Error, fmt.Sprintf("row %d", *dl.RecordIndex)) {
			e.t.Errorf("dead letter %s does not name its object and row: %+v", name, dl)
		}
		key := fmt.Sprintf("%s %d", dl.Location, *dl.RecordIndex)
		got[key] = append(got[key], dl.Reason)
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		e.t.Fatal(err)
	}
	for k, want := range c.bad {
		if strings.Join(got[k], ",") != strings.Join(want, ",") {
			e.t.Errorf("dead letters of %s: %v, want %v", k, got[k], want)
		}
	}
	for k := range got {
		if c.bad[k] == nil {
			e.t.Errorf("unexpected dead letter %s %v", k, got[k])
		}
	}
}

func TestImportDeliversEveryGoodRowOnceAndDeadLettersBadOnes(t *testing.T) {
	c := buildCorpus(40, 40)
	e := newEnv(t, c)
	sum, err := e.importer(e.prod, nil).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.ObjectsTotal != int64(len(c.objects)-1) || sum.ObjectsDone != sum.ObjectsTotal || sum.Events != int64(len(c.good)) || sum.DeadLettered != int64(len(c.bad)) {
		t.Fatalf("summary %+v; want %d objects, %d events, %d dead letters", sum, len(c.objects)-1, len(c.good), len(c.bad))
	}
	e.deliver(len(c.good))
	e.check(c, 0)

	// A second full run sends nothing new and adds no queue entry.
	before, _ := e.q.Read(context.Background())
	sum, err = e.importer(e.prod, nil).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	after, _ := e.q.Read(context.Background())
	if sum.Events != 0 || sum.ObjectsSkipped != sum.ObjectsTotal || sum.DeadLettered != 0 || after.NextSequence != before.NextSequence {
		t.Fatalf("second run: %+v, manifest next sequence %d -> %d", sum, before.NextSequence, after.NextSequence)
	}

	// --force imports everything again under the same ids: the metering
	// API sees duplicates only.
	sum, err = e.importer(e.prod, func(c *importer.Config) { c.Force = true }).Run(context.Background())
	if err != nil || sum.Events != int64(len(c.good)) {
		t.Fatalf("forced run: %+v, %v", sum, err)
	}
	e.deliver(len(c.good))
	if e.om.Distinct() != len(c.good) || e.om.Duplicates() != len(c.good) {
		t.Fatalf("forced run: %d distinct, %d duplicates; want %d and %d", e.om.Distinct(), e.om.Duplicates(), len(c.good), len(c.good))
	}
}

// crashingAppender commits its requests through the producer, but after
// the kill-th one it "dies": that request is committed, its caller never
// learns it (no checkpoint), and every later Append fails, as if the
// process were SIGKILLed right after a commit, the worst moment. With dead
// set it shares its death with a crashingStore: whichever dies first
// kills both (kill 0: only the store kills).
type crashingAppender struct {
	app   producer.Appender
	kill  int64
	calls atomic.Int64
	dead  *atomic.Bool
}

var errKilled = errors.New("killed")

func (a *crashingAppender) Append(ctx context.Context, h format.Header, recs [][]byte) error {
	if a.dead != nil && a.dead.Load() {
		return errKilled
	}
	n := a.calls.Add(1)
	if a.kill > 0 && n > a.kill {
		return errKilled
	}
	if err := a.app.Append(ctx, h, recs); err != nil {
		return err
	}
	if n == a.kill {
		if a.dead != nil {
			a.dead.Store(true)
		}
		return errKilled
	}
	return nil
}

func TestImportResumesAfterKills(t *testing.T) {
	c := buildCorpus(25, 30)
	e := newEnv(t, c)
	const parallel, chunk = 3, 7
	kills := 0
	for _, at := range []int64{5, 13, 22} {
		kills++
		a := &crashingAppender{app: e.prod, kill: at}
		_, err := e.importer(a, nil).Run(context.Background())
		if !errors.Is(err, errKilled) {
			t.Fatalf("run killed at request %d: err = %v", at, err)
		}
	}
	sum, err := e.importer(e.prod, nil).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.ObjectsDone+sum.ObjectsSkipped != sum.ObjectsTotal {
		t.Fatalf("resumed run: %+v", sum)
	}
	e.deliver(len(c.good))
	// Duplicates: at most the requests in flight at each kill (one per
	// worker), each at most one chunk.
	e.check(c, kills*parallel*chunk)
	t.Logf("3 kills: %d duplicates delivered (bound %d)", e.om.Duplicates(), kills*parallel*chunk)
}

func TestImportMaxErrorsStops(t *testing.T) {
	c := buildCorpus(10, 40)
	e := newEnv(t, c)
	sum, err := e.importer(e.prod, func(c *importer.Config) { c.MaxErrors = 2; c.Parallel = 1 }).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Stopped == "" || sum.DeadLettered != 3 || sum.ObjectsDone == sum.ObjectsTotal {
		t.Fatalf("summary %+v: want stopped at the third dead letter", sum)
	}
}

func TestImportDryRunWritesNothing(t *testing.T) {
	c := buildCorpus(10, 20)
	e := newEnv(t, c)
	var out bytes.Buffer
	sum, err := e.importer(nil, func(c *importer.Config) { c.DryRun = true; c.DryRunOut = &out; c.Queue, c.Store = nil, nil }).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Events != int64(len(c.good)) || sum.DeadLettered != int64(len(c.bad)) {
		t.Fatalf("dry run %+v", sum)
	}
	if !strings.Contains(out.String(), "dead letter import_row: object usage/2026/11/") {
		t.Fatalf("dry-run output lacks the bad rows:\n%s", out.String())
	}
	var n int
	e.queue.Iter(context.Background(), "", func(string) error { n++; return nil }, objstore.WithRecursiveIter())
	if n != 0 {
		t.Fatalf("dry run wrote %d objects to the queue's bucket", n)
	}
}

// TestImportRefusesDamagedCheckpoint: a checkpoint that was truncated,
// emptied, bit-flipped or hand-edited stops the job with an error naming
// the checkpoint, never a panic and never rows skipped that were not done.
func TestImportRefusesDamagedCheckpoint(t *testing.T) {
	c := buildCorpus(4, 10)
	e := newEnv(t, c)
	ctx := context.Background()
	if _, err := e.importer(e.prod, nil).Run(ctx); err != nil {
		t.Fatal(err)
	}
	name := importer.CheckpointName("ingest", "nov")
	good, _, err := e.store.Read(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var ck importer.Checkpoint
	if err := json.Unmarshal(good, &ck); err != nil {
		t.Fatal(err)
	}
	var first string
	for k := range ck.Objects {
		if first == "" || k < first {
			first = k
		}
	}
	edit := func(f func(*importer.Checkpoint)) []byte {
		var c2 importer.Checkpoint
		json.Unmarshal(good, &c2)
		f(&c2)
		b, _ := json.Marshal(c2)
		return b
	}
	flip := append([]byte(nil), good...)
	flip[bytes.Index(flip, []byte(`"rows"`))+1] ^= 0x04 // "rows" -> "vows"
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", []byte{}, "is not a checkpoint"},
		{"truncated", good[:len(good)/2], "is not a checkpoint"},
		{"bit-flipped key", flip, "unknown field"},
		{"trailing data", append(append([]byte(nil), good...), []byte(`{}`)...), "data after its JSON object"},
		{"other job", edit(func(c *importer.Checkpoint) { c.Job = "dec" }), `is of job "dec", not "nov"`},
		{"negative rows", edit(func(c *importer.Checkpoint) {
			s := c.Objects[first]
			s.Rows = -3
			c.Objects[first] = s
		}), "negative"},
		{"rows beyond the object", edit(func(c *importer.Checkpoint) {
			s := c.Objects[first]
			s.Rows, s.Done = 1_000_000, false
			c.Objects[first] = s
		}), "says rows 1..1000000 of this object are done, but it has only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, v, err := e.store.Read(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.WriteIf(ctx, name, tc.data, v); err != nil {
				t.Fatal(err)
			}
			_, err = e.importer(e.prod, nil).Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), name) {
				t.Fatalf("Run with a %s checkpoint: err = %v, want one naming %s and saying %q", tc.name, err, name, tc.want)
			}
			// Refused on decode: a *CorruptError naming the checkpoint.
			var ce *importer.CorruptError
			if tc.name != "rows beyond the object" && (!errors.As(err, &ce) || ce.Object != name || ce.Checkpoint != name) {
				t.Fatalf("Run with a %s checkpoint: %v (%T) is not a *CorruptError naming %s", tc.name, err, err, name)
			}
		})
	}
}

// TestImportRefusesOddJobsAndPrefixes: hostile --job and --prefix values
// are refused with an error naming them before anything is read.
func TestImportRefusesOddJobsAndPrefixes(t *testing.T) {
	for _, job := range []string{"", ".", "..", "/", "a/b", "../x", strings.Repeat("j", 129), "ü", "a\x00b", "a b", "a\\b", "\u202etxt"} {
		if err := importer.CheckJob(job); err == nil || !strings.Contains(err.Error(), "job name") {
			t.Errorf("CheckJob(%q) = %v, want an error naming the job", job, err)
		}
	}
	for _, job := range []string{"nov-2026", "a.b_c", strings.Repeat("j", 128), "..a"} {
		if err := importer.CheckJob(job); err != nil {
			t.Errorf("CheckJob(%q) = %v", job, err)
		}
	}
	for _, p := range []string{"../", "usage/../../etc", "./usage", "/abs", "a/./b", "a\\b", "a\nb"} {
		_, err := importer.New(importer.Config{Source: objstore.NewInMemBucket(), Job: "j", Prefix: p, DryRun: true})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("prefix %q", p)) {
			t.Errorf("New with prefix %q: err = %v, want one naming the prefix", p, err)
		}
	}
	for _, p := range []string{"", "usage/", "usage/2026/11/", "a..b/", "ü/"} {
		if err := importer.CheckPrefix(p); err != nil {
			t.Errorf("CheckPrefix(%q) = %v", p, err)
		}
	}
}
