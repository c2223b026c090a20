package bucket_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/manifest"
)

// dirBuckets are the ways to open a directory bucket: each must be the
// durable one. root is where object names start on disk, dir the bucket's
// directory.
func dirBuckets(t *testing.T) map[string]func(t *testing.T) (bkt objstore.Bucket, root, dir string) {
	return map[string]func(t *testing.T) (objstore.Bucket, string, string){
		"OpenDir": func(t *testing.T) (objstore.Bucket, string, string) {
			dir := t.TempDir()
			bkt, _, err := bucket.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			return bkt, dir, dir
		},
		"Open FILESYSTEM with prefix": func(t *testing.T) (objstore.Bucket, string, string) {
			dir := t.TempDir()
			y := fmt.Sprintf("type: FILESYSTEM\nconfig:\n  directory: %s\nprefix: tenant\n", dir)
			bkt, _, err := bucket.Open(context.Background(), []byte(y), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			return bkt, filepath.Join(dir, "tenant"), dir
		},
	}
}

// tempFiles lists the temporary files left anywhere under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), bucket.TempPrefix) {
			left = append(left, p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return left
}

func readObject(t *testing.T, bkt objstore.Bucket, name string) []byte {
	t.Helper()
	rc, err := bkt.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

// TestDurableUploadLandsWhole: content of every size and every reader
// shape lands byte for byte, over an existing object too, and no temporary
// file is left.
func TestDurableUploadLandsWhole(t *testing.T) {
	big := make([]byte, 3<<20+17)
	for i := range big {
		big[i] = byte(rand.IntN(256))
	}
	cases := []struct {
		name string
		data []byte
		wrap func(io.Reader) io.Reader
	}{
		{"empty", []byte{}, nil},
		{"small", []byte("hello batch"), nil},
		{"one byte at a time", []byte("slow reader, byte by byte"), iotest.OneByteReader},
		{"3 MiB in halves", big, iotest.HalfReader},
		{"3 MiB with EOF on the data", big, iotest.DataErrReader},
	}
	for bname, open := range dirBuckets(t) {
		t.Run(bname, func(t *testing.T) {
			bkt, root, _ := open(t)
			ctx := context.Background()
			for i, tc := range cases {
				name := fmt.Sprintf("ingest/data/%02d.batch", i)
				for round := range 2 { // the second round replaces the object
					data := tc.data
					if round == 1 {
						data = append([]byte("v2:"), data...)
					}
					var r io.Reader = bytes.NewReader(data)
					if tc.wrap != nil {
						r = tc.wrap(r)
					}
					if err := bkt.Upload(ctx, name, r); err != nil {
						t.Fatalf("%s round %d: Upload: %v", tc.name, round, err)
					}
					if got := readObject(t, bkt, name); !bytes.Equal(got, data) {
						t.Fatalf("%s round %d: read back %d bytes, want %d (equal=%v)", tc.name, round, len(got), len(data), bytes.Equal(got, data))
					}
					if got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name))); err != nil || !bytes.Equal(got, data) {
						t.Fatalf("%s round %d: file on disk: %d bytes, %v", tc.name, round, len(got), err)
					}
				}
			}
			if left := tempFiles(t, root); len(left) > 0 {
				t.Fatalf("temporary files left after successful uploads: %q", left)
			}
		})
	}
}

// failingReader yields n bytes of 'x' and then fails.
type failingReader struct{ n int }

var errReaderBroke = errors.New("reader broke mid-way")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errReaderBroke
	}
	k := min(len(p), f.n)
	for i := range k {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

// TestDurableUploadFailureLeavesOldObject: an Upload whose reader fails
// mid-way (or whose context is cancelled) returns the error, leaves the
// previous object byte for byte (or no object), and leaves no temporary
// file.
func TestDurableUploadFailureLeavesOldObject(t *testing.T) {
	for bname, open := range dirBuckets(t) {
		t.Run(bname, func(t *testing.T) {
			bkt, root, _ := open(t)
			ctx := context.Background()
			old := []byte("the committed batch, intact")
			if err := bkt.Upload(ctx, "ingest/data/old.batch", bytes.NewReader(old)); err != nil {
				t.Fatal(err)
			}
			for _, n := range []int{0, 5, 1 << 20} {
				err := bkt.Upload(ctx, "ingest/data/old.batch", &failingReader{n: n})
				if !errors.Is(err, errReaderBroke) {
					t.Fatalf("after %d bytes: Upload error %v, want the reader's", n, err)
				}
				if got := readObject(t, bkt, "ingest/data/old.batch"); !bytes.Equal(got, old) {
					t.Fatalf("after a failed Upload of %d bytes the old object reads %q..., want %q", n, got[:min(len(got), 40)], old)
				}
				err = bkt.Upload(ctx, "ingest/data/new.batch", &failingReader{n: n})
				if !errors.Is(err, errReaderBroke) {
					t.Fatalf("after %d bytes: Upload error %v, want the reader's", n, err)
				}
				if ok, err := bkt.Exists(ctx, "ingest/data/new.batch"); err != nil || ok {
					t.Fatalf("failed Upload of a new object: Exists = %v, %v; want false", ok, err)
				}
			}
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if err := bkt.Upload(cctx, "ingest/data/old.batch", bytes.NewReader([]byte("late"))); !errors.Is(err, context.Canceled) {
				t.Fatalf("Upload with a cancelled context: %v", err)
			}
			// A name that is a directory of other objects cannot be one.
			if err := bkt.Upload(ctx, "ingest/data", bytes.NewReader([]byte("x"))); err == nil {
				t.Fatal("Upload over a directory of objects succeeded")
			}
			if got := readObject(t, bkt, "ingest/data/old.batch"); !bytes.Equal(got, old) {
				t.Fatalf("old object reads %q, want %q", got, old)
			}
			if left := tempFiles(t, root); len(left) > 0 {
				t.Fatalf("temporary files left after failed uploads: %q", left)
			}
		})
	}
}

// TestDurableUploadInvisibleUntilComplete: while an Upload is still
// reading, the object's name does not exist (no reader can see half a
// batch); only a hidden temporary file in the same directory does.
func TestDurableUploadInvisibleUntilComplete(t *testing.T) {
	for bname, open := range dirBuckets(t) {
		t.Run(bname, func(t *testing.T) {
			bkt, _, _ := open(t)
			ctx := context.Background()
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() { done <- bkt.Upload(ctx, "ingest/data/x.batch", pr) }()
			// Write returns once Upload has read the bytes: the file it
			// writes to exists by then.
			if _, err := pw.Write([]byte("first half|")); err != nil {
				t.Fatal(err)
			}
			if ok, err := bkt.Exists(ctx, "ingest/data/x.batch"); err != nil || ok {
				t.Fatalf("mid-upload: Exists = %v, %v; want false", ok, err)
			}
			if _, err := bkt.Get(ctx, "ingest/data/x.batch"); !bkt.IsObjNotFoundErr(err) {
				t.Fatalf("mid-upload: Get error %v, want not found", err)
			}
			var listed []string
			if err := bkt.Iter(ctx, "ingest/data/", func(n string) error { listed = append(listed, n); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(listed) != 1 || !strings.HasPrefix(listed[0], "ingest/data/"+bucket.TempPrefix) {
				t.Fatalf("mid-upload listing %q, want only one hidden %s* file", listed, bucket.TempPrefix)
			}
			pw.Write([]byte("second half"))
			pw.Close()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := readObject(t, bkt, "ingest/data/x.batch"); string(got) != "first half|second half" {
				t.Fatalf("object reads %q", got)
			}
		})
	}
}

// TestDurableBucketReadsAndDeletes: Iter, Get, GetRange, Exists,
// Attributes and Delete behave as objstore's filesystem bucket does.
func TestDurableBucketReadsAndDeletes(t *testing.T) {
	for bname, open := range dirBuckets(t) {
		t.Run(bname, func(t *testing.T) {
			bkt, root, bucketDir := open(t)
			ctx := context.Background()
			objs := map[string]string{
				"ingest/data/a.batch":       "aaaa",
				"ingest/data/b.batch":       "bbbbbb",
				"ingest/dead-letter/x.json": "{}",
				"ingest/deep/er/c.batch":    "c",
			}
			for n, v := range objs {
				if err := bkt.Upload(ctx, n, strings.NewReader(v)); err != nil {
					t.Fatal(err)
				}
			}
			list := func(dir string, opts ...objstore.IterOption) []string {
				var got []string
				if err := bkt.Iter(ctx, dir, func(n string) error { got = append(got, n); return nil }, opts...); err != nil {
					t.Fatal(err)
				}
				return got
			}
			if got, want := list("ingest/data/"), []string{"ingest/data/a.batch", "ingest/data/b.batch"}; !slices.Equal(got, want) {
				t.Errorf("Iter data: %q, want %q", got, want)
			}
			if got, want := list("ingest/"), []string{"ingest/data/", "ingest/dead-letter/", "ingest/deep/"}; !slices.Equal(got, want) {
				t.Errorf("Iter ingest: %q, want %q", got, want)
			}
			if got := list("ingest/", objstore.WithRecursiveIter()); len(got) != len(objs) {
				t.Errorf("recursive Iter: %q, want the %d objects", got, len(objs))
			}
			if got := string(readObject(t, bkt, "ingest/data/b.batch")); got != "bbbbbb" {
				t.Errorf("Get: %q", got)
			}
			rc, err := bkt.GetRange(ctx, "ingest/data/b.batch", 2, 3)
			if err != nil {
				t.Fatal(err)
			}
			part, _ := io.ReadAll(rc)
			rc.Close()
			if string(part) != "bbb" {
				t.Errorf("GetRange: %q", part)
			}
			if attrs, err := bkt.Attributes(ctx, "ingest/data/a.batch"); err != nil || attrs.Size != 4 || time.Since(attrs.LastModified) > time.Hour {
				t.Errorf("Attributes: %+v, %v", attrs, err)
			}
			if ok, err := bkt.Exists(ctx, "ingest/data/a.batch"); !ok || err != nil {
				t.Errorf("Exists: %v, %v", ok, err)
			}
			if _, err := bkt.Get(ctx, "ingest/data/nope"); !bkt.IsObjNotFoundErr(err) {
				t.Errorf("Get of a missing object: %v, want not found", err)
			}

			// Delete: the object goes; its directory goes only once empty;
			// the root stays.
			if err := bkt.Delete(ctx, "ingest/data/a.batch"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := bkt.Exists(ctx, "ingest/data/a.batch"); ok {
				t.Error("deleted object still exists")
			}
			if _, err := os.Stat(filepath.Join(root, "ingest", "data")); err != nil {
				t.Errorf("directory with an object left was removed: %v", err)
			}
			if err := bkt.Delete(ctx, "ingest/deep/er/c.batch"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(root, "ingest", "deep")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("emptied directories ingest/deep/er were not removed: %v", err)
			}
			if err := bkt.Delete(ctx, "ingest/data/never-was"); err != nil {
				t.Errorf("Delete of a missing object: %v (objstore's filesystem bucket returns nil)", err)
			}
			for _, n := range []string{"ingest/data/b.batch", "ingest/dead-letter/x.json"} {
				if err := bkt.Delete(ctx, n); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := os.Stat(bucketDir); err != nil {
				t.Errorf("bucket directory removed: %v", err)
			}
			if got := list("", objstore.WithRecursiveIter()); len(got) != 0 {
				t.Errorf("objects left: %q", got)
			}
		})
	}
}

// TestDurableUploadRejectsBadNames: names outside the directory and
// temporary-file names are refused.
func TestDurableUploadRejectsBadNames(t *testing.T) {
	bkt, err := bucket.NewDurableFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "../escape", "a/../../escape", ".", bucket.TempPrefix + "1", "ingest/data/" + bucket.TempPrefix + "x"} {
		if err := bkt.Upload(context.Background(), name, strings.NewReader("x")); err == nil {
			t.Errorf("Upload(%q) succeeded", name)
		}
	}
}

// TestDurableDeleteDoesNotRemoveConcurrentUpload: GC deleting the last
// batch of a directory while a producer uploads a new one into it must not
// take the new batch with the directory. objstore's filesystem Delete
// checks the directory is empty and then removes it recursively, which can
// remove a batch uploaded in between.
func TestDurableDeleteDoesNotRemoveConcurrentUpload(t *testing.T) {
	bkt, err := bucket.NewDurableFilesystem(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The race window is narrow: many rounds, capped in time so a slow
	// machine runs fewer rounds (a weaker check) rather than a long test.
	// Without the fix this fails within a few hundred rounds.
	stop := time.Now().Add(5 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(stop); i++ {
		if err := bkt.Upload(ctx, "ingest/data/old.batch", strings.NewReader("old")); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("ingest/data/new-%d.batch", i)
		var wg sync.WaitGroup
		var upErr, delErr error
		wg.Add(2)
		go func() { defer wg.Done(); delErr = bkt.Delete(ctx, "ingest/data/old.batch") }()
		go func() { defer wg.Done(); upErr = bkt.Upload(ctx, name, strings.NewReader("new")) }()
		wg.Wait()
		if delErr != nil {
			t.Fatalf("round %d: Delete: %v", i, delErr)
		}
		if upErr != nil {
			t.Fatalf("round %d: Upload racing a Delete failed: %v", i, upErr)
		}
		if ok, err := bkt.Exists(ctx, name); err != nil || !ok {
			t.Fatalf("round %d: a batch uploaded while the directory's last batch was deleted is gone (Exists = %v, %v)", i, ok, err)
		}
		if err := bkt.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLeftoverTempFileIsCollected: a temporary file left by a crash
// mid-Upload is listed under the data prefix with its hidden name, is
// referenced by no entry, and so the consumer's GC deletes it once it is
// older than the grace period, and keeps a young one (an upload in
// progress).
func TestLeftoverTempFileIsCollected(t *testing.T) {
	dir := t.TempDir()
	bkt, store, err := bucket.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q := manifest.NewQueue(store, "ingest/manifest", manifest.Options{})
	if err := bkt.Upload(ctx, "ingest/data/kept.batch", strings.NewReader("referenced")); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Append(ctx, manifest.NewEntry{Location: "ingest/data/kept.batch"}); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "ingest", "data")
	stale := filepath.Join(dataDir, bucket.TempPrefix+"crashed")
	young := filepath.Join(dataDir, bucket.TempPrefix+"uploading")
	for _, p := range []string{stale, young} {
		if err := os.WriteFile(p, []byte("half a bat"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	c, err := consumer.New(bkt, q, convert.NewRegistry(), noSink{}, consumer.Config{GCGracePeriod: 10 * time.Minute, DisableGC: true}, consumer.NewMetrics(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.CollectGarbage(ctx)
	if err != nil || n != 1 {
		t.Fatalf("CollectGarbage = %d, %v; want 1 deleted", n, err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temporary file not collected: %v", err)
	}
	for _, p := range []string{young, filepath.Join(dataDir, "kept.batch")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was collected: %v", filepath.Base(p), err)
		}
	}
	// fsstore reserves the same prefix, so no manifest can be named so.
	if _, err := store.WriteIf(ctx, "ingest/"+bucket.TempPrefix+"m", []byte("x"), ""); err == nil {
		t.Error("fsstore accepted an object name starting with the temporary prefix")
	}
}

// noSink is a sink the GC test never sends to.
type noSink struct{}

func (noSink) Send(context.Context, []json.RawMessage) error {
	return errors.New("noSink: not for sending")
}
func (noSink) Close() error { return nil }

// TestDirectoryBucketStaysInsideItsDirectory: an object name that leaves
// the bucket directory is an error for every operation (objstore's
// filesystem bucket used to read, list and delete such files:
// `bucketq inspect batch ../../../../etc/passwd`).
func TestDirectoryBucketStaysInsideItsDirectory(t *testing.T) {
	for name, open := range dirBuckets(t) {
		t.Run(name, func(t *testing.T) {
			bkt, root, dir := open(t)
			ctx := context.Background()
			// A file next to the bucket directory.
			outside := filepath.Join(filepath.Dir(dir), "outside-"+filepath.Base(dir))
			if err := os.MkdirAll(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			secret := filepath.Join(outside, "secret")
			if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			rel, err := filepath.Rel(root, secret) // where names start
			if err != nil {
				t.Fatal(err)
			}
			escape := filepath.ToSlash(rel) // ../outside-NNN/secret (one more ../ with a prefix)
			deep := "../../../../../../../../../.." + secret
			for _, n := range []string{escape, "ingest/../../" + filepath.ToSlash(rel), deep, "tenant/../../" + filepath.ToSlash(rel)} {
				if _, err := bkt.Get(ctx, n); err == nil || !strings.Contains(err.Error(), "not a path inside the bucket directory") {
					t.Errorf("Get(%q): %v", n, err)
				}
				if _, err := bkt.GetRange(ctx, n, 0, 3); err == nil {
					t.Errorf("GetRange(%q) succeeded", n)
				}
				if ok, err := bkt.Exists(ctx, n); err == nil {
					t.Errorf("Exists(%q) = %v, nil", n, ok)
				}
				if _, err := bkt.Attributes(ctx, n); err == nil {
					t.Errorf("Attributes(%q) succeeded", n)
				}
				if err := bkt.Iter(ctx, n+"/..", func(string) error { return nil }); err == nil {
					t.Errorf("Iter(%q) succeeded", n+"/..")
				}
				if err := bkt.IterWithAttributes(ctx, n+"/..", func(objstore.IterObjectAttributes) error { return nil }); err == nil {
					t.Errorf("IterWithAttributes(%q) succeeded", n+"/..")
				}
				if err := bkt.Upload(ctx, n, strings.NewReader("x")); err == nil {
					t.Errorf("Upload(%q) succeeded", n)
				}
				if err := bkt.Delete(ctx, n); err == nil {
					t.Errorf("Delete(%q) succeeded", n)
				}
			}
			if b, err := os.ReadFile(secret); err != nil || string(b) != "secret" {
				t.Fatalf("the file outside the bucket: %q, %v", b, err)
			}
			// Names inside still work, dots and all, and so does listing the root.
			if err := bkt.Upload(ctx, "ingest/data/b", strings.NewReader("b")); err != nil {
				t.Fatal(err)
			}
			if ok, err := bkt.Exists(ctx, "ingest/x/../data/b"); !ok || err != nil {
				t.Errorf("Exists inside: %v, %v", ok, err)
			}
			var names []string
			if err := bkt.Iter(ctx, "", func(n string) error { names = append(names, n); return nil }, objstore.WithRecursiveIter()); err != nil || !slices.Contains(names, "ingest/data/b") {
				t.Errorf("Iter of the root: %q, %v", names, err)
			}
		})
	}
}
