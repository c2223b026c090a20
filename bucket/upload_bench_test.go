package bucket_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/internal/keptdir"
)

// TestMain removes the benchmarks' directories once every test and
// benchmark has run (keptdir: deleting them between benchmarks slows the
// next ones on this project's CI file system).
func TestMain(m *testing.M) {
	code := m.Run()
	keptdir.RemoveAll()
	os.Exit(code)
}

// onlyReader hides every method but Read, as objstore's metrics wrapper
// does around the reader a producer uploads.
type onlyReader struct{ io.Reader }

// BenchmarkDurableUpload is one producer batch (30 KB, what a 64 x 1 load
// seals) uploaded to a directory bucket through a wrapped reader: temp
// file, copy, fsync, rename, directory fsync. allocs/op and B/op are the
// figures that do not depend on the disk.
func BenchmarkDurableUpload(b *testing.B) {
	bkt, err := bucket.NewDurableFilesystem(keptdir.New(b))
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 30<<10/16)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := bkt.Upload(context.Background(), fmt.Sprintf("data/%08d.batch", i), onlyReader{bytes.NewReader(data)}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUploadCopiesEveryReader: what Upload stores is the reader's bytes,
// whether the reader writes itself (a file, a bytes.Reader) or is read
// through Upload's buffer (a wrapped reader), for sizes around that buffer.
func TestUploadCopiesEveryReader(t *testing.T) {
	dir := t.TempDir()
	bkt, err := bucket.NewDurableFilesystem(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 32<<10 - 1, 32 << 10, 32<<10 + 1, 1 << 20} {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i * 7)
		}
		src := filepath.Join(dir, fmt.Sprintf("src-%d", n))
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		readers := map[string]io.Reader{"wrapped": onlyReader{bytes.NewReader(data)}, "bytes": bytes.NewReader(data), "file": f}
		for kind, r := range readers {
			name := fmt.Sprintf("%s-%d", kind, n)
			if err := bkt.Upload(context.Background(), name, r); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "b", name))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: stored %d bytes (err %v), want the %d sent", name, len(got), err, n)
			}
		}
		f.Close()
	}
}
