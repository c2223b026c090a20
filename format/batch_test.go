package format_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/bucketq/bucketq/format"
)

var compressions = []format.Compression{format.CompressionNone, format.CompressionZstd}

// recordsOf builds n records of varying size, some empty.
func recordsOf(n int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		if i%7 == 3 {
			recs[i] = []byte{}
			continue
		}
		recs[i] = []byte(fmt.Sprintf(`{"id":"%d","subject":"customer-%d","data":{"tokens":%d}}`, i, i%13, i*31))
	}
	return recs
}

func largeRecord(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name    string
		records [][]byte
	}{
		{"zero records", nil},
		{"one record", [][]byte{[]byte(`{"id":"1"}`)}},
		{"one empty record", [][]byte{{}}},
		{"empty records around one", [][]byte{{}, []byte("x"), {}}},
		{"many records", recordsOf(1000)},
		{"one large record", [][]byte{largeRecord(3 << 20)}},
		{"large and small records", [][]byte{[]byte("a"), largeRecord(300_000), {}, []byte("b")}},
		{"binary record with length-like bytes", [][]byte{{0xff, 0xff, 0xff, 0xff}, {0, 0, 0, 0}, {7, 0, 0, 0, 1}}},
	}
	for _, c := range compressions {
		for _, tc := range cases {
			t.Run(c.String()+"/"+tc.name, func(t *testing.T) {
				b, err := format.EncodeBatch(c, tc.records)
				if err != nil {
					t.Fatalf("EncodeBatch: %v", err)
				}
				f, err := format.ReadFooter(b)
				if err != nil {
					t.Fatalf("ReadFooter: %v", err)
				}
				want := format.Footer{Compression: c, RecordCount: uint32(len(tc.records)), Version: format.BatchVersion2,
					Checksum: crc32.Checksum(b[:len(b)-6], crc32.MakeTable(crc32.Castagnoli))}
				if f != want {
					t.Fatalf("footer = %+v, want %+v", f, want)
				}
				got, err := format.DecodeBatch(b)
				if err != nil {
					t.Fatalf("DecodeBatch: %v", err)
				}
				if got.Footer != want {
					t.Fatalf("decoded footer = %+v, want %+v", got.Footer, want)
				}
				assertRecords(t, got.Records, tc.records)
				if c == format.CompressionNone {
					// Uncompressed size is exactly predictable.
					wantLen := format.FooterSizeV2
					for _, r := range tc.records {
						wantLen += 4 + len(r)
					}
					if len(b) != wantLen {
						t.Fatalf("encoded length %d, want %d", len(b), wantLen)
					}
				}
			})
		}
	}
}

func assertRecords(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d = %.60q (len %d), want %.60q (len %d)", i, got[i], len(got[i]), want[i], len(want[i]))
		}
	}
}

func TestEmptyBatchIsFooterOnly(t *testing.T) {
	for _, c := range []struct {
		c    format.Compression
		want []byte
		v    uint16
	}{
		{format.CompressionNone, []byte{0x00, 0, 0, 0, 0, 0x01, 0x00}, 1},
		{format.CompressionZstd, []byte{0x01, 0, 0, 0, 0, 0x01, 0x00}, 1},
		{format.CompressionNone, []byte{0x00, 0, 0, 0, 0, 0x35, 0x76, 0x72, 0x45, 0x02, 0x00}, 2},
		{format.CompressionZstd, []byte{0x01, 0, 0, 0, 0, 0x99, 0x19, 0x63, 0x7d, 0x02, 0x00}, 2},
	} {
		b, err := format.NewEncoderVersion(c.c, c.v).Finish()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, c.want) {
			t.Fatalf("empty %s batch = % x, want % x", c.c, b, c.want)
		}
		got, err := format.DecodeBatch(b)
		if err != nil {
			t.Fatalf("empty %s batch: %v", c.c, err)
		}
		if len(got.Records) != 0 || got.Footer.Compression != c.c {
			t.Fatalf("empty %s batch decoded to %+v", c.c, got)
		}
	}
	// An empty zstd frame before the footer (older writers) is read too.
	frame, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	old := append(frame.EncodeAll(nil, nil), 0x01, 0, 0, 0, 0, 0x01, 0x00)
	if got, err := format.DecodeBatch(old); err != nil || len(got.Records) != 0 {
		t.Fatalf("empty zstd frame + footer: %+v, %v", got, err)
	}
}

func TestEncoderSizeCountAndReset(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			e := format.NewEncoder(c)
			if e.Size() != format.FooterSizeV2 || e.Count() != 0 {
				t.Fatalf("new encoder: Size %d Count %d, want %d 0", e.Size(), e.Count(), format.FooterSizeV2)
			}
			recs := [][]byte{[]byte("hello"), {}, largeRecord(1000), []byte("x")}
			want := format.FooterSizeV2
			for i, r := range recs {
				e.Append(r)
				want += 4 + len(r)
				if e.Size() != want {
					t.Fatalf("after record %d: Size %d, want %d", i, e.Size(), want)
				}
				if e.Count() != i+1 {
					t.Fatalf("after record %d: Count %d, want %d", i, e.Count(), i+1)
				}
			}
			first, err := e.Finish()
			if err != nil {
				t.Fatal(err)
			}
			if c == format.CompressionNone && len(first) != e.Size() {
				t.Fatalf("uncompressed batch is %d bytes, Size said %d", len(first), e.Size())
			}
			if c == format.CompressionZstd && len(first) > e.Size()+64 {
				t.Fatalf("zstd batch %d bytes, far above Size %d", len(first), e.Size())
			}

			e.Reset()
			if e.Size() != format.FooterSizeV2 || e.Count() != 0 {
				t.Fatalf("after Reset: Size %d Count %d", e.Size(), e.Count())
			}
			second := [][]byte{[]byte("after reset")}
			e.Append(second[0])
			b, err := e.Finish()
			if err != nil {
				t.Fatal(err)
			}
			got, err := format.DecodeBatch(b)
			if err != nil {
				t.Fatal(err)
			}
			assertRecords(t, got.Records, second)
			// The first result is untouched by Reset and reuse.
			dec, err := format.DecodeBatch(first)
			if err != nil {
				t.Fatalf("first batch after encoder reuse: %v", err)
			}
			assertRecords(t, dec.Records, recs)
		})
	}
}

func TestAppendCopiesRecord(t *testing.T) {
	e := format.NewEncoder(format.CompressionNone)
	rec := []byte("original")
	e.Append(rec)
	copy(rec, "CHANGED!")
	b, err := e.Finish()
	if err != nil {
		t.Fatal(err)
	}
	got, err := format.DecodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	assertRecords(t, got.Records, [][]byte{[]byte("original")})
}

func TestFinishDoesNotAliasEncoder(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			e := format.NewEncoder(c)
			e.Append([]byte("aaaaaaaaaaaaaaaa"))
			e.Append([]byte("bbbbbbbbbbbbbbbb"))
			out1, err := e.Finish()
			if err != nil {
				t.Fatal(err)
			}
			keep := bytes.Clone(out1)
			// Scribble over the result: the encoder must not see it.
			for i := range out1 {
				out1[i] = 0xEE
			}
			out2, err := e.Finish()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out2, keep) {
				t.Fatalf("second Finish differs after writing to the first result:\n% x\n% x", out2, keep)
			}
			// Reuse the encoder with same-length records: the buffer is
			// overwritten in place, the earlier result must not change.
			e.Reset()
			e.Append([]byte("cccccccccccccccc"))
			e.Append([]byte("dddddddddddddddd"))
			if _, err := e.Finish(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out2, keep) {
				t.Fatalf("Finish result changed after Reset and reuse")
			}
			// Appending after Finish must not write into the earlier result either.
			e.Append([]byte("eeee"))
			if !bytes.Equal(out2, keep) {
				t.Fatalf("Finish result changed by a later Append")
			}
		})
	}
}

func TestFinishUnknownCompression(t *testing.T) {
	e := format.NewEncoder(format.Compression(9))
	e.Append([]byte("x"))
	_, err := e.Finish()
	if err == nil || !strings.Contains(err.Error(), "unknown(0x09)") {
		t.Fatalf("Finish with compression 9: err = %v, want one naming unknown(0x09)", err)
	}
}

func TestCompressionNames(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    format.Compression
		wantErr bool
	}{
		{"none", format.CompressionNone, false},
		{"", format.CompressionNone, false},
		{"zstd", format.CompressionZstd, false},
		{"gzip", 0, true},
		{"ZSTD", 0, true},
	} {
		got, err := format.ParseCompression(tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseCompression(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if tc.wantErr && err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.in)) {
			t.Errorf("ParseCompression(%q) error %q does not name the input", tc.in, err)
		}
	}
	for c, want := range map[format.Compression]string{0: "none", 1: "zstd", 2: "unknown(0x02)", 0xff: "unknown(0xff)"} {
		if c.String() != want {
			t.Errorf("Compression(%d).String() = %q, want %q", c, c.String(), want)
		}
	}
}

// rawBatch assembles a batch by hand: a record block and a footer.
func encodeV1(c format.Compression, recs [][]byte) ([]byte, error) {
	e := format.NewEncoderVersion(c, format.BatchVersion1)
	for _, r := range recs {
		e.Append(r)
	}
	return e.Finish()
}

// TestDecodeV2BitFlips flips every bit of version 2 batches, compressed or
// not: each flip must be refused (CRC-32C detects every single-bit error).
// Version 1 uncompressed batches have no such check; that is why version 2
// exists (issue 9: 736 of 1,006 manifest flips decoded silently).
func TestDecodeV2BitFlips(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			good, err := format.EncodeBatch(c, recordsOf(20))
			if err != nil {
				t.Fatal(err)
			}
			for pos := range good {
				for bit := range 8 {
					b := bytes.Clone(good)
					b[pos] ^= 1 << bit
					if got, err := format.DecodeBatch(b); err == nil {
						t.Fatalf("flip of bit %d at byte %d of %d decoded to %d records without error", bit, pos, len(good), len(got.Records))
					}
				}
			}
		})
	}
}

// flipV2 encodes a small version 2 batch and flips one bit of byte pos
// (counted from the end when negative).
func flipV2(t testing.TB, c format.Compression, pos int) []byte {
	t.Helper()
	b, err := format.EncodeBatch(c, [][]byte{[]byte("one"), []byte("two"), []byte("three")})
	if err != nil {
		t.Fatal(err)
	}
	if pos < 0 {
		pos += len(b)
	}
	b[pos] ^= 0x10
	return b
}

func rawBatch(block []byte, c byte, count uint32, version uint16) []byte {
	b := bytes.Clone(block)
	b = append(b, c)
	b = binary.LittleEndian.AppendUint32(b, count)
	return binary.LittleEndian.AppendUint16(b, version)
}

// block builds a record block from records.
func block(recs ...string) []byte {
	var b []byte
	for _, r := range recs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r)))
		b = append(b, r...)
	}
	return b
}

// hugeFCSFrame is a 20-byte zstd frame header declaring fcs bytes of
// content (single segment, 8-byte content size), followed by garbage.
func hugeFCSFrame(fcs uint64) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe4} // magic; FCS flag 3 (8 bytes), single segment, checksum
	b = binary.LittleEndian.AppendUint64(b, fcs)
	return append(b, 1, 2, 3, 4, 5, 6, 7)
}

func rawZstd(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

type decodeErrCase struct {
	name    string
	in      []byte
	want    error
	wantMsg []string // substrings the message must contain
}

// decodeErrorCases is one malformed batch for every decode error.
func decodeErrorCases(t testing.TB) []decodeErrCase {
	type tc = decodeErrCase
	// Version 1, so the zstd frame's own checksum is what must catch the
	// flips below (version 2's CRC would catch them first).
	goodZstd, err := encodeV1(format.CompressionZstd, [][]byte{[]byte("one"), []byte("two"), []byte("three")})
	if err != nil {
		t.Fatal(err)
	}
	frameLen := len(goodZstd) - format.FooterSizeV1
	flip := func(pos int) []byte {
		b := bytes.Clone(goodZstd)
		b[pos] ^= 0x40
		return b
	}
	cases := []tc{
		{"unknown compression 0x02", rawBatch(block("a"), 0x02, 1, 1), format.ErrUnknownCompression, []string{"unknown compression", "code 0x02"}},
		{"unknown compression 0xff", rawBatch(nil, 0xff, 0, 1), format.ErrUnknownCompression, []string{"code 0xff"}},
		{"version 0", rawBatch(block("a"), 0, 1, 0), format.ErrUnknownVersion, []string{"version 0, this reader knows 1 and 2", "truncated, zeroed or not a bucketq batch"}},
		{"version 3", rawBatch(block("a"), 0, 1, 3), format.ErrUnknownVersion, []string{"version 3, this reader knows 1 and 2"}},
		{"version 0x0100 (big endian 1)", rawBatch(nil, 0, 0, 0x0100), format.ErrUnknownVersion, []string{"version 256"}},
		{"text file", []byte("root:x:0:0:root:/root:/bin/bash\n"), format.ErrUnknownVersion, []string{"version 2664", "not a bucketq batch"}},
		{"v2 footer cut short", []byte{0, 1, 0, 0, 0, 2, 0}, format.ErrTooShort, []string{"7 bytes, a version 2 footer needs 11"}},
		{"v2 uncompressed record byte flipped", flipV2(t, format.CompressionNone, 5), format.ErrChecksum, []string{"footer says crc32c", "changed or damaged"}},
		{"v2 record count changed", flipV2(t, format.CompressionNone, -9), format.ErrChecksum, []string{"footer says crc32c"}},
		{"v2 checksum byte changed", flipV2(t, format.CompressionZstd, -4), format.ErrChecksum, []string{"footer says crc32c"}},
		{"v2 zstd frame byte flipped", flipV2(t, format.CompressionZstd, 10), format.ErrChecksum, []string{"footer says crc32c"}},
		{"first record runs past block", rawBatch(append(binary.LittleEndian.AppendUint32(nil, 10), "abc"...), 0, 1, 1),
			format.ErrRecordOverrun, []string{"record 0 at offset 0", "length 10", "3 bytes left"}},
		{"second record runs past block", rawBatch(append(block("ab"), append(binary.LittleEndian.AppendUint32(nil, 5), "xy"...)...), 0, 2, 1),
			format.ErrRecordOverrun, []string{"record 1 at offset 6", "length 5", "2 bytes left"}},
		{"record length 0xffffffff", rawBatch(append(binary.LittleEndian.AppendUint32(nil, 0xffffffff), "abcd"...), 0, 1, 1),
			format.ErrRecordOverrun, []string{"length 4294967295"}},
		{"fewer records than count", rawBatch(block("abcdef", "ghijkl"), 0, 3, 1), format.ErrRecordCount, []string{"found 2 records, footer says 3"}},
		{"count with no block", rawBatch(nil, 0, 1, 1), format.ErrRecordCount, []string{"footer says 1 records", "0 bytes"}},
		{"absurd count", rawBatch(block("a", "b"), 0, 1<<31, 1), format.ErrRecordCount, []string{"2147483648"}},
		{"more records than count", rawBatch(block("a", "b", "c"), 0, 2, 1), format.ErrRecordCount, []string{"more records than the footer's 2", "offset 10"}},
		{"records but count 0", rawBatch(block("a"), 0, 0, 1), format.ErrRecordCount, []string{"footer's 0"}},
		{"zstd block decodes to an overrunning record", rawBatch(rawZstd(t, append(binary.LittleEndian.AppendUint32(nil, 99), "short"...)), 1, 1, 1),
			format.ErrRecordOverrun, []string{"record 0", "length 99"}},
		{"zstd block with fewer records", rawBatch(rawZstd(t, block("aaaa", "bbbb")), 1, 3, 1), format.ErrRecordCount, []string{"found 2 records, footer says 3"}},
		{"not zstd at all", rawBatch([]byte("this is not a zstd frame"), 1, 1, 1), format.ErrCorruptZstd, []string{"corrupt zstd"}},
		{"zstd checksum byte flipped", flip(frameLen - 1), format.ErrCorruptZstd, []string{"corrupt zstd"}},
		{"zstd payload byte flipped", flip(frameLen / 2), format.ErrCorruptZstd, []string{"corrupt zstd"}},
		{"zstd magic flipped", flip(0), format.ErrCorruptZstd, []string{"corrupt zstd"}},
		{"zstd frame truncated", append(bytes.Clone(goodZstd[:frameLen-3]), goodZstd[frameLen:]...), format.ErrCorruptZstd, []string{"corrupt zstd"}},
		{"zstd frame declaring 512 MiB in 20 bytes", rawBatch(hugeFCSFrame(1<<29), 1, 1, 1), format.ErrCorruptZstd,
			[]string{"frame declares 536870912 bytes of content, impossible in 20 compressed bytes"}},
	}
	for n := 0; n < 2; n++ {
		cases = append(cases, tc{fmt.Sprintf("%d bytes", n), make([]byte, n), format.ErrTooShort, []string{fmt.Sprintf("%d bytes, a footer needs at least 7", n)}})
	}
	for n := 2; n < format.FooterSizeV1; n++ {
		cases = append(cases, tc{fmt.Sprintf("%d zero bytes", n), make([]byte, n), format.ErrUnknownVersion, []string{"version 0", "truncated, zeroed"}})
	}
	cases = append(cases, tc{"v1 footer cut short", []byte{1, 0, 0, 0, 1, 0}, format.ErrTooShort, []string{"6 bytes, a version 1 footer needs 7"}})
	for n := 1; n <= 3; n++ {
		stray := bytes.Repeat([]byte{0xAB}, n)
		cases = append(cases,
			tc{fmt.Sprintf("%d trailing bytes", n), rawBatch(append(block("one", "two"), stray...), 0, 2, 1),
				format.ErrTrailingBytes, []string{fmt.Sprintf("%d bytes at offset 14 after record 2", n)}},
			tc{fmt.Sprintf("%d trailing bytes, count 0", n), rawBatch(stray, 0, 0, 1),
				format.ErrTrailingBytes, []string{fmt.Sprintf("%d bytes at offset 0 after record 0", n)}},
			tc{fmt.Sprintf("%d trailing bytes inside zstd block", n), rawBatch(rawZstd(t, append(block("one"), stray...)), 1, 1, 1),
				format.ErrTrailingBytes, []string{fmt.Sprintf("%d bytes at offset 7 after record 1", n)}},
		)
	}
	return cases
}

func TestDecodeErrors(t *testing.T) {
	cases := decodeErrorCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := format.DecodeBatch(tc.in)
			if err == nil {
				t.Fatalf("DecodeBatch succeeded with %d records, want %v", len(got.Records), tc.want)
			}
			if got != nil {
				t.Errorf("DecodeBatch returned a batch with its error")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want errors.Is %v", err, tc.want)
			}
			var de *format.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err %T is not a *format.DecodeError", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "batch: "+tc.want.Error()) {
				t.Errorf("message %q does not start with %q", msg, "batch: "+tc.want.Error())
			}
			for _, s := range tc.wantMsg {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q does not contain %q", msg, s)
				}
			}
		})
	}
}

// TestDecodeZstdBitFlips flips bits in every byte of a zstd frame: no
// corruption may decode to different records (the frame checksum is on).
func TestDecodeZstdBitFlips(t *testing.T) {
	recs := recordsOf(50)
	good, err := encodeV1(format.CompressionZstd, recs)
	if err != nil {
		t.Fatal(err)
	}
	frameLen := len(good) - format.FooterSizeV1
	benign := 0
	defer func() {
		t.Logf("%d of %d single-bit flips decoded to the original records", benign, 2*frameLen)
		if benign > frameLen/20 {
			t.Errorf("%d of %d flips went unnoticed: is the frame checksum off?", benign, 2*frameLen)
		}
	}()
	for pos := 0; pos < frameLen; pos++ {
		for _, mask := range []byte{0x01, 0x80} {
			b := bytes.Clone(good)
			b[pos] ^= mask
			got, err := format.DecodeBatch(b)
			if err == nil {
				// A few bits of a zstd frame do not change the output (for
				// example unused table bits); the content checksum guarantees
				// that whatever decodes is the original data.
				for i := range recs {
					if !bytes.Equal(got.Records[i], recs[i]) {
						t.Errorf("flip 0x%02x at byte %d of %d: decoded without error to different record %d", mask, pos, frameLen, i)
						break
					}
				}
				benign++
				continue
			}
			var de *format.DecodeError
			if !errors.As(err, &de) {
				t.Errorf("flip at %d: error %T %v is not a *DecodeError", pos, err, err)
			}
		}
	}
}

func TestReadFooter(t *testing.T) {
	b := rawBatch(block("x"), 1, 0x01020304, 1)
	f, err := format.ReadFooter(b)
	if err != nil {
		t.Fatal(err)
	}
	want := format.Footer{Compression: format.CompressionZstd, RecordCount: 0x01020304, Version: 1}
	if f != want {
		t.Fatalf("ReadFooter = %+v, want %+v", f, want)
	}
	if got := format.AppendFooter([]byte("pre"), want); !bytes.Equal(got, []byte{'p', 'r', 'e', 0x01, 0x04, 0x03, 0x02, 0x01, 0x01, 0x00}) {
		t.Fatalf("AppendFooter = % x", got)
	}
}

// TestDecodeDensestZstdFrame: the guard against impossible declared sizes
// must not reject the densest real frames (runs of zeros at the best level,
// close to the 32768x bound).
func TestDecodeDensestZstdFrame(t *testing.T) {
	rec := make([]byte, 16<<20)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	frame := enc.EncodeAll(block(string(rec)), nil)
	ratio := float64(len(rec)+4) / float64(len(frame))
	if ratio < 20000 {
		t.Fatalf("test frame only %.0fx dense: not testing the bound", ratio)
	}
	got, err := format.DecodeBatch(rawBatch(frame, 1, 1, 1))
	if err != nil {
		t.Fatalf("%.0fx dense frame rejected: %v", ratio, err)
	}
	if len(got.Records) != 1 || len(got.Records[0]) != len(rec) {
		t.Fatalf("decoded %d records", len(got.Records))
	}
}

// addr is the address of a record's first byte, without unsafe.
func addr(b []byte) uintptr { return reflect.ValueOf(b).Pointer() }

// TestDecodeDoesNotCopyRecords checks that records are sub-slices of one
// block: the input itself for CompressionNone, one decompressed buffer for
// zstd, and that decoding allocates a constant number of times whatever
// the record count.
func TestDecodeDoesNotCopyRecords(t *testing.T) {
	recs := recordsOf(500)
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			in, err := format.EncodeBatch(c, recs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := format.DecodeBatch(in)
			if err != nil {
				t.Fatal(err)
			}
			// Offsets of every record within the uncompressed block.
			off := 0
			var base uintptr
			if c == format.CompressionNone {
				base = addr(in)
			}
			for i, r := range got.Records {
				off += 4
				if len(r) > 0 {
					if base == 0 { // zstd: anchor on the first non-empty record
						base = addr(r) - uintptr(off)
					}
					if addr(r) != base+uintptr(off) {
						t.Fatalf("record %d is not at offset %d of the block: copied?", i, off)
					}
				}
				if cap(r) != len(r) {
					t.Fatalf("record %d has cap %d > len %d: appending to it would overwrite the next record", i, cap(r), len(r))
				}
				off += len(r)
			}
			if c == format.CompressionNone {
				// Writing through the input shows in the record: they share memory.
				in[4] ^= 0xff
				if got.Records[0][0] != in[4] {
					t.Fatalf("record 0 does not alias the input")
				}
				in[4] ^= 0xff
			}
			if raceEnabled {
				return // allocation counts are not stable under -race (sync.Pool drops items)
			}
			small, _ := format.EncodeBatch(c, recs[:100])
			allocsSmall := testing.AllocsPerRun(20, func() { format.DecodeBatch(small) })
			allocsLarge := testing.AllocsPerRun(20, func() { format.DecodeBatch(in) })
			if allocsLarge != allocsSmall {
				t.Fatalf("DecodeBatch allocates %v times for 100 records, %v for %d: per-record allocation", allocsSmall, allocsLarge, len(recs))
			}
			// 2-4 in a normal build (batch, record slice, zstd output).
			if allocsLarge > 6 {
				t.Fatalf("DecodeBatch allocates %v times, want at most 6", allocsLarge)
			}
		})
	}
}
