package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/thanos-io/objstore"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/importer"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/producer"
)

// killCorpus is the source of the SIGKILL test: NDJSON CloudEvents with
// ids (plain and gzip) and gzip CSV rows mapped without an id (so the
// import derives one), some objects longer than one Append (1000 rows) so
// kills land inside an object too. Every row carries a unique key: the
// CloudEvent's id, or the CSV row's key column (put in data.key).
type killCorpus struct {
	objects map[string][]byte
	keys    map[string]bool
}

func buildKillCorpus() *killCorpus {
	c := &killCorpus{objects: map[string][]byte{}, keys: map[string]bool{}}
	gz := func(b []byte) []byte {
		var out bytes.Buffer
		w := gzip.NewWriter(&out)
		w.Write(b)
		w.Close()
		return out.Bytes()
	}
	for i := range 20 {
		rows := 300
		if i%4 == 0 {
			rows = 2200 // three Appends
		}
		var b bytes.Buffer
		switch i % 3 {
		case 0, 1:
			for r := 1; r <= rows; r++ {
				id := fmt.Sprintf("ce-%02d-%05d", i, r)
				fmt.Fprintf(&b, `{"specversion":"1.0","id":%q,"source":"kill-test","type":"api-calls","subject":"customer-%d","time":"2026-11-01T00:00:00Z","data":{"n":%d}}`+"\n", id, r%9, r)
				c.keys[id] = true
			}
			name := fmt.Sprintf("usage/ce-%02d.ndjson", i)
			if i%3 == 1 {
				c.objects[name+".gz"] = gz(b.Bytes())
			} else {
				c.objects[name] = b.Bytes()
			}
		case 2:
			b.WriteString("key,customer,tokens,model,region,ts\n")
			for r := 1; r <= rows; r++ {
				key := fmt.Sprintf("csv-%02d-%05d", i, r)
				fmt.Fprintf(&b, "%s,c-%d,%d,gpt-%d,eu-%d,2026-11-02T10:00:00Z\n", key, r%5, r, r%3, r%2)
				c.keys[key] = true
			}
			c.objects[fmt.Sprintf("usage/rows-%02d.csv.gz", i)] = gz(b.Bytes())
		}
	}
	return c
}

// TestImportProcessSurvivesSIGKILL builds bucketq, runs `bucketq import
// --job` on a directory source (and on the S3 test server when it is
// configured), SIGKILLs the process three times at random points of its
// progress (once right after a checkpoint write that sealed a segment
// while another object was part-read), resumes it with the same --job each
// time, and then reads every batch the queue's manifest holds: every row is
// enqueued, at least once, and more than once only within the bound RFC
// 0006 ("Imported rows") documents (per kill, the rows of one uncommitted
// Append per object being read); mapped rows keep one derived id across the
// resumes; a further full run enqueues nothing.
func TestImportProcessSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs bucketq import processes")
	}
	bin := filepath.Join(t.TempDir(), "bucketq")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/bucketq/bucketq/cmd/bucketq").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bucketq: %v\n%s", err, out)
	}
	t.Run("dir", func(t *testing.T) {
		dir := t.TempDir()
		src, q := filepath.Join(dir, "src"), filepath.Join(dir, "q")
		mustMkdir(t, src)
		queue, store, err := bucket.OpenDir(mustMkdir(t, q))
		if err != nil {
			t.Fatal(err)
		}
		defer queue.Close()
		c := buildKillCorpus()
		for name, data := range c.objects {
			p := filepath.Join(src, name)
			mustMkdir(t, filepath.Dir(p))
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		runKillTest(t, bin, killConfig(t, map[string]any{"bucket_dir": q}), []string{"--source-dir", src}, c, queue, store)
	})
	t.Run("s3", func(t *testing.T) {
		srcYAML, qYAML := storetest.S3BucketYAML(t), storetest.S3BucketYAML(t)
		srcBkt, _, err := bucket.Open(context.Background(), srcYAML, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer srcBkt.Close()
		queue, store, err := bucket.Open(context.Background(), qYAML, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer queue.Close()
		c := buildKillCorpus()
		for name, data := range c.objects {
			if err := srcBkt.Upload(context.Background(), name, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		}
		var qs, is any
		if err := yaml.Unmarshal(qYAML, &qs); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(srcYAML, &is); err != nil {
			t.Fatal(err)
		}
		runKillTest(t, bin, killConfig(t, map[string]any{"object_store": qs, "import": map[string]any{"source": is}}), nil, c, queue, store)
	})
}

func mustMkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// killConfig writes the config file: base plus the CSV mapping (six
// fields, no id: the import derives it) and a checkpoint window of 2.
func killConfig(t *testing.T, base map[string]any) string {
	t.Helper()
	imp, _ := base["import"].(map[string]any)
	if imp == nil {
		imp = map[string]any{}
	}
	imp["mapping"] = map[string]any{
		"type": `"tokens"`, "source": `"kill-test"`, "subject": "row.customer", "time": "row.ts",
		"data": map[string]string{"key": "row.key", "tokens": "int(row.tokens)", "model": "row.model", "region": "row.region"},
	}
	// A small window: segments are sealed every two finished objects,
	// so kills land around seals.
	imp["checkpoint_window"] = 2
	base["import"] = imp
	base["flush_interval"] = "50ms"
	base["log_level"] = "warn"
	b, err := yaml.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "bucketq.yaml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const killJob, killParallel, killChunkRows = "kill", 4, 1000

// ckProgress is what the job's checkpoint says.
type ckProgress struct {
	rows     int64 // committed rows, in the checkpoint and its segments
	done     bool  // every object it names is done
	segments int64
	// inFlight: objects in the checkpoint object itself with rows
	// committed but not done (being read when it was written).
	inFlight int
}

// committedRows reads the job's checkpoint and its segments (all zero
// before the first write).
func committedRows(ctx context.Context, store cas.Store) (ckProgress, error) {
	ck, err := importer.ReadCheckpoint(ctx, store, importer.CheckpointName("ingest", killJob), killJob)
	if errors.Is(err, cas.ErrNotExist) {
		return ckProgress{}, nil
	}
	if err != nil {
		return ckProgress{}, err
	}
	p := ckProgress{done: true, segments: ck.Head.Segments}
	for _, o := range ck.Objects {
		p.rows += o.Rows
		p.done = p.done && o.Done
	}
	for _, o := range ck.Head.Objects {
		if o.Rows > 0 && !o.Done {
			p.inFlight++
		}
	}
	return p, nil
}

func runKillTest(t *testing.T, bin, cfg string, extra []string, c *killCorpus, queue objstore.Bucket, store cas.Store) {
	ctx := context.Background()
	total := int64(len(c.keys))
	args := append([]string{"import", "--config", cfg, "--job", killJob, "--parallel", fmt.Sprint(killParallel), "--prefix", "usage/"}, extra...)
	run := func() (*exec.Cmd, *syncBuffer, chan struct{}) { return startChild(t, bin, args...) }
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	kills, sealKills := 0, 0
	for k := range 3 {
		before, err := committedRows(ctx, store)
		if err != nil {
			t.Fatal(err)
		}
		// Kill once the checkpoint counts a random number of further
		// rows (in the first half of what is left), after a random pause
		// of up to 30 ms so the kill falls anywhere in an Append or a
		// checkpoint write; the first kill may come before any commit.
		// The second kill comes as soon as a checkpoint write has sealed
		// a segment while another object's rows are committed but it is
		// not done: the sealed states and the one still being read are
		// split between a segment and the checkpoint object.
		target := before.rows + rng.Int64N(max((total-before.rows)/2, 1))
		if k == 0 {
			target = rng.Int64N(total / 3)
		}
		seal := k == 1
		cmd, out, exited := run()
		killed := false
		for !killed {
			select {
			case <-exited:
				t.Fatalf("import %d exited before its kill (at %d committed rows, or at a seal: %v) (exit %v):\n%s", k+1, target, seal, cmd.ProcessState, out.String())
			case <-time.After(2 * time.Millisecond):
			}
			p, err := committedRows(ctx, store)
			if err != nil {
				t.Fatal(err)
			}
			if seal && p.segments > before.segments && p.inFlight > 0 || !seal && p.rows >= target {
				if !seal {
					time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
				}
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-exited
				killed = true
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					kills++
					if seal {
						sealKills++
					}
				}
				after, _ := committedRows(ctx, store)
				if seal {
					t.Logf("kill %d: after a seal (segments %d -> %d) with %d objects in flight; checkpoint at the kill %d of %d rows, %d segments", k+1, before.segments, p.segments, p.inFlight, after.rows, total, after.segments)
				} else {
					t.Logf("kill %d: target %d committed rows, checkpoint at the kill %d of %d, %d segments", k+1, target, after.rows, total, after.segments)
				}
			}
		}
	}
	if sealKills == 0 {
		t.Fatal("no import was killed right after a seal with rows in flight")
	}
	if kills == 0 {
		t.Fatal("no import was killed mid-run")
	}
	final := func() string {
		t.Helper()
		cmd, out, exited := run()
		select {
		case <-exited:
		case <-time.After(2 * time.Minute):
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("import did not finish in 2 minutes:\n%s", out.String())
		}
		if cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("import: exit %d\n%s", cmd.ProcessState.ExitCode(), out.String())
		}
		return out.String()
	}
	out := final()
	if p, _ := committedRows(ctx, store); !p.done {
		t.Fatalf("resumed import finished but the checkpoint has objects not done:\n%s", out)
	}

	seen, entries := readQueue(t, queue, store)
	ids := map[string]string{} // key -> id
	dups := 0
	for key, got := range seen {
		if !c.keys[key] {
			t.Errorf("unexpected row %s in the queue", key)
			continue
		}
		dups += len(got) - 1
		for _, id := range got {
			if prev, ok := ids[key]; ok && prev != id {
				t.Errorf("row %s enqueued under ids %s and %s: derived ids must not depend on the run", key, prev, id)
			}
			ids[key] = id
		}
	}
	missing := 0
	for key := range c.keys {
		if len(seen[key]) == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("row %s is not in the queue", key)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d rows missing after %d kills", missing, total, kills)
	}
	bound := kills * killParallel * killChunkRows
	if dups > bound {
		t.Errorf("%d duplicate rows enqueued, bound %d (kills × --parallel × rows per Append)", dups, bound)
	}
	t.Logf("%d rows, %d kills: %d duplicates enqueued (bound %d), %d batches", total, kills, dups, bound, entries)

	// A second full run: every object is done, nothing is enqueued.
	out = final()
	if !strings.Contains(out, fmt.Sprintf("skipped as done before %d", len(c.objects))) || !strings.Contains(out, "events 0,") {
		t.Errorf("second full run did not skip everything:\n%s", out)
	}
	if _, entries2 := readQueue(t, queue, store); entries2 != entries {
		t.Errorf("second full run enqueued %d batches", entries2-entries)
	}
}

// readQueue reads every batch the manifest lists and returns, per row key,
// the event ids it was enqueued under (one per copy), and the batch count.
func readQueue(t *testing.T, queue objstore.Bucket, store cas.Store) (map[string][]string, int) {
	t.Helper()
	ctx := context.Background()
	man, err := manifest.NewQueue(store, producer.DefaultManifestPath, manifest.Options{}).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for _, e := range man.Entries {
		for _, m := range e.Metadata {
			if h, _, err := format.ParseHeader(m.Payload); err != nil || h != format.EventsHeader {
				t.Fatalf("batch %s: header %v (%v), want %v", e.Location, h, err, format.EventsHeader)
			}
		}
		batch := readBatch(t, queue, e.Location)
		for _, rec := range batch.Records {
			var ev struct {
				ID   string `json:"id"`
				Data struct {
					Key string `json:"key"`
				} `json:"data"`
			}
			if err := json.Unmarshal(rec, &ev); err != nil {
				t.Fatalf("batch %s: record %q: %v", e.Location, rec, err)
			}
			key := ev.ID
			if ev.Data.Key != "" {
				key = ev.Data.Key
			}
			seen[key] = append(seen[key], ev.ID)
		}
	}
	return seen, len(man.Entries)
}
