package fsstore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bucketq/bucketq/manifest/cas"
)

// TestKnownContentIsTheFilesContent: the version of the content last
// written is taken from memory only while the file holds exactly those
// bytes. A same-length edit in place (no rename, as a hand edit can do),
// by this or another process, is seen: Read reports the hash of the new
// bytes and a WriteIf on the old version conflicts.
func TestKnownContentIsTheFilesContent(t *testing.T) {
	ctx := context.Background()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := bytes.Repeat([]byte("a"), 1000)
	va, err := s.WriteIf(ctx, "m", a, "")
	if err != nil || va != VersionOf(a) {
		t.Fatalf("create: %v %v", va, err)
	}
	if _, v, err := s.Read(ctx, "m"); err != nil || v != va {
		t.Fatalf("read: %v %v, want %v", v, err, va)
	}
	// Edit one byte in place, keeping size and inode.
	b := bytes.Clone(a)
	b[500] = 'b'
	f, err := os.OpenFile(filepath.Join(s.Root(), "m"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b[500:501], 500); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := s.WriteIf(ctx, "m", []byte("next"), va); !errors.Is(err, cas.ErrConflict) {
		t.Fatalf("WriteIf on the version before the edit: %v, want a conflict", err)
	}
	got, v, err := s.Read(ctx, "m")
	if err != nil || v != VersionOf(b) || !bytes.Equal(got, b) {
		t.Fatalf("read after the edit: version %v err %v, want %v", v, err, VersionOf(b))
	}
	// The bytes Read returned are the caller's: changing them changes
	// nothing the store knows.
	got[0] = 'z'
	if _, err := s.WriteIf(ctx, "m", a, VersionOf(b)); err != nil {
		t.Fatalf("WriteIf on the read version: %v", err)
	}
	// Content over maxKnown is hashed every time, with the same result.
	big := bytes.Repeat([]byte("x"), maxKnown+1)
	vb, err := s.WriteIf(ctx, "m", big, VersionOf(a))
	if err != nil || vb != VersionOf(big) {
		t.Fatalf("big write: %v %v", vb, err)
	}
	if _, v, err := s.Read(ctx, "m"); err != nil || v != vb {
		t.Fatalf("big read: %v %v", v, err)
	}
}

// BenchmarkCommitCycle is a producer's commit on a directory manifest: read
// it, then a conditional write of it with one more ~80-byte entry, at the
// size a manifest reaches after ~1,000 batches with no consumer (80 KB).
func BenchmarkCommitCycle(b *testing.B) {
	ctx := context.Background()
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("e"), 80<<10)
	if _, err := s.WriteIf(ctx, "m", data, ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		cur, v, err := s.Read(ctx, "m")
		if err != nil {
			b.Fatal(err)
		}
		next := append(cur[:len(cur)-8:len(cur)-8], byte(i), byte(i>>8), byte(i>>16), byte(i>>24), 'x', 'y', 'z', 'w')
		if _, err := s.WriteIf(ctx, "m", next, v); err != nil {
			b.Fatal(err)
		}
	}
}
