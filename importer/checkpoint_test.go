package importer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/importer"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/fsstore"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

// recorder is an Appender that is durable at once and keeps how often
// each event id was appended: a fast stand-in for a producer where only
// the ids matter. Appends of events whose id starts with "big-" take a
// millisecond, so that big objects are still being read while many small
// ones end.
type recorder struct {
	mu      sync.Mutex
	ids     map[string]int
	appends int
}

func (r *recorder) Append(ctx context.Context, h format.Header, recs [][]byte) error {
	if h != format.EventsHeader {
		return fmt.Errorf("header %v", h)
	}
	ids := make([]string, len(recs))
	for i, rec := range recs {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(rec, &ev); err != nil {
			return err
		}
		ids[i] = ev.ID
	}
	if len(ids) > 0 && strings.HasPrefix(ids[0], "big-") {
		time.Sleep(time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]int{}
	}
	for _, id := range ids {
		r.ids[id]++
	}
	r.appends++
	return nil
}

// crashingStore is the checkpoint store of a process that dies at the
// write kill picks (given the write's number from 1, its object and
// bytes): that write lands if kill says so, its caller never learns it,
// the run's context is cancelled, and every later write, and every Append
// of a crashingAppender sharing dead, fails. It also keeps the size of the
// largest checkpoint object written.
type crashingStore struct {
	cas.Store
	checkpoint string
	dead       *atomic.Bool
	cancel     context.CancelCauseFunc
	kill       func(n int64, name string, data []byte) (kill, landed bool)

	n        atomic.Int64
	maxHead  atomic.Int64
	segments atomic.Int64 // segment writes
}

func (s *crashingStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	if s.dead.Load() {
		return "", errKilled
	}
	if name == s.checkpoint {
		if int64(len(data)) > s.maxHead.Load() {
			s.maxHead.Store(int64(len(data)))
		}
	} else {
		s.segments.Add(1)
	}
	n := s.n.Add(1)
	if s.kill != nil {
		if kill, landed := s.kill(n, name, data); kill {
			s.dead.Store(true)
			if landed {
				_, _ = s.Store.WriteIf(ctx, name, data, v)
			}
			s.cancel(errKilled)
			return "", errKilled
		}
	}
	return s.Store.WriteIf(ctx, name, data, v)
}

// manySmall writes n small NDJSON objects (1 to 3 CloudEvents each) under
// usage/2026/11/01/ into dir, every 64th a big one of 3000 rows, and
// returns the ids of all rows and the longest object name.
func manySmall(t *testing.T, dir string, n int) (map[string]bool, string) {
	t.Helper()
	ids := map[string]bool{}
	longest := ""
	if err := os.MkdirAll(filepath.Join(dir, "usage/2026/11/01"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("usage/2026/11/01/part-%05d.ndjson", i)
		rows, prefix := i%3+1, "small"
		if i%64 == 17 {
			rows, prefix = 3000, "big"
		}
		var b strings.Builder
		for r := 1; r <= rows; r++ {
			id := fmt.Sprintf("%s-%05d-%04d", prefix, i, r)
			fmt.Fprintf(&b, `{"specversion":"1.0","id":%q,"source":"bound-test","type":"t","subject":"s","time":"2026-11-01T00:00:00Z"}`+"\n", id)
			ids[id] = true
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if len(name) > len(longest) {
			longest = name
		}
	}
	return ids, longest
}

// TestImportCheckpointStaysBounded imports 2000 small objects on
// directory buckets, killed five times (the store dying at a random write,
// at a segment write, at the checkpoint write of a seal while another
// object has rows committed but is not done, that write lost or landed,
// and at random again), and checks that the checkpoint object never grew
// past a bound that does not depend on the object count, that every row
// is enqueued, more than once only within the kill bound, that a second
// full run enqueues nothing, and that objects added below names already
// done, or changed, are imported by a further run.
func TestImportCheckpointStaysBounded(t *testing.T) {
	const n, parallel, chunk = 2000, 4, 200
	dir := t.TempDir()
	srcDir := filepath.Join(dir, "src")
	ids, longest := manySmall(t, srcDir, n)
	src, err := bucket.OpenReaderDir(srcDir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	queue, store, err := bucket.OpenDir(filepath.Join(dir, "q"))
	if err != nil {
		t.Fatal(err)
	}
	defer queue.Close()
	ckName := importer.CheckpointName("ingest", "bound")

	// The bound: the checkpoint holds at most window-1 idle objects plus
	// one per worker, each entry at most this long.
	entry, _ := json.Marshal(map[string]importer.ObjectState{longest: {Size: 1 << 40, Modified: time.Date(2026, 11, 1, 0, 0, 0, 999_999_999, time.UTC), Rows: 1 << 40, Done: true}})
	bound := int64((importer.DefaultCheckpointWindow-1+parallel)*len(entry) + 256)
	if full := int64(n * (len(entry) - 2)); full < 4*bound {
		t.Fatalf("test too small: a checkpoint of every object (%d bytes) is not far above the bound %d", full, bound)
	}

	rec := &recorder{}
	run := func(kill func(n int64, name string, data []byte) (bool, bool)) (importer.Summary, *crashingStore, error) {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		dead := &atomic.Bool{}
		cs := &crashingStore{Store: store, checkpoint: ckName, dead: dead, cancel: cancel, kill: kill}
		im, err := importer.New(importer.Config{
			Source: src, Queue: queue, Store: cs, App: &crashingAppender{app: rec, dead: dead},
			Job: "bound", Prefix: "usage/", Parallel: parallel, ChunkRows: chunk, MaxErrors: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		sum, err := im.Run(ctx)
		if cs.maxHead.Load() > bound {
			t.Errorf("checkpoint object reached %d bytes, bound %d (independent of the %d objects)", cs.maxHead.Load(), bound, n)
		}
		t.Logf("run: %v, %d objects done, %d skipped, %d events, %d segments written, checkpoint ≤ %d bytes (bound %d): %v",
			time.Since(start).Round(time.Millisecond), sum.ObjectsDone, sum.ObjectsSkipped, sum.Events, cs.segments.Load(), cs.maxHead.Load(), bound, err)
		return sum, cs, err
	}
	head := func(data []byte) importer.Checkpoint {
		var ck importer.Checkpoint
		if err := json.Unmarshal(data, &ck); err != nil {
			t.Fatal(err)
		}
		return ck
	}
	segs := func() int64 {
		b, _, err := store.Read(context.Background(), ckName)
		if errors.Is(err, cas.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return head(b).Segments
	}
	// sealInFlight: a checkpoint write that seals a segment while an
	// object not done has rows committed.
	sealInFlight := func(landed bool) func(int64, string, []byte) (bool, bool) {
		before := segs()
		return func(_ int64, name string, data []byte) (bool, bool) {
			if name != ckName {
				return false, false
			}
			ck := head(data)
			if ck.Segments == before {
				return false, false
			}
			before = ck.Segments
			for _, st := range ck.Objects {
				if st.Rows > 0 && !st.Done {
					return true, landed
				}
			}
			return false, false
		}
	}
	at := func(k int64) func(int64, string, []byte) (bool, bool) {
		return func(n int64, _ string, _ []byte) (bool, bool) { return n == k, k%2 == 0 }
	}
	// Each kill is made just before its run: sealInFlight counts the
	// segments there are.
	kills := []struct {
		what string
		kill func() func(int64, string, []byte) (bool, bool)
	}{
		{"random write", func() func(int64, string, []byte) (bool, bool) { return at(1 + time.Now().UnixNano()%200) }},
		{"segment write, lost", func() func(int64, string, []byte) (bool, bool) {
			return func(_ int64, name string, _ []byte) (bool, bool) { return name != ckName, false }
		}},
		{"sealing checkpoint write with rows in flight, lost", func() func(int64, string, []byte) (bool, bool) { return sealInFlight(false) }},
		{"sealing checkpoint write with rows in flight, landed", func() func(int64, string, []byte) (bool, bool) { return sealInFlight(true) }},
		{"random write", func() func(int64, string, []byte) (bool, bool) { return at(1 + time.Now().UnixNano()%200) }},
	}
	for _, k := range kills {
		if _, _, err := run(k.kill()); !errors.Is(err, errKilled) {
			t.Fatalf("run to be killed at a %s: err = %v", k.what, err)
		}
	}
	sum, _, err := run(nil)
	if err != nil || sum.ObjectsDone+sum.ObjectsSkipped != n {
		t.Fatalf("resumed run: %+v, %v", sum, err)
	}
	dups := 0
	for id, c := range rec.ids {
		if !ids[id] {
			t.Errorf("unexpected id %s", id)
		}
		dups += c - 1
	}
	for id := range ids {
		if rec.ids[id] == 0 {
			t.Errorf("row %s was never enqueued", id)
		}
	}
	if max := len(kills) * parallel * chunk; dups > max {
		t.Errorf("%d rows enqueued twice, bound %d (kills × parallel × chunk)", dups, max)
	}
	t.Logf("%d kills: %d rows enqueued twice", len(kills), dups)
	st, err := importer.ReadCheckpoint(context.Background(), store, ckName, "bound")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Objects) != n || st.Head.Segments < int64(n/importer.DefaultCheckpointWindow/2) {
		t.Fatalf("checkpoint: %d objects, %d segments", len(st.Objects), st.Head.Segments)
	}

	// A second full run enqueues nothing.
	appends := rec.appends
	sum, _, err = run(nil)
	if err != nil || sum.ObjectsSkipped != n || sum.Events != 0 || rec.appends != appends {
		t.Fatalf("second full run: %+v, %d appends, %v", sum, rec.appends-appends, err)
	}

	// An object listed below names already done (a late export), and a
	// changed one, are imported by the next run; nothing else is.
	late := `{"specversion":"1.0","id":"late-1","source":"bound-test","type":"t","subject":"s"}` + "\n"
	changed := `{"specversion":"1.0","id":"changed-1","source":"bound-test","type":"t","subject":"s"}` + "\n"
	if err := os.WriteFile(filepath.Join(srcDir, "usage/2026/11/01/part-00000a.ndjson"), []byte(late), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(srcDir, "usage/2026/11/01/part-00001.ndjson"), []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, _, err = run(nil)
	if err != nil || sum.ObjectsDone != 2 || sum.Events != 2 || rec.ids["late-1"] != 1 || rec.ids["changed-1"] != 1 {
		t.Fatalf("run after a late and a changed object: %+v, %v; late-1 %d, changed-1 %d", sum, err, rec.ids["late-1"], rec.ids["changed-1"])
	}
}

// put writes data to name in store whatever is there.
func put(t *testing.T, store cas.Store, name string, data []byte) {
	t.Helper()
	_, v, err := store.Read(context.Background(), name)
	if err != nil && !errors.Is(err, cas.ErrNotExist) {
		t.Fatal(err)
	}
	if _, err := store.WriteIf(context.Background(), name, data, v); err != nil {
		t.Fatal(err)
	}
}

// TestImportReadsVersion1Checkpoint: a checkpoint of version 1 (every
// object's state in the one object) written by an older bucketq is
// resumed as it says: done objects are skipped, a partly read one goes on
// after its last committed row, one it does not name is imported whole;
// its first write makes it version 2 and seals the old states into a
// segment.
func TestImportReadsVersion1Checkpoint(t *testing.T) {
	c := buildCorpus(8, 20)
	e := newEnv(t, c)
	ctx := context.Background()
	if _, err := e.importer(&recorder{}, nil).Run(ctx); err != nil {
		t.Fatal(err)
	}
	name := importer.CheckpointName("ingest", "nov")
	st, err := importer.ReadCheckpoint(ctx, e.store, name, "nov")
	if err != nil {
		t.Fatal(err)
	}
	const partly, missing = "usage/2026/11/ce-000.ndjson", "usage/2026/11/ce-005.ndjson"
	objs := st.Objects
	if !objs[partly].Done || !objs[missing].Done {
		t.Fatalf("first run left %s %+v, %s %+v", partly, objs[partly], missing, objs[missing])
	}
	p := objs[partly]
	p.Rows, p.Done = 5, false
	objs[partly] = p
	delete(objs, missing)
	v1, _ := json.Marshal(map[string]any{"version": 1, "job": "nov", "objects": objs})
	put(t, e.store, name, v1)

	want := map[string]bool{}
	for r := 1; r <= 20; r++ {
		if r%badRowEvery == 0 {
			continue
		}
		if r > 5 {
			want[fmt.Sprintf("ce-0-%d", r)] = true
		}
		want[fmt.Sprintf("ce-5-%d", r)] = true
	}
	rec := &recorder{}
	// Window 4, 3 workers: the checkpoint object holds at most 3 idle
	// objects and 3 being read.
	sum, err := e.importer(rec, func(c *importer.Config) { c.CheckpointWindow = 4 }).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for id := range want {
		if rec.ids[id] != 1 {
			t.Errorf("row %s enqueued %d times, want once", id, rec.ids[id])
		}
	}
	for id := range rec.ids {
		if !want[id] {
			t.Errorf("row %s enqueued again: the version 1 checkpoint said it was done", id)
		}
	}
	st, err = importer.ReadCheckpoint(ctx, e.store, name, "nov")
	if err != nil {
		t.Fatal(err)
	}
	if st.Head.Version != importer.CheckpointVersion || st.Head.Segments == 0 || len(st.Head.Objects) > 4-1+3 || len(st.Objects) != int(sum.ObjectsTotal) {
		t.Fatalf("after the resume: head version %d, %d segments, %d objects in the head, %d in all (want %d)",
			st.Head.Version, st.Head.Segments, len(st.Head.Objects), len(st.Objects), sum.ObjectsTotal)
	}
	rec = &recorder{}
	if sum, err := e.importer(rec, nil).Run(ctx); err != nil || rec.appends != 0 || sum.ObjectsSkipped != sum.ObjectsTotal {
		t.Fatalf("a further run: %+v, %d appends, %v", sum, rec.appends, err)
	}
}

// segmentChain returns the names of the segments of checkpoint name,
// newest first, and their bytes.
func segmentChain(t *testing.T, store cas.Store, name string) ([]string, [][]byte) {
	t.Helper()
	ctx := context.Background()
	b, _, err := store.Read(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var ck importer.Checkpoint
	if err := json.Unmarshal(b, &ck); err != nil {
		t.Fatal(err)
	}
	var names []string
	var datas [][]byte
	sum := ck.Last
	for seq := ck.Segments; seq >= 1; seq-- {
		n := importer.SegmentName(name, seq, sum)
		b, _, err := store.Read(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		var s importer.Segment
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		names, datas = append(names, n), append(datas, b)
		sum = s.Prev
	}
	return names, datas
}

// TestImportRefusesDamagedCheckpointSegments: a segment that is missing,
// bit-flipped or forged (re-hashed, with the checkpoint pointing at it),
// and a checkpoint whose segment fields are edited, stop the job with an
// error naming the checkpoint, never a panic and never rows skipped.
func TestImportRefusesDamagedCheckpointSegments(t *testing.T) {
	e, name := importedInSegments(t, buildCorpus(12, 10))
	ctx, small := context.Background(), smallWindow
	good, _, err := e.store.Read(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	names, datas := segmentChain(t, e.store, name)
	if len(names) < 3 {
		t.Fatalf("%d segments, want 3 or more", len(names))
	}
	var head importer.Checkpoint
	json.Unmarshal(good, &head)
	editHead := func(f func(*importer.Checkpoint)) func() {
		return func() {
			h := head
			f(&h)
			b, _ := json.Marshal(h)
			put(t, e.store, name, b)
		}
	}
	// forgeAt rewrites the newest segment through f, stores it under its
	// new hash as segment seq (its own seq if 0) and points the checkpoint
	// at it; forge stores it under its own seq.
	forgeAt := func(seq int64, f func(*importer.Segment)) func() {
		return func() {
			var s importer.Segment
			json.Unmarshal(datas[0], &s)
			f(&s)
			b, _ := json.Marshal(s)
			if seq == 0 {
				seq = s.Seq
			}
			sum := sha256.Sum256(b)
			put(t, e.store, importer.SegmentName(name, seq, hex.EncodeToString(sum[:])), b)
			editHead(func(h *importer.Checkpoint) { h.Last = hex.EncodeToString(sum[:]) })()
		}
	}
	forge := func(f func(*importer.Segment)) func() { return forgeAt(0, f) }
	// rehash stores b as the newest segment under its hash and points the
	// checkpoint at it.
	rehash := func(b []byte) func() {
		return func() {
			sum := sha256.Sum256(b)
			put(t, e.store, importer.SegmentName(name, head.Segments, hex.EncodeToString(sum[:])), b)
			editHead(func(h *importer.Checkpoint) { h.Last = hex.EncodeToString(sum[:]) })()
		}
	}
	var older importer.Segment // segment K-2: its hash is segment K-1's prev
	json.Unmarshal(datas[1], &older)
	flip := append([]byte(nil), datas[1]...)
	flip[bytes.Index(flip, []byte(`"rows":`))+len(`"rows":`)] ^= 0x01 // a digit of rows
	// Each refusal is a *CorruptError naming the object at fault (object:
	// that one exactly, "" any segment of the checkpoint) and the field
	// (field; "-": not a CorruptError, a version this bucketq does not read).
	for _, tc := range []struct {
		name   string
		damage func()
		want   string
		object string
		field  string
	}{
		{"missing oldest segment", func() { e.queue.Delete(ctx, names[len(names)-1]) }, "which does not exist", names[len(names)-1], ""},
		{"bit-flipped segment", func() { put(t, e.store, names[1], flip) }, "is damaged", names[1], ""},
		{"truncated segment", func() { put(t, e.store, names[1], datas[1][:len(datas[1])/2]) }, "is damaged", names[1], ""},
		{"empty segment", func() { put(t, e.store, names[0], nil) }, "is damaged", names[0], ""},
		{"truncated segment, re-hashed", rehash(datas[0][:len(datas[0])/2]), "is not a segment", "", ""},
		{"segment count edited", editHead(func(h *importer.Checkpoint) { h.Segments++ }), "which does not exist", name, "segments"},
		{"segment count lowered", editHead(func(h *importer.Checkpoint) { h.Segments-- }), "is the hash of segment " + names[0], name, "segments"},
		{"last edited", editHead(func(h *importer.Checkpoint) { h.Last = strings.Repeat("0", 64) }), "which does not exist", importer.SegmentName(name, head.Segments, strings.Repeat("0", 64)), ""},
		{"last not a hash", editHead(func(h *importer.Checkpoint) { h.Last = "zz" }), `last "zz"`, name, "last"},
		{"segments without last", editHead(func(h *importer.Checkpoint) { h.Last = "" }), "want 0 and", name, "segments"},
		{"version 1 with segments", editHead(func(h *importer.Checkpoint) { h.Version = 1 }), "of version 1 has segments", name, "segments"},
		{"version 3", editHead(func(h *importer.Checkpoint) { h.Version = 3 }), "has version 3", "", "-"},
		{"segment of another job", forge(func(s *importer.Segment) { s.Job = "dec" }), `job "dec"`, "", "job"},
		{"segment of another version", forge(func(s *importer.Segment) { s.Version = 3 }), "has version 3", "", "version"},
		{"segment with another seq", forge(func(s *importer.Segment) { s.Seq++ }), "which does not exist", name, "segments"},
		{"segment renumbered in place", forgeAt(head.Segments, func(s *importer.Segment) { s.Seq-- }), fmt.Sprintf("has seq %d, want %d", head.Segments-1, head.Segments), "", "seq"},
		{"segment without prev", forge(func(s *importer.Segment) { s.Prev = "" }), "a prev iff seq > 1", "", "prev"},
		{"segment with a prev not a hash", forge(func(s *importer.Segment) { s.Prev = "ab" }), `prev "ab"`, "", "prev"},
		{"segment skipping one (prev of the one before)", forge(func(s *importer.Segment) { s.Prev = older.Prev }), "is the hash of segment " + names[2], "", "prev"},
		{"segment with negative rows", forge(func(s *importer.Segment) {
			for k, st := range s.Objects {
				st.Rows = -1
				s.Objects[k] = st
				break
			}
		}), "negative", "", "objects"},
		{"segment with an unknown key", rehash(bytes.Replace(datas[0], []byte(`"prev"`), []byte(`"prew"`), 1)), "unknown field", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.damage()
			defer func() {
				put(t, e.store, name, good)
				for i, n := range names {
					put(t, e.store, n, datas[i])
				}
			}()
			rec := &recorder{}
			_, err := e.importer(rec, small).Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), name) {
				t.Fatalf("Run with a %s: err = %v, want one naming %s and saying %q", tc.name, err, name, tc.want)
			}
			if rec.appends != 0 {
				t.Fatalf("Run with a %s appended %d requests", tc.name, rec.appends)
			}
			var ce *importer.CorruptError
			if tc.field == "-" {
				if errors.As(err, &ce) {
					t.Fatalf("Run with a %s: %v is a CorruptError", tc.name, err)
				}
				return
			}
			if !errors.As(err, &ce) {
				t.Fatalf("Run with a %s: %v (%T) is not a *CorruptError", tc.name, err, err)
			}
			if ce.Checkpoint != name || ce.Job != "nov" || ce.Field != tc.field || !strings.Contains(err.Error(), ce.Object) ||
				(tc.object != "" && ce.Object != tc.object) || (tc.object == "" && !strings.HasPrefix(ce.Object, name+".d/")) {
				t.Fatalf("Run with a %s: CorruptError{Checkpoint %q, Job %q, Object %q, Field %q}, want object %q, field %q", tc.name, ce.Checkpoint, ce.Job, ce.Object, ce.Field, tc.object, tc.field)
			}
		})
	}
	// Restored, the job is whole again.
	rec := &recorder{}
	if sum, err := e.importer(rec, small).Run(ctx); err != nil || rec.appends != 0 || sum.ObjectsSkipped != sum.ObjectsTotal {
		t.Fatalf("restored: %+v, %d appends, %v", sum, rec.appends, err)
	}
}

// FuzzCheckpointDecode: whatever bytes the checkpoint and its one segment
// hold (the segment stored under its true hash, which the checkpoint's
// "@SUM@" stands for), ReadCheckpoint does not panic, what it refuses as
// damaged is a *CorruptError naming the checkpoint or one of its segments,
// and what it accepts is of the job, has no negative counts, and reads
// back the same once written again.
func FuzzCheckpointDecode(f *testing.F) {
	mod := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	seg, _ := json.Marshal(importer.Segment{Version: 2, Job: "j", Seq: 1, Objects: map[string]importer.ObjectState{"a": {Size: 10, Modified: mod, Rows: 3, Done: true}}})
	f.Add([]byte(`{"version":2,"job":"j","segments":1,"last":"@SUM@","objects":{"b":{"size":5,"modified":"2026-11-01T00:00:00Z","rows":2}}}`), seg)
	f.Add([]byte(`{"version":1,"job":"j","objects":{"a":{"size":1,"modified":"2026-11-01T00:00:00Z","rows":1,"done":true,"error":"x"}}}`), []byte{})
	f.Add([]byte(`{"version":2,"job":"j","objects":{}}`), []byte(`{}`))
	f.Add([]byte(`{"version":2,"job":"j","partition":3,"objects":{}}`), []byte(`{}`))
	f.Add([]byte(`{"version":2,"job":"j","partition":-1,"objects":{}}`), []byte(`{}`))
	f.Add([]byte(`{"version":2,"job":"j","segments":2,"last":"@SUM@","objects":null}`), []byte(`{"version":2,"job":"j","seq":2,"prev":"00","objects":{}}`))
	f.Add([]byte(`{"version":2,"job":"j","segments":2,"last":"@SUM@","objects":{}}`), []byte(`{"version":2,"job":"j","seq":1,"prev":"","objects":{}}`))
	f.Add([]byte(`{"version":2,"job":"j","segments":1,"last":"@SUM@","objects":{}}`), []byte(`{"version":2,"job":"j","seq":1,"prev":"","objects":{"a":{"size":1,"modified":"2026-11-01T00:00:00Z","rows":-1}}}`))
	f.Add([]byte(`{"version":2,"job":"j","segments":1,"last":"@SUM@","objects":{}}`), []byte(`{"version":3,"job":"k","seq":1,"prev":"","objects":{}}`))
	const name = "ingest/import/j.checkpoint"
	f.Fuzz(func(t *testing.T, head, seg []byte) {
		sum := sha256.Sum256(seg)
		hs := hex.EncodeToString(sum[:])
		store := memstore.New()
		store.Put(name, bytes.ReplaceAll(head, []byte("@SUM@"), []byte(hs)))
		for seq := int64(1); seq <= 3; seq++ {
			store.Put(importer.SegmentName(name, seq, hs), seg)
		}
		st, err := importer.ReadCheckpoint(context.Background(), store, name, "j")
		if err != nil {
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error does not name the checkpoint: %v", err)
			}
			// Damage is a *CorruptError naming the object at fault; a
			// version this bucketq does not read is not damage.
			var ce *importer.CorruptError
			if errors.As(err, &ce) {
				if ce.Checkpoint != name || !strings.Contains(err.Error(), ce.Object) || (ce.Object != name && !strings.HasPrefix(ce.Object, name+".d/")) {
					t.Fatalf("CorruptError %+v: %v", ce, err)
				}
			} else if !strings.Contains(err.Error(), "this bucketq reads") {
				t.Fatalf("not a *CorruptError: %v", err)
			}
			return
		}
		if st.Head.Job != "j" || (st.Head.Version != 1 && st.Head.Version != importer.CheckpointVersion) || st.Head.Partition < 0 {
			t.Fatalf("accepted %+v", st.Head)
		}
		for obj, o := range st.Objects {
			if o.Rows < 0 || o.Size < 0 {
				t.Fatalf("accepted negative counts for %q: %+v", obj, o)
			}
		}
		again, _ := json.Marshal(st.Head)
		store.Put(name, again)
		st2, err := importer.ReadCheckpoint(context.Background(), store, name, "j")
		if err != nil {
			t.Fatalf("written again, %s is refused: %v", again, err)
		}
		if len(st2.Objects) != len(st.Objects) {
			t.Fatalf("written again: %d objects, was %d", len(st2.Objects), len(st.Objects))
		}
		for obj, o := range st.Objects {
			if o2 := st2.Objects[obj]; o2.Rows != o.Rows || o2.Size != o.Size || o2.Done != o.Done || !o2.Modified.Equal(o.Modified) || o2.Error != o.Error {
				t.Fatalf("written again, %q is %+v, was %+v", obj, o2, o)
			}
		}
	})
}

// listSegments returns the objects in the segment folder of checkpoint
// name, sorted, but for the lock files of a directory bucket.
func listSegments(t *testing.T, queue objstore.Bucket, name string) []string {
	t.Helper()
	var got []string
	err := queue.Iter(context.Background(), name+".d/", func(n string) error {
		if !strings.HasSuffix(n, fsstore.LockSuffix) {
			got = append(got, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	return got
}

// exists says whether object name is in store.
func exists(t *testing.T, store cas.Store, name string) bool {
	t.Helper()
	_, _, err := store.Read(context.Background(), name)
	if err != nil && !errors.Is(err, cas.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// segmentBytes encodes a segment and returns it with its name.
func segmentBytes(ckName string, s importer.Segment) (string, []byte) {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return importer.SegmentName(ckName, s.Seq, hex.EncodeToString(sum[:])), b
}

// TestImportDeletesOrphanSegmentAfterCrash: an import killed between the
// write of a new segment and the checkpoint write that refers to it
// leaves a segment no checkpoint refers to. The resumed run completes;
// if its own seal at that seq has other bytes, it deletes the orphan
// after its checkpoint write, and if it has the same bytes (same states)
// the orphan is its segment, in the chain, and kept. Either way only the
// chain's segments are left, and every row is delivered, twice only for
// the rows of the one lost checkpoint write.
func TestImportDeletesOrphanSegmentAfterCrash(t *testing.T) {
	for _, tc := range []struct {
		name         string
		resumeWindow int
		reused       bool
	}{
		{"resumed with another window: other bytes", 3, false},
		{"resumed with the same window: the same bytes", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := buildCorpus(15, 10)
			e := newEnv(t, c)
			ckName := importer.CheckpointName("ingest", "nov")
			const chunk = 7
			small := func(cfg *importer.Config) { cfg.CheckpointWindow, cfg.Parallel, cfg.ChunkRows = 2, 1, chunk }

			// Kill at the checkpoint write of the second seal, not
			// landed: its segment is written, the checkpoint still
			// names the first.
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			dead := &atomic.Bool{}
			var orphan string
			cs := &crashingStore{Store: e.store, checkpoint: ckName, dead: dead, cancel: cancel, kill: func(_ int64, name string, data []byte) (bool, bool) {
				if name != ckName {
					orphan = name
					return false, false
				}
				var ck importer.Checkpoint
				if err := json.Unmarshal(data, &ck); err != nil {
					t.Error(err)
				}
				return ck.Segments == 2, false
			}}
			_, err := e.importer(&crashingAppender{app: e.prod, dead: dead}, func(cfg *importer.Config) { small(cfg); cfg.Store = cs }).Run(ctx)
			if !errors.Is(err, errKilled) {
				t.Fatalf("run to be killed at the second seal: %v", err)
			}
			st, err := importer.ReadCheckpoint(context.Background(), e.store, ckName, "nov")
			if err != nil {
				t.Fatal(err)
			}
			if st.Head.Segments != 1 || !exists(t, e.store, orphan) || !strings.HasPrefix(orphan, ckName+".d/00000002-") {
				t.Fatalf("after the kill: checkpoint with %d segments, orphan %q exists %v", st.Head.Segments, orphan, exists(t, e.store, orphan))
			}

			sum, err := e.importer(e.prod, func(cfg *importer.Config) { small(cfg); cfg.CheckpointWindow = tc.resumeWindow }).Run(context.Background())
			if err != nil || sum.ObjectsDone+sum.ObjectsSkipped != sum.ObjectsTotal {
				t.Fatalf("resumed run: %+v, %v", sum, err)
			}
			names, _ := segmentChain(t, e.store, ckName) // fails the test if a chain segment is missing
			if inChain := slices.Contains(names, orphan); inChain != tc.reused || exists(t, e.store, orphan) != tc.reused {
				t.Errorf("segment %s left by the kill: in the chain %v, exists %v; want both %v", orphan, inChain, exists(t, e.store, orphan), tc.reused)
			}
			if listed := listSegments(t, e.queue, ckName); len(listed) != len(names) {
				t.Errorf("segments listed %v, chain %v: want only the chain's", listed, names)
			}
			e.deliver(len(c.good))
			e.check(c, chunk) // the rows of the one lost checkpoint write: one chunk of the one worker

			if sum, err := e.importer(&recorder{}, small).Run(context.Background()); err != nil || sum.ObjectsSkipped != sum.ObjectsTotal {
				t.Fatalf("a further run: %+v, %v", sum, err)
			}
		})
	}
}

// TestImportDeletesOnlyProvablyUnreferencedSegments: at start an import
// deletes a segment that has the seq of one in the checkpoint's chain but
// other bytes (the loser of two imports of the job), and nothing else: a
// segment newer than the chain may be the one another import of the job
// has just written and is about to refer to with its conditional
// checkpoint write; once that write lands, the chain needs it.
func TestImportDeletesOnlyProvablyUnreferencedSegments(t *testing.T) {
	e, ckName := importedInSegments(t, buildCorpus(12, 10))
	ctx, small := context.Background(), smallWindow
	headBytes, v, err := e.store.Read(ctx, ckName)
	if err != nil {
		t.Fatal(err)
	}
	var head importer.Checkpoint
	if err := json.Unmarshal(headBytes, &head); err != nil {
		t.Fatal(err)
	}
	chain, datas := segmentChain(t, e.store, ckName)
	if len(chain) < 3 {
		t.Fatalf("%d segments, want 3 or more", len(chain))
	}
	var prevK importer.Segment // segment K-1, whose hash the loser's segment K names
	json.Unmarshal(datas[1], &prevK)
	sumOf := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	mod := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	state := map[string]importer.ObjectState{"usage/2026/11/other.ndjson": {Size: 1, Modified: mod, Rows: 1, Done: true}}

	// The loser of a race at the last seal: seq K, prev the chain's K-1.
	loser, loserBytes := segmentBytes(ckName, importer.Segment{Version: 2, Job: "nov", Seq: head.Segments, Prev: sumOf(datas[1]), Objects: state})
	// A loser at seq 1, and one of an older seq whose chain it is not in.
	loser1, loser1Bytes := segmentBytes(ckName, importer.Segment{Version: 2, Job: "nov", Seq: 1, Objects: state})
	// The racer: its segment K+1 is written, its checkpoint write (on the
	// version read before our run) is still to come.
	racer, racerBytes := segmentBytes(ckName, importer.Segment{Version: 2, Job: "nov", Seq: head.Segments + 1, Prev: head.Last, Objects: state})
	racerHead, _ := json.Marshal(importer.Checkpoint{Version: 2, Job: "nov", Segments: head.Segments + 1, Last: sumOf(racerBytes), Objects: head.Objects})
	// Objects that are not segments of this checkpoint.
	junk := []string{ckName + ".d/notes.txt", ckName + ".d/00000001-" + strings.Repeat("A", 64), ckName + ".d/1-" + head.Last}
	for _, o := range []struct {
		name string
		data []byte
	}{{loser, loserBytes}, {loser1, loser1Bytes}, {racer, racerBytes}, {junk[0], []byte("x")}, {junk[1], []byte("x")}, {junk[2], []byte("x")}} {
		put(t, e.store, o.name, o.data)
	}

	rec := &recorder{}
	if sum, err := e.importer(rec, small).Run(ctx); err != nil || rec.appends != 0 || sum.ObjectsSkipped != sum.ObjectsTotal {
		t.Fatalf("run with orphans: %+v, %d appends, %v", sum, rec.appends, err)
	}
	for _, n := range []string{loser, loser1} {
		if exists(t, e.store, n) {
			t.Errorf("segment %s, of a seq the chain has with other bytes, was not deleted", n)
		}
	}
	for _, n := range append(append([]string{racer}, junk...), chain...) {
		if !exists(t, e.store, n) {
			t.Errorf("%s was deleted: it is not provably unreferenced", n)
		}
	}

	// The racer's conditional write lands: our run wrote no checkpoint.
	if _, err := e.store.WriteIf(ctx, ckName, racerHead, v); err != nil {
		t.Fatalf("the racer's checkpoint write: %v", err)
	}
	st, err := importer.ReadCheckpoint(ctx, e.store, ckName, "nov")
	if err != nil {
		t.Fatalf("the checkpoint the racer wrote: %v", err)
	}
	if st.Head.Segments != head.Segments+1 || st.Objects["usage/2026/11/other.ndjson"].Rows != 1 {
		t.Fatalf("the racer's checkpoint: %+v", st.Head)
	}
	if sum, err := e.importer(rec, small).Run(ctx); err != nil || rec.appends != 0 || sum.ObjectsSkipped != sum.ObjectsTotal {
		t.Fatalf("run after the racer's write: %+v, %d appends, %v", sum, rec.appends, err)
	}
}

// gatedStore holds the Read of one object until open is closed, and
// counts the reads of other segments started meanwhile.
type gatedStore struct {
	cas.Store
	gate    string
	open    chan struct{}
	dir     string
	started atomic.Int64 // segment reads started
}

func (s *gatedStore) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	if strings.HasPrefix(name, s.dir) {
		s.started.Add(1)
	}
	if name == s.gate {
		select {
		case <-s.open:
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
	}
	return s.Store.Read(ctx, name)
}

// TestImportReadsSegmentsInParallel: at start the segments are read
// several at once, but no more than 8 are read or held ahead of the chain
// check: with the newest one's read held, exactly 8 reads start.
func TestImportReadsSegmentsInParallel(t *testing.T) {
	e, ckName := importedInSegments(t, buildCorpus(40, 3))
	ctx, small := context.Background(), smallWindow
	chain, _ := segmentChain(t, e.store, ckName)
	if len(chain) < 16 {
		t.Fatalf("%d segments, want 16 or more", len(chain))
	}
	gs := &gatedStore{Store: e.store, gate: chain[0], open: make(chan struct{}), dir: ckName + ".d/"}
	rec := &recorder{}
	type result struct {
		sum importer.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := e.importer(rec, func(cfg *importer.Config) { small(cfg); cfg.Store = gs }).Run(ctx)
		done <- result{sum, err}
	}()
	const readAhead = 8
	deadline := time.Now().Add(10 * time.Second)
	for gs.started.Load() < readAhead && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for reads beyond the bound
	started := gs.started.Load()
	close(gs.open)
	r := <-done
	if started != readAhead {
		t.Errorf("with the newest segment's read held, %d segment reads started, want %d (parallel, and bounded)", started, readAhead)
	}
	if r.err != nil || rec.appends != 0 || r.sum.ObjectsSkipped != r.sum.ObjectsTotal {
		t.Fatalf("run: %+v, %d appends, %v", r.sum, rec.appends, r.err)
	}
	if got := gs.started.Load(); got != int64(len(chain)) {
		t.Errorf("%d segment reads for a chain of %d", got, len(chain))
	}
}

// TestImportCheckpointRecordsPartition: a job's checkpoint records the
// partition it imports into, and a run of the job into another partition
// is refused before it appends anything (its rows up to the checkpoint are
// queued in the first one). A checkpoint without the field (written before
// partitions) is partition 0's.
func TestImportCheckpointRecordsPartition(t *testing.T) {
	for _, tc := range []struct {
		name        string
		first       int  // partition of the first, interrupted run; -1: a checkpoint without the field
		second      int  // partition of the resume
		refused     bool // the resume fails with ErrOtherPartition
		wantInCkpt  int  // partition recorded after the resume (or the first run, if refused)
		wantAppends bool // the resume appended rows
	}{
		{name: "same partition 0", first: 0, second: 0, wantInCkpt: 0, wantAppends: true},
		{name: "same partition 3", first: 3, second: 3, wantInCkpt: 3, wantAppends: true},
		{name: "0 then 3", first: 0, second: 3, refused: true, wantInCkpt: 0},
		{name: "3 then 0", first: 3, second: 0, refused: true, wantInCkpt: 3},
		{name: "3 then 2", first: 3, second: 2, refused: true, wantInCkpt: 3},
		{name: "before partitions, then 0", first: -1, second: 0, wantInCkpt: 0, wantAppends: true},
		{name: "before partitions, then 1", first: -1, second: 1, refused: true, wantInCkpt: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := buildCorpus(4, 20)
			e := newEnv(t, c)
			ctx := context.Background()
			name := importer.CheckpointName("ingest", "nov")
			first := max(tc.first, 0)
			if _, err := e.importer(&recorder{}, func(c *importer.Config) { c.Partition = first }).Run(ctx); err != nil {
				t.Fatal(err)
			}
			// Interrupted: one object only partly done.
			st, err := importer.ReadCheckpoint(ctx, e.store, name, "nov")
			if err != nil {
				t.Fatal(err)
			}
			if st.Head.Partition != first {
				t.Fatalf("first run recorded partition %d, want %d", st.Head.Partition, first)
			}
			objs := st.Objects
			const partly = "usage/2026/11/ce-000.ndjson"
			o := objs[partly]
			o.Rows, o.Done = 5, false
			objs[partly] = o
			head := map[string]any{"version": 1, "job": "nov", "objects": objs}
			if tc.first >= 0 {
				head["partition"] = tc.first
			}
			b, _ := json.Marshal(head)
			put(t, e.store, name, b)

			rec := &recorder{}
			_, err = e.importer(rec, func(c *importer.Config) { c.Partition = tc.second }).Run(ctx)
			if tc.refused {
				if !errors.Is(err, importer.ErrOtherPartition) || !strings.Contains(err.Error(), fmt.Sprintf("into partition %d, not %d", first, tc.second)) ||
					!strings.Contains(err.Error(), fmt.Sprintf("resume with --partition %d", first)) {
					t.Fatalf("resume into partition %d: %v, want ErrOtherPartition naming both", tc.second, err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got := rec.appends > 0; got != tc.wantAppends {
				t.Errorf("resume appended %d times, want appends %v", rec.appends, tc.wantAppends)
			}
			st, err = importer.ReadCheckpoint(ctx, e.store, name, "nov")
			if err != nil {
				t.Fatal(err)
			}
			if st.Head.Partition != tc.wantInCkpt {
				t.Errorf("checkpoint records partition %d, want %d", st.Head.Partition, tc.wantInCkpt)
			}
		})
	}
}

// smallWindow seals a checkpoint segment every two objects, one object at
// a time, so that a small corpus makes a chain of segments.
func smallWindow(cfg *importer.Config) { cfg.CheckpointWindow, cfg.Parallel = 2, 1 }

// importedInSegments imports c once with smallWindow and returns the
// environment and the job's checkpoint name, for tests of what a second
// import makes of the segments the first one sealed.
func importedInSegments(t *testing.T, c *corpus) (*env, string) {
	t.Helper()
	e := newEnv(t, c)
	if _, err := e.importer(e.prod, smallWindow).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e, importer.CheckpointName("ingest", "nov")
}
