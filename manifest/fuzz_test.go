package manifest_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/bucketq/bucketq/manifest"
)

func addGoldens(f *testing.F) {
	for _, g := range goldens {
		f.Add(readGolden(f, g.file))
	}
}

// FuzzDecodeManifest: Decode never panics, every error is a *CorruptError,
// and a manifest that decodes survives Encode/Decode unchanged. The
// encoding is canonical (entry_len, location_len, metadata_count,
// payload_len and entry_count are all checked exactly; nothing is
// ignored), so Encode(Decode(b)) == b for every b that decodes. An empty
// input never decodes: it is damage, not the empty manifest.
func FuzzDecodeManifest(f *testing.F) {
	addGoldens(f)
	f.Add([]byte{})
	f.Add(make([]byte, 22))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The producer's location walk never panics, reports only
		// *CorruptError, and agrees with Decode wherever Decode succeeds.
		type seqLoc struct {
			seq uint64
			loc string
		}
		var scanned []seqLoc
		serr := manifest.ScanLocations(b, func(seq uint64, loc []byte) { scanned = append(scanned, seqLoc{seq, string(loc)}) })
		if serr != nil {
			var ce *manifest.CorruptError
			if !errors.As(serr, &ce) {
				t.Fatalf("scan error %T %v is not a *CorruptError", serr, serr)
			}
		}
		m, err := manifest.Decode(b)
		if err != nil {
			var ce *manifest.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *CorruptError", err, err)
			}
			return
		}
		if serr != nil {
			t.Fatalf("Decode succeeds but the location walk fails: %v", serr)
		}
		if len(scanned) != len(m.Entries) {
			t.Fatalf("walk saw %d entries, Decode %d", len(scanned), len(m.Entries))
		}
		for i, e := range m.Entries {
			if scanned[i] != (seqLoc{e.Sequence, e.Location}) {
				t.Fatalf("entry %d: walk saw %+v, Decode %d %q", i, scanned[i], e.Sequence, e.Location)
			}
		}
		if len(b) == 0 {
			t.Fatal("an empty object decoded")
		}
		enc := m.Encode()
		if !bytes.Equal(enc, b) {
			t.Fatalf("Encode(Decode(b)) != b\n b  %x\nenc %x", b, enc)
		}
		m2, err := manifest.Decode(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		equalManifest(t, m2, m)
		f, err := manifest.ReadFooter(b)
		if err != nil {
			t.Fatalf("ReadFooter fails on a manifest that decodes: %v", err)
		}
		if int(f.EntryCount) != len(m.Entries) || f.NextSequence != m.NextSequence || f.Epoch != m.Epoch {
			t.Fatalf("footer %+v disagrees with decoded manifest", f)
		}
		for i := range m.Entries {
			if i > 0 && m.Entries[i].Sequence <= m.Entries[i-1].Sequence || m.Entries[i].Sequence >= m.NextSequence {
				t.Fatalf("decoded entry %d has sequence %d out of order", i, m.Entries[i].Sequence)
			}
		}
	})
}

// FuzzAppendEntries: AppendEntries never panics; when it succeeds it keeps
// every byte before the old footer, assigns consecutive sequences from
// next_sequence, keeps the epoch, and, when the input decodes, the output
// decodes to the input's entries followed by the new ones.
func FuzzAppendEntries(f *testing.F) {
	for _, g := range goldens {
		f.Add(readGolden(f, g.file), "ingest/data/x.batch", []byte{1, 4, 2, 0}, uint8(2), uint32(0))
	}
	f.Add([]byte{}, "", []byte{}, uint8(0), uint32(7))
	f.Add([]byte("garbage"), "a", []byte{1}, uint8(1), uint32(1))
	f.Fuzz(func(t *testing.T, b []byte, loc string, payload []byte, n uint8, start uint32) {
		n %= 8
		entries := make([]manifest.NewEntry, n)
		for i := range entries {
			entries[i] = manifest.NewEntry{Location: loc + string(rune('a'+i))}
			for j := 0; j < i%3; j++ {
				entries[i].Metadata = append(entries[i].Metadata, manifest.Metadata{StartIndex: start + uint32(j), IngestionTimeMs: int64(j), Payload: payload})
			}
		}
		before, ferr := manifest.ReadFooter(b)
		out, seqs, err := manifest.AppendEntries(b, entries, before.Version)
		if ferr != nil {
			if err == nil {
				t.Fatalf("AppendEntries accepted input whose footer fails: %v", ferr)
			}
			return
		}
		if err != nil {
			return // overflow or oversized location: refused, fine
		}
		prefix := len(b) - before.Len()
		if !bytes.Equal(out[:prefix], b[:prefix]) {
			t.Fatal("entry block before the append was changed")
		}
		after, err := manifest.ReadFooter(out)
		if err != nil {
			t.Fatalf("output footer: %v", err)
		}
		if after.Epoch != before.Epoch || after.NextSequence != before.NextSequence+uint64(n) || after.EntryCount != before.EntryCount+uint32(n) {
			t.Fatalf("footer %+v after appending %d to %+v", after, n, before)
		}
		for i, s := range seqs {
			if s != before.NextSequence+uint64(i) {
				t.Fatalf("sequence %d is %d, want %d", i, s, before.NextSequence+uint64(i))
			}
		}
		// The appended bytes are exactly the encoded entries.
		var mid []byte
		for i, e := range entries {
			mid = manifest.AppendEntry(mid, &manifest.Entry{Sequence: seqs[i], Location: e.Location, Metadata: e.Metadata}, before.Version)
		}
		if !bytes.Equal(out[prefix:len(out)-before.Len()], mid) {
			t.Fatal("appended bytes are not the encoded entries")
		}
		m, err := manifest.Decode(b)
		if err != nil {
			return
		}
		got, err := manifest.Decode(out)
		if err != nil {
			t.Fatalf("appending to a valid manifest made it invalid: %v", err)
		}
		want := &manifest.Manifest{Entries: m.Entries, NextSequence: after.NextSequence, Epoch: m.Epoch}
		for i, e := range entries {
			want.Entries = append(want.Entries, manifest.Entry{Sequence: seqs[i], Location: e.Location, Metadata: e.Metadata})
		}
		equalManifest(t, got, want)
	})
}

// FuzzSalvageManifest: a repair never panics, refuses what decodes, and
// whatever it salvages encodes to a manifest that decodes, keeps sequences
// rising and below next_sequence, and fences (an epoch above the old one).
func FuzzSalvageManifest(f *testing.F) {
	for _, g := range goldens {
		b := readGolden(f, g.file)
		f.Add(b)
		if len(b) > 30 {
			d := bytes.Clone(b)
			d[30] ^= 1
			f.Add(d)
			f.Add(b[:len(b)-7])
		}
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		now := time.UnixMilli(1_800_000_000_000)
		s, err := manifest.SalvageManifest(b, now)
		if err != nil {
			if _, derr := manifest.Decode(b); derr == nil && !errors.Is(err, manifest.ErrNotDamaged) {
				t.Fatalf("a manifest that decodes was refused with %v", err)
			}
			return
		}
		m, err := manifest.Decode(s.Manifest.Encode())
		if err != nil {
			t.Fatalf("salvaged manifest does not decode: %v", err)
		}
		if s.FooterOK && m.Epoch <= s.Footer.Epoch {
			t.Fatalf("epoch %d does not fence the old %d", m.Epoch, s.Footer.Epoch)
		}
		if m.Epoch < uint64(now.UnixMilli()) {
			t.Fatalf("epoch %d below the clock", m.Epoch)
		}
	})
}
