package journal_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/bucketq/bucketq/journal"
	"github.com/bucketq/bucketq/manifest"
)

var update = flag.Bool("update", false, "rewrite the golden segments in testdata/segments")

var entries3 = []manifest.Entry{
	{Sequence: 7, Location: "ingest/data/01J8Z6Q3W4X5Y6Z7A8B9C0D1E2.batch", Metadata: []manifest.Metadata{
		{StartIndex: 0, IngestionTimeMs: 1718000000000, Payload: []byte{0x01, 0x04, 0x02, 0x00}},
	}},
	{Sequence: 8, Location: "ingest/data/01J8Z6Q3W4X5Y6Z7A8B9C0D1E3.batch", Metadata: []manifest.Metadata{
		{StartIndex: 0, IngestionTimeMs: 1718000000250, Payload: []byte{0x01, 0x01, 0x01, 0x00}},
		{StartIndex: 12, IngestionTimeMs: 1718000000251, Payload: []byte{0x01, 0x02, 0x01, 0x00}},
	}},
	{Sequence: 10, Location: "ingest/data/01J8Z6Q3W4X5Y6Z7A8B9C0D1E4.batch", Metadata: []manifest.Metadata{
		{StartIndex: 0, IngestionTimeMs: 1717999999999, Payload: []byte{0x01, 0x04, 0x02, 0x00}},
	}},
}

// goldens are the committed segments. Changing one is a format change
// (RFC 0004).
var goldens = []struct {
	file    string
	entries []manifest.Entry
	at      int64
	epoch   uint64
	footer  string // hex of the 58-byte footer
}{
	{
		file: "one-no-metadata.journal", entries: []manifest.Entry{{Sequence: 0, Location: "ingest/data/a.batch"}}, at: 1718000001000, epoch: 1,
		footer: "01000000" + "0000000000000000" + "0000000000000000" + "0000000000000000" + "0000000000000000" + "e89fc70090010000" + "0100000000000000" + "b0e7a9c2" + "0100",
	},
	{
		file: "three.journal", entries: entries3, at: 1718000002000, epoch: 4,
		footer: "03000000" + "0700000000000000" + "0a00000000000000" + "ff9bc70090010000" + "fb9cc70090010000" + "d0a3c70090010000" + "0400000000000000" + "936eb172" + "0100",
	},
}

func goldenPath(file string) string { return filepath.Join("testdata", "segments", file) }

// TestGoldenSegments: Encode writes the committed bytes, their footer
// fields sit where RFC 0004's diagram says, and they decode back.
func TestGoldenSegments(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.file, func(t *testing.T) {
			b, err := journal.Encode(g.entries, g.at, g.epoch)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(goldenPath(g.file), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(goldenPath(g.file))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("Encode differs from %s: a format change (run with -update only if intended)", g.file)
			}
			foot := hex.EncodeToString(b[len(b)-journal.FooterSize:])
			for i := 0; i < len(g.footer); i++ {
				if g.footer[i] != '?' && g.footer[i] != foot[i] {
					t.Fatalf("footer\n got %s\nwant %s", foot, g.footer)
				}
			}
			crc := crc32.Checksum(b[:len(b)-6], crc32.MakeTable(crc32.Castagnoli))
			if got := binary.LittleEndian.Uint32(b[len(b)-6:]); got != crc {
				t.Fatalf("footer crc %08x, bytes hash to %08x", got, crc)
			}
			s, err := journal.Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Entries) != len(g.entries) || s.JournaledAtMs != g.at || s.Epoch != g.epoch {
				t.Fatalf("decoded %+v", s.Footer)
			}
			for i := range g.entries {
				if s.Entries[i].Sequence != g.entries[i].Sequence || s.Entries[i].Location != g.entries[i].Location || len(s.Entries[i].Metadata) != len(g.entries[i].Metadata) {
					t.Fatalf("entry %d: got %+v want %+v", i, s.Entries[i], g.entries[i])
				}
			}
		})
	}
}

// resign recomputes the footer checksum after a test changed a field.
func resign(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[len(b)-6:], crc32.Checksum(b[:len(b)-6], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func TestDecodeRejects(t *testing.T) {
	good, err := journal.Encode(entries3, 1718000002000, 4)
	if err != nil {
		t.Fatal(err)
	}
	foot := len(good) - journal.FooterSize
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	put64 := func(b []byte, off int, v uint64) []byte {
		binary.LittleEndian.PutUint64(b[foot+off:], v)
		return resign(b)
	}
	cases := []struct {
		name   string
		b      []byte
		want   error
		offset int
	}{
		{"empty", nil, journal.ErrTooShort, -1},
		{"footer-minus-one", good[len(good)-journal.FooterSize+1:], journal.ErrTooShort, -1},
		{"version-2", mut(func(b []byte) []byte { b[len(b)-2] = 2; return b }), journal.ErrVersion, foot},
		{"flipped-entry-byte", mut(func(b []byte) []byte { b[20] ^= 1; return b }), journal.ErrChecksum, foot},
		{"flipped-crc", mut(func(b []byte) []byte { b[len(b)-4] ^= 1; return b }), journal.ErrChecksum, foot},
		{"entry-crc-resigned", mut(func(b []byte) []byte { b[20] ^= 1; return resign(b) }), journal.ErrEntry, 0},
		{"count-zero", mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[foot:], 0); return resign(b) }), journal.ErrEntryCount, foot},
		{"count-more", mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[foot:], 4); return resign(b) }), journal.ErrEntryCount, foot},
		{"count-huge", mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[foot:], 1<<30); return resign(b) }), journal.ErrEntryCount, foot},
		{"first-wrong", put64(mut(func(b []byte) []byte { return b }), 4, 6), journal.ErrSequence, foot},
		{"last-wrong", put64(mut(func(b []byte) []byte { return b }), 12, 11), journal.ErrSequence, foot},
		{"first-above-last", put64(mut(func(b []byte) []byte { return b }), 4, 12), journal.ErrSequence, foot},
		{"min-time-wrong", put64(mut(func(b []byte) []byte { return b }), 20, 1), journal.ErrFooterTimes, foot},
		{"max-time-wrong", put64(mut(func(b []byte) []byte { return b }), 28, 1718000000252), journal.ErrFooterTimes, foot},
		{"truncated-entry-block", mut(func(b []byte) []byte {
			b = append(b[:30], b[foot:]...)
			binary.LittleEndian.PutUint32(b[30:], 1)
			return resign(b)
		}), journal.ErrEntry, 0},
	}
	// Two entries out of order, each with a valid entry checksum.
	swapped := append(manifest.AppendEntry(manifest.AppendEntry(nil, &entries3[1], manifest.Version2), &entries3[0], manifest.Version2), good[foot:]...)
	binary.LittleEndian.PutUint32(swapped[len(swapped)-journal.FooterSize:], 2)
	cases = append(cases, struct {
		name   string
		b      []byte
		want   error
		offset int
	}{"out-of-order", resign(swapped), journal.ErrSequence, entries3[1].EncodedLen() + 4})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := journal.Decode(c.b)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			var ce *journal.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("%T is not a *CorruptError", err)
			}
			if ce.Offset != c.offset {
				t.Fatalf("offset %d, want %d (%v)", ce.Offset, c.offset, err)
			}
		})
	}
}

func TestEncodeRefuses(t *testing.T) {
	if _, err := journal.Encode(nil, 0, 0); err == nil {
		t.Fatal("empty segment encoded")
	}
	if _, err := journal.Encode([]manifest.Entry{entries3[1], entries3[0]}, 0, 0); err == nil {
		t.Fatal("out-of-order entries encoded")
	}
	if _, err := journal.Encode([]manifest.Entry{entries3[0], entries3[0]}, 0, 0); err == nil {
		t.Fatal("duplicate sequence encoded")
	}
}

func TestNames(t *testing.T) {
	n := journal.Name("ingest/journal", 7, 10)
	if n != "ingest/journal/00000000000000000007-00000000000000000010.journal" {
		t.Fatal(n)
	}
	if f, l, ok := journal.ParseName("ingest/journal", n); !ok || f != 7 || l != 10 {
		t.Fatal(f, l, ok)
	}
	for _, bad := range []string{
		"ingest/journal/x.journal",
		"ingest/journal/00000000000000000010-00000000000000000007.journal",
		"ingest/journal/00000000000000000007-00000000000000000010.batch",
		"other/00000000000000000007-00000000000000000010.journal",
		"ingest/journal/0000000000000000000a-00000000000000000010.journal",
	} {
		if _, _, ok := journal.ParseName("ingest/journal", bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
}

// FuzzDecodeSegment: Decode never panics, every error is a *CorruptError,
// ReadFooter agrees with Decode, and a segment that decodes re-encodes to
// the same bytes (the encoding is canonical).
func FuzzDecodeSegment(f *testing.F) {
	for _, g := range goldens {
		b, err := os.ReadFile(goldenPath(g.file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(make([]byte, journal.FooterSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := journal.Decode(b)
		if err != nil {
			var ce *journal.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *CorruptError", err, err)
			}
			return
		}
		ft, err := journal.ReadFooter(b)
		if err != nil || ft != s.Footer {
			t.Fatalf("ReadFooter %+v %v, Decode %+v", ft, err, s.Footer)
		}
		out, err := journal.Encode(s.Entries, s.JournaledAtMs, s.Epoch)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
	})
}
