package manifest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

// benchManifest is a manifest of n realistic entries (44-byte ULID
// locations, two metadata items each).
func benchManifest(n int) []byte {
	m := manifest.Manifest{NextSequence: uint64(n), Epoch: 1}
	for i := 0; i < n; i++ {
		m.Entries = append(m.Entries, manifest.Entry{
			Sequence: uint64(i),
			Location: fmt.Sprintf("ingest/data/01J8Z6Q3W4X5Y6Z7A8B9%06d.batch", i),
			Metadata: []manifest.Metadata{
				{StartIndex: 0, IngestionTimeMs: 1718000000000, Payload: hdr(4, 2)},
				{StartIndex: 100, IngestionTimeMs: 1718000000001, Payload: hdr(1, 1)},
			},
		})
	}
	return m.Encode()
}

var sizes = []int{1000, 10000}

// BenchmarkAppendEntries is the codec cost of one group-commit append: it
// copies the existing bytes but decodes none of them.
func BenchmarkAppendEntries(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			base := benchManifest(n)
			add := locs("ingest/data/new", 4)
			b.SetBytes(int64(len(base)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := manifest.AppendEntries(base, add, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkQueueAppend is a whole Append (read, append, conditional write)
// on memstore; the manifest grows by one entry per iteration.
func BenchmarkQueueAppend(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			s := memstore.New()
			base := benchManifest(n)
			s.Put(qpath, base)
			q := manifest.NewQueue(s, qpath, manifest.Options{})
			b.SetBytes(int64(len(base)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := q.Append(context.Background(), manifest.NewEntry{Location: fmt.Sprintf("ingest/data/b%d.batch", i), Metadata: []manifest.Metadata{{Payload: hdr(4, 2)}}}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			buf := benchManifest(n)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := manifest.Decode(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDequeue removes the first 100 entries of a manifest of n
// (read, decode, re-encode, conditional write); the manifest is reset
// outside the timer.
func BenchmarkDequeue(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			s := memstore.New()
			base := benchManifest(n)
			s.Put(qpath, base)
			q := manifest.NewQueue(s, qpath, manifest.Options{})
			l, err := q.Fence(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			fenced, _, _ := s.Read(context.Background(), qpath)
			b.SetBytes(int64(len(base)))
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				s.Put(qpath, fenced)
				b.StartTimer()
				removed, err := l.Dequeue(context.Background(), 99)
				if err != nil || len(removed) != 100 {
					b.Fatalf("removed %d: %v", len(removed), err)
				}
			}
		})
	}
}
