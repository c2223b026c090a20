package manifest_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/bucketq/bucketq/manifest"
)

// hdr is a realistic metadata payload: the 4-byte batch header
// (version 1, signal, encoding, reserved 0).
func hdr(signal, encoding byte) []byte { return []byte{1, signal, encoding, 0} }

// normalize makes decoded and hand-built manifests comparable: nil and empty
// slices are the same thing for the codec.
func normalize(m *manifest.Manifest) *manifest.Manifest {
	out := &manifest.Manifest{NextSequence: m.NextSequence, Epoch: m.Epoch}
	for _, e := range m.Entries {
		ne := manifest.Entry{Sequence: e.Sequence, Location: e.Location}
		for _, md := range e.Metadata {
			p := md.Payload
			if len(p) == 0 {
				p = nil
			}
			ne.Metadata = append(ne.Metadata, manifest.Metadata{StartIndex: md.StartIndex, IngestionTimeMs: md.IngestionTimeMs, Payload: p})
		}
		out.Entries = append(out.Entries, ne)
	}
	return out
}

func equalManifest(t *testing.T, got, want *manifest.Manifest) {
	t.Helper()
	if g, w := normalize(got), normalize(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("manifest mismatch\n got: %+v\nwant: %+v", g, w)
	}
}

func TestRoundTrip(t *testing.T) {
	long := strings.Repeat("x", math.MaxUint16)
	tests := []struct {
		name string
		m    manifest.Manifest
	}{
		{"empty", manifest.Manifest{}},
		{"empty with epoch and next", manifest.Manifest{NextSequence: 42, Epoch: 7}},
		{"one entry no metadata", manifest.Manifest{NextSequence: 1, Entries: []manifest.Entry{{Sequence: 0, Location: "a"}}}},
		{"several entries several metadata", manifest.Manifest{NextSequence: 100, Epoch: 3, Entries: []manifest.Entry{
			{Sequence: 5, Location: "ingest/data/01J0000000000000000000000A.batch", Metadata: []manifest.Metadata{
				{StartIndex: 0, IngestionTimeMs: 1700000000000, Payload: hdr(4, 2)},
				{StartIndex: 10, IngestionTimeMs: 1700000000001, Payload: hdr(1, 1)},
				{StartIndex: 25, IngestionTimeMs: -1, Payload: hdr(2, 1)},
			}},
			{Sequence: 6, Location: "b", Metadata: []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: math.MaxInt64, Payload: nil}}},
			{Sequence: 99, Location: "", Metadata: []manifest.Metadata{{StartIndex: math.MaxUint32, IngestionTimeMs: math.MinInt64, Payload: []byte{}}}},
		}}},
		{"max location length", manifest.Manifest{NextSequence: math.MaxUint64, Epoch: math.MaxUint64, Entries: []manifest.Entry{
			{Sequence: math.MaxUint64 - 1, Location: long, Metadata: []manifest.Metadata{{Payload: bytes.Repeat([]byte{0xff}, 1000)}}},
		}}},
	}
	for _, v := range []uint16{manifest.Version1, manifest.Version2} {
		for _, tt := range tests {
			roundTrip(t, v, tt.name, tt.m)
		}
	}
}

func roundTrip(t *testing.T, v uint16, name string, m manifest.Manifest) {
	t.Run(fmt.Sprintf("v%d/%s", v, name), func(t *testing.T) {
		tt := struct{ m manifest.Manifest }{m}
		tt.m.Version = v
		{
			b := tt.m.Encode()
			want := manifest.FooterLen(v)
			for i := range tt.m.Entries {
				want += tt.m.Entries[i].EncodedLen()
				if v == manifest.Version2 {
					want += 4
				}
			}
			if len(b) != want {
				t.Fatalf("encoded %d bytes, EncodedLen sums to %d", len(b), want)
			}
			got, err := manifest.Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			equalManifest(t, got, &tt.m)
			if again := got.Encode(); !bytes.Equal(again, b) {
				t.Fatalf("re-encode differs:\n%x\n%x", again, b)
			}
			f, err := manifest.ReadFooter(b)
			if err != nil {
				t.Fatal(err)
			}
			wantF := manifest.Footer{EntryCount: uint32(len(tt.m.Entries)), NextSequence: tt.m.NextSequence, Epoch: tt.m.Epoch, Version: v}
			if v == manifest.Version2 {
				wantF.Checksum = crc32.Checksum(b[:len(b)-6], crc32.MakeTable(crc32.Castagnoli))
			}
			if f != wantF {
				t.Fatalf("footer %+v, want %+v", f, wantF)
			}
			if got.Version != v {
				t.Fatalf("decoded version %d, want %d", got.Version, v)
			}
		}
	})
}

// TestEmptyObjectIsNotAManifest: a zero-byte object is damage (issue 9: one
// was read as an empty queue, overwritten, and GC deleted 14 batches).
func TestEmptyObjectIsNotAManifest(t *testing.T) {
	for _, b := range [][]byte{nil, {}} {
		if m, err := manifest.Decode(b); !errors.Is(err, manifest.ErrTooShort) || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("Decode(%v) = %+v, %v; want ErrTooShort saying the object is empty", b, m, err)
		}
		if _, err := manifest.ReadFooter(b); !errors.Is(err, manifest.ErrTooShort) {
			t.Fatalf("ReadFooter(%v): %v, want ErrTooShort", b, err)
		}
		if _, _, err := manifest.AppendEntries(b, []manifest.NewEntry{{Location: "x"}}, 0); !errors.Is(err, manifest.ErrTooShort) {
			t.Fatalf("AppendEntries(%v): %v, want ErrTooShort", b, err)
		}
	}
	// The empty manifest is a bare footer: zeros plus the version (and in
	// version 2 the CRC-32C of the 20 zero bytes).
	if got, want := manifest.Empty(manifest.Version1), append(make([]byte, 20), 1, 0); !bytes.Equal(got, want) {
		t.Fatalf("Empty(1) = %x, want %x", got, want)
	}
	want2 := binary.LittleEndian.AppendUint32(make([]byte, 20), crc32.Checksum(make([]byte, 20), crc32.MakeTable(crc32.Castagnoli)))
	want2 = append(want2, 2, 0)
	if got := (&manifest.Manifest{}).Encode(); !bytes.Equal(got, want2) || !bytes.Equal(manifest.Empty(0), want2) {
		t.Fatalf("empty Encode = %x, Empty(0) = %x, want %x", got, manifest.Empty(0), want2)
	}
	for _, v := range []uint16{1, 2} {
		m, err := manifest.Decode(manifest.Empty(v))
		if err != nil || len(m.Entries) != 0 || m.NextSequence != 0 || m.Epoch != 0 || m.Version != v {
			t.Fatalf("Decode(Empty(%d)) = %+v, %v", v, m, err)
		}
	}
}

// TestV2DetectsEveryBitFlip flips each bit of a version 2 manifest: every
// flip is refused with a *CorruptError (issue 9: with version 1, 736 of
// 1,006 flips decoded silently to changed content).
func TestV2DetectsEveryBitFlip(t *testing.T) {
	m := manifest.Manifest{NextSequence: 9, Epoch: 4, Entries: []manifest.Entry{
		{Sequence: 5, Location: "ingest/data/01J0000000000000000000000A.batch", Metadata: []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: 1700000000000, Payload: hdr(4, 2)}}},
		{Sequence: 8, Location: "ingest/data/01J0000000000000000000000B.batch", Metadata: []manifest.Metadata{{Payload: hdr(1, 1)}, {StartIndex: 7, Payload: hdr(2, 1)}}},
	}}
	good := m.Encode()
	v1 := m
	v1.Version = manifest.Version1
	silent1 := 0
	good1 := v1.Encode()
	for pos := range good1 {
		b := bytes.Clone(good1)
		b[pos] ^= 1
		if _, err := manifest.Decode(b); err == nil {
			silent1++
		}
	}
	if silent1 == 0 {
		t.Fatal("no bit flip of a version 1 manifest decoded: the version 2 comparison below proves nothing")
	}
	for pos := range good {
		for bit := range 8 {
			b := bytes.Clone(good)
			b[pos] ^= 1 << bit
			_, err := manifest.Decode(b)
			var ce *manifest.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("flip of bit %d at byte %d of %d: Decode error %v, want a *CorruptError", bit, pos, len(good), err)
			}
			if _, _, err := manifest.AppendEntries(b, []manifest.NewEntry{{Location: "y"}}, 0); err == nil {
				t.Fatalf("flip of bit %d at byte %d: AppendEntries re-signed a damaged manifest", bit, pos)
			}
		}
	}
	t.Logf("version 1: %d of %d low-bit flips decoded silently; version 2: none of %d", silent1, len(good1), 8*len(good))
}

func TestDecodeDoesNotAlias(t *testing.T) {
	m := manifest.Manifest{NextSequence: 1, Entries: []manifest.Entry{{Location: "loc", Metadata: []manifest.Metadata{{Payload: hdr(4, 2)}}}}}
	b := m.Encode()
	d, err := manifest.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xAA
	}
	if d.Entries[0].Location != "loc" || !bytes.Equal(d.Entries[0].Metadata[0].Payload, hdr(4, 2)) {
		t.Fatalf("decoded manifest changed with its input: %+v", d.Entries[0])
	}
}

// entryBody builds an entry by hand so that malformed variants can be made.
type rawEntry struct {
	lenDelta int    // added to the correct entry_len
	seq      uint64 //
	locLen   int    // -1: len(loc)
	loc      string
	mdCount  int // -1: len(md)
	md       []rawMD
	trailing []byte // bytes after the metadata, inside entry_len
}

type rawMD struct {
	start  uint32
	ts     int64
	pl     int // -1: len(payload)
	pyload []byte
}

func (r rawEntry) bytes() []byte {
	var body []byte
	body = binary.LittleEndian.AppendUint64(body, r.seq)
	ll := r.locLen
	if ll < 0 {
		ll = len(r.loc)
	}
	body = binary.LittleEndian.AppendUint16(body, uint16(ll))
	body = append(body, r.loc...)
	mc := r.mdCount
	if mc < 0 {
		mc = len(r.md)
	}
	body = binary.LittleEndian.AppendUint32(body, uint32(mc))
	for _, m := range r.md {
		body = binary.LittleEndian.AppendUint32(body, m.start)
		body = binary.LittleEndian.AppendUint64(body, uint64(m.ts))
		pl := m.pl
		if pl < 0 {
			pl = len(m.pyload)
		}
		body = binary.LittleEndian.AppendUint32(body, uint32(pl))
		body = append(body, m.pyload...)
	}
	body = append(body, r.trailing...)
	n := len(body) + r.lenDelta
	return append(binary.LittleEndian.AppendUint32(nil, uint32(n)), body...)
}

func good(seq uint64) rawEntry {
	return rawEntry{seq: seq, locLen: -1, loc: "ingest/data/x.batch", mdCount: -1, md: []rawMD{{start: 0, ts: 1, pl: -1, pyload: hdr(4, 2)}}}
}

func build(count uint32, next, epoch uint64, version uint16, entries ...rawEntry) []byte {
	var b []byte
	for _, e := range entries {
		b = append(b, e.bytes()...)
	}
	return manifest.AppendFooter(b, manifest.Footer{EntryCount: count, NextSequence: next, Epoch: epoch, Version: version})
}

func withFooter(raw []byte, count uint32, next uint64) []byte {
	return manifest.AppendFooter(append([]byte(nil), raw...), manifest.Footer{EntryCount: count, NextSequence: next, Version: manifest.Version1})
}

func TestDecodeCorrupt(t *testing.T) {
	valid := build(2, 10, 1, 1, good(3), good(4))
	if _, err := manifest.Decode(valid); err != nil {
		t.Fatalf("baseline manifest does not decode: %v", err)
	}
	badLoc := good(3)
	badLoc.locLen = 200 // location length past the entry
	badMDCount := good(3)
	badMDCount.mdCount = 1000
	badMDCount2 := good(3)
	badMDCount2.mdCount = 2 // second item missing but count says 2
	badPayload := good(3)
	badPayload.md[0].pl = 50
	trailing := good(3)
	trailing.trailing = []byte{0}
	tinyBody := []byte{5, 0, 0, 0, 1, 2, 3, 4, 5} // entry_len 5 < 10
	overrun := good(3)
	overrun.lenDelta = 1
	withoutLast := func(b []byte, n int) []byte { return append([]byte(nil), b[:len(b)-n]...) }
	v2 := (&manifest.Manifest{NextSequence: 10, Epoch: 1, Entries: []manifest.Entry{{Sequence: 3, Location: "ingest/data/x.batch"}}}).Encode()
	flipped := func(b []byte, pos int) []byte {
		b = bytes.Clone(b)
		if pos < 0 {
			pos += len(b)
		}
		b[pos] ^= 0x04
		return b
	}
	// resigned recomputes a version 2 manifest's whole checksum, so only
	// the entry checksums can catch what changed.
	resigned := func(b []byte) []byte {
		b = bytes.Clone(b)
		binary.LittleEndian.PutUint32(b[len(b)-6:], crc32.Checksum(b[:len(b)-6], crc32.MakeTable(crc32.Castagnoli)))
		return b
	}

	tests := []struct {
		name string
		in   []byte
		want error
		text string // must appear in the error message
	}{
		{"one byte", []byte{1}, manifest.ErrTooShort, "1 bytes"},
		{"empty object", []byte{}, manifest.ErrTooShort, "the object is empty"},
		{"21 bytes ending in version 1", append(make([]byte, 19), 1, 0), manifest.ErrTooShort, "21 bytes, a version 1 footer needs 22"},
		{"25 bytes ending in version 2", append(make([]byte, 23), 2, 0), manifest.ErrTooShort, "25 bytes, a version 2 footer needs 26"},
		{"21 zero bytes", make([]byte, 21), manifest.ErrVersion, "truncated, zeroed or not a bucketq manifest"},
		{"version 0", build(0, 0, 0, 0), manifest.ErrVersion, "version 0"},
		{"version 3", build(0, 0, 0, 3), manifest.ErrVersion, "version 3"},
		{"v2 byte flipped", flipped(v2, 7), manifest.ErrChecksum, "footer says crc32c"},
		{"v2 entry re-signed whole but not per entry", resigned(flipped(v2, 20)), manifest.ErrChecksum, "entry 0 at offset 0: entry crc32c"},
		{"v2 footer fields changed", flipped(v2, -10), manifest.ErrChecksum, "footer says crc32c"},
		{"valid manifest cut by one byte", withoutLast(valid, 1), manifest.ErrVersion, ""},
		{"entry_len overruns block", build(1, 10, 0, 1, overrun), manifest.ErrEntryOverrun, "entry 0"},
		{"stray bytes", withFooter(append(good(3).bytes(), 1, 2, 3), 1, 10), manifest.ErrEntryOverrun, "3 stray bytes"},
		{"entry body shorter than 10", withFooter(tinyBody, 0, 9), manifest.ErrEntryMalformed, "entry 0 at offset 0"},
		{"location past entry", build(1, 10, 0, 1, badLoc), manifest.ErrEntryMalformed, "location"},
		{"metadata count does not fit", build(1, 10, 0, 1, badMDCount), manifest.ErrEntryMalformed, "metadata count 1000"},
		{"metadata item truncated", build(1, 10, 0, 1, badMDCount2), manifest.ErrEntryMalformed, "metadata"},
		{"payload past entry", build(1, 10, 0, 1, badPayload), manifest.ErrEntryMalformed, "payload of 50"},
		{"bytes after last metadata", build(1, 10, 0, 1, trailing), manifest.ErrEntryMalformed, "1 bytes after"},
		{"malformed second entry", build(2, 10, 0, 1, good(3), badPayload), manifest.ErrEntryMalformed, "entry 1"},
		{"count larger than found", build(3, 10, 0, 1, good(3), good(4)), manifest.ErrEntryCount, "found 2 entries, footer says 3"},
		{"count smaller than found", build(1, 10, 0, 1, good(3), good(4)), manifest.ErrEntryCount, "footer says 1"},
		{"count cannot fit in block", build(1000, 10, 0, 1, good(3)), manifest.ErrEntryCount, "footer says 1000"},
		{"count nonzero without entries", build(1, 10, 0, 1), manifest.ErrEntryCount, ""},
		{"sequence repeats", build(2, 10, 0, 1, good(3), good(3)), manifest.ErrSequence, "sequence 3 after 3"},
		{"sequence decreases", build(2, 10, 0, 1, good(4), good(3)), manifest.ErrSequence, "sequence 3 after 4"},
		{"sequence equals next", build(2, 4, 0, 1, good(3), good(4)), manifest.ErrSequence, "next_sequence is 4"},
		{"sequence above next", build(1, 0, 0, 1, good(0)), manifest.ErrSequence, "next_sequence is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := manifest.Decode(tt.in)
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", m)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			var ce *manifest.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *CorruptError", err)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q does not mention %q", err, tt.text)
			}
		})
	}
}

func TestReadFooterErrors(t *testing.T) {
	if _, err := manifest.ReadFooter([]byte{0, 0, 0, 1, 0}); !errors.Is(err, manifest.ErrTooShort) {
		t.Fatalf("5 bytes: %v", err)
	}
	if _, err := manifest.ReadFooter(build(0, 0, 0, 9)); !errors.Is(err, manifest.ErrVersion) {
		t.Fatalf("version 9: %v", err)
	}
	// ReadFooter does not look at entries: a garbage entry block is fine.
	b := append([]byte("garbage entries"), build(7, 11, 3, 1)...)
	f, err := manifest.ReadFooter(b)
	if err != nil {
		t.Fatal(err)
	}
	if f != (manifest.Footer{EntryCount: 7, NextSequence: 11, Epoch: 3, Version: 1}) {
		t.Fatalf("footer %+v", f)
	}
}

func TestAppendEntries(t *testing.T) {
	newEntries := []manifest.NewEntry{
		{Location: "ingest/data/a.batch", Metadata: []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: 5, Payload: hdr(4, 2)}}},
		{Location: "ingest/data/b.batch"},
		{Location: "ingest/data/c.batch", Metadata: []manifest.Metadata{{Payload: hdr(1, 1)}, {StartIndex: 3, Payload: hdr(2, 1)}}},
	}
	t.Run("to empty input", func(t *testing.T) {
		out, seqs, err := manifest.AppendEntries(manifest.Empty(0), newEntries[:1], 0)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(seqs, []uint64{0}) {
			t.Fatalf("seqs %v", seqs)
		}
		m, err := manifest.Decode(out)
		if err != nil {
			t.Fatal(err)
		}
		equalManifest(t, m, &manifest.Manifest{NextSequence: 1, Entries: []manifest.Entry{{Sequence: 0, Location: newEntries[0].Location, Metadata: newEntries[0].Metadata}}})
	})
	t.Run("assigns from next_sequence and keeps epoch", func(t *testing.T) {
		base := manifest.Manifest{NextSequence: 40, Epoch: 9, Entries: []manifest.Entry{{Sequence: 12, Location: "old"}}}
		out, seqs, err := manifest.AppendEntries(base.Encode(), newEntries, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(seqs, []uint64{40, 41, 42}) {
			t.Fatalf("seqs %v, want 40 41 42", seqs)
		}
		m, err := manifest.Decode(out)
		if err != nil {
			t.Fatal(err)
		}
		want := manifest.Manifest{NextSequence: 43, Epoch: 9, Entries: []manifest.Entry{{Sequence: 12, Location: "old"}}}
		for i, e := range newEntries {
			want.Entries = append(want.Entries, manifest.Entry{Sequence: seqs[i], Location: e.Location, Metadata: e.Metadata})
		}
		equalManifest(t, m, &want)
		// Appending is the same as encoding the appended manifest.
		if !bytes.Equal(out, want.Encode()) {
			t.Fatalf("AppendEntries output differs from Encode of the same manifest")
		}
	})
	t.Run("does not decode existing entries", func(t *testing.T) {
		garbage := []byte("\xff\xff\xff\xffthis is not an entry block at all")
		in := append(append([]byte(nil), garbage...), build(2, 77, 5, 1)...)
		if _, err := manifest.Decode(in); err == nil {
			t.Fatal("the garbage manifest decodes; the test proves nothing")
		}
		out, seqs, err := manifest.AppendEntries(in, newEntries[:2], manifest.Version1)
		if err != nil {
			t.Fatalf("AppendEntries read more than the footer: %v", err)
		}
		if !bytes.Equal(out[:len(garbage)], garbage) {
			t.Fatalf("garbage prefix not preserved: %x", out[:len(garbage)])
		}
		if !reflect.DeepEqual(seqs, []uint64{77, 78}) {
			t.Fatalf("seqs %v", seqs)
		}
		f, err := manifest.ReadFooter(out)
		if err != nil {
			t.Fatal(err)
		}
		if f != (manifest.Footer{EntryCount: 4, NextSequence: 79, Epoch: 5, Version: 1}) {
			t.Fatalf("footer %+v", f)
		}
		// What lies between the garbage and the new footer is exactly the
		// two new entries.
		var want []byte
		for i, e := range newEntries[:2] {
			want = manifest.AppendEntry(want, &manifest.Entry{Sequence: seqs[i], Location: e.Location, Metadata: e.Metadata}, manifest.Version1)
		}
		if mid := out[len(garbage) : len(out)-manifest.FooterSizeV1]; !bytes.Equal(mid, want) {
			t.Fatalf("appended entries\n%x\nwant\n%x", mid, want)
		}
	})
	t.Run("does not modify its input", func(t *testing.T) {
		in := (&manifest.Manifest{NextSequence: 3, Entries: []manifest.Entry{{Sequence: 2, Location: "x"}}}).Encode()
		saved := append([]byte(nil), in...)
		if _, _, err := manifest.AppendEntries(in[:len(in):len(in)], newEntries, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(in, saved) {
			t.Fatal("input modified")
		}
	})
	t.Run("no entries rewrites the footer only", func(t *testing.T) {
		in := build(0, 5, 2, 1)
		out, seqs, err := manifest.AppendEntries(in, nil, manifest.Version1)
		if err != nil || len(seqs) != 0 || !bytes.Equal(out, in) {
			t.Fatalf("out %x seqs %v err %v", out, seqs, err)
		}
	})
	errTests := []struct {
		name    string
		in      []byte
		entries []manifest.NewEntry
		want    string
		is      error
	}{
		{"too short", []byte{1, 2, 3, 1, 0}, newEntries, "", manifest.ErrTooShort},
		{"bad version", build(0, 0, 0, 3), newEntries, "", manifest.ErrVersion},
		{"location too long", manifest.Empty(0), []manifest.NewEntry{{Location: strings.Repeat("l", math.MaxUint16+1)}}, "location of 65536 bytes", nil},
		{"entry count overflow", build(math.MaxUint32, 0, 0, 1), newEntries[:1], "entries already", nil},
		{"sequence overflow", build(0, math.MaxUint64, 0, 1), newEntries[:1], "next_sequence", nil},
		{"sequence overflow in group", build(0, math.MaxUint64-1, 0, 1), newEntries[:2], "next_sequence", nil},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := manifest.AppendEntries(tt.in, tt.entries, 0)
			if err == nil {
				t.Fatalf("AppendEntries succeeded: %x", out)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	t.Run("last sequence below overflow is fine", func(t *testing.T) {
		out, seqs, err := manifest.AppendEntries(build(0, math.MaxUint64-1, 0, 1), newEntries[:1], 0)
		if err != nil {
			t.Fatal(err)
		}
		if seqs[0] != math.MaxUint64-1 {
			t.Fatalf("seq %d", seqs[0])
		}
		if _, err := manifest.Decode(out); err != nil {
			t.Fatalf("appended manifest does not decode: %v", err)
		}
	})
}

func TestFrom(t *testing.T) {
	m := manifest.Manifest{NextSequence: 20, Entries: []manifest.Entry{{Sequence: 3}, {Sequence: 4}, {Sequence: 10}, {Sequence: 19}}}
	tests := []struct {
		seq  uint64
		want []uint64
	}{
		{0, []uint64{3, 4, 10, 19}},
		{3, []uint64{3, 4, 10, 19}},
		{4, []uint64{4, 10, 19}},
		{5, []uint64{10, 19}},
		{19, []uint64{19}},
		{20, nil},
		{math.MaxUint64, nil},
	}
	for _, tt := range tests {
		var got []uint64
		for _, e := range m.From(tt.seq) {
			got = append(got, e.Sequence)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("From(%d) = %v, want %v", tt.seq, got, tt.want)
		}
	}
	if got := (&manifest.Manifest{}).From(0); len(got) != 0 {
		t.Errorf("empty From(0) = %v", got)
	}
}
