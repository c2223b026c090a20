package format_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bucketq/bucketq/format"
)

// FuzzDecodeBatch: DecodeBatch never panics; whatever it accepts has as many
// records as its footer says and survives a re-encode with the same
// compression; an uncompressed batch re-encodes to the same bytes.
// Committed seeds: testdata/fuzz/FuzzDecodeBatch. Run: scripts/fuzz.sh.
func FuzzDecodeBatch(f *testing.F) {
	for _, g := range goldens {
		b, err := os.ReadFile(filepath.Join(goldenDir, g.file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x01, 0, 0, 0, 0, 0x01, 0x00})                                         // bare zstd footer
	f.Add(rawBatch(block("a", "bc", ""), 0, 3, 1))                                      // valid
	f.Add(rawBatch(block("a", "bc"), 0, 3, 1))                                          // too few records
	f.Add(rawBatch(block("a", "bc", "d"), 0, 2, 1))                                     // too many
	f.Add(rawBatch(append(block("a"), 0xff, 0xff), 0, 1, 1))                            // trailing bytes
	f.Add(rawBatch([]byte{0xff, 0xff, 0xff, 0xff, 'x'}, 0, 1, 1))                       // overrun
	f.Add(rawBatch(rawZstd(f, block("zz", "", "zzz")), 1, 3, 1))                        // valid zstd
	f.Add(rawBatch(rawZstd(f, block("zz", "", "zzz")), 1, 2, 1))                        // zstd, wrong count
	f.Add(rawBatch(rawZstd(f, nil), 1, 0, 1))                                           // empty zstd frame
	f.Add(rawBatch(block("a"), 2, 1, 1))                                                // unknown compression
	f.Add(rawBatch(block("a"), 0, 1, 2))                                                // unknown version
	f.Add(rawBatch(bytes.Repeat([]byte{0}, 64), 0, 16, 1))                              // 16 empty records
	f.Add(rawBatch(bytes.Repeat([]byte{0}, 64), 0, 0xffffffff, 1))                      // absurd count
	f.Add(rawBatch(hugeFCSFrame(1<<29), 1, 1, 1))                                       // impossible content size
	f.Add(rawBatch(append(rawZstd(f, block("a")), rawZstd(f, block("b"))...), 1, 2, 1)) // two frames

	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		b, err := format.DecodeBatch(data)
		if !bytes.Equal(in, data) {
			t.Fatalf("DecodeBatch modified its input")
		}
		if err != nil {
			var de *format.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T %v is not a *format.DecodeError", err, err)
			}
			if de.Err == nil || de.Error() == "" {
				t.Fatalf("DecodeError without a sentinel or message: %#v", de)
			}
			return
		}
		footer, err := format.ReadFooter(data)
		if err != nil {
			t.Fatalf("DecodeBatch accepted a batch ReadFooter rejects: %v", err)
		}
		if footer != b.Footer {
			t.Fatalf("footer %+v, ReadFooter says %+v", b.Footer, footer)
		}
		if int(b.Footer.RecordCount) != len(b.Records) {
			t.Fatalf("decoded %d records, footer says %d", len(b.Records), b.Footer.RecordCount)
		}
		enc := format.NewEncoderVersion(b.Footer.Compression, b.Footer.Version)
		for _, r := range b.Records {
			enc.Append(r)
		}
		re, err := enc.Finish()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		b2, err := format.DecodeBatch(re)
		if err != nil {
			t.Fatalf("decode of re-encoded batch: %v", err)
		}
		if b.Footer.Version == format.BatchVersion2 && b.Footer.Compression == format.CompressionZstd {
			// The checksum covers the zstd frame, whose bytes may differ.
			b2.Footer.Checksum = b.Footer.Checksum
		}
		if b2.Footer != b.Footer {
			t.Fatalf("re-encoded footer %+v, want %+v", b2.Footer, b.Footer)
		}
		if len(b2.Records) != len(b.Records) {
			t.Fatalf("re-encoded batch has %d records, want %d", len(b2.Records), len(b.Records))
		}
		for i := range b.Records {
			if !bytes.Equal(b2.Records[i], b.Records[i]) {
				t.Fatalf("record %d changed in a re-encode round trip", i)
			}
		}
		if b.Footer.Compression == format.CompressionNone && !bytes.Equal(re, data) {
			t.Fatalf("uncompressed batch re-encodes to different bytes:\n got % x\nwant % x", re, data)
		}
	})
}

// FuzzParseHeader: ParseHeader never panics; an accepted header re-encodes
// to the same 4 bytes and names its codes; a rejection is one of the three
// sentinels, and the right one.
// Committed seeds: testdata/fuzz/FuzzParseHeader.
func FuzzParseHeader(f *testing.F) {
	f.Add(format.EventsHeader.Bytes())
	f.Add(format.NewHeader(format.SignalMetrics, format.EncodingOTLPProtobuf).Bytes())
	f.Add([]byte{1, 9, 9, 0})
	f.Add([]byte{1, 4, 2, 0, 0xde, 0xad})
	f.Add([]byte{})
	f.Add([]byte{1, 4, 2})
	f.Add([]byte{2, 4, 2, 0})
	f.Add([]byte{1, 4, 2, 1})

	f.Fuzz(func(t *testing.T, data []byte) {
		h, rest, err := format.ParseHeader(data)
		switch {
		case len(data) < format.MetadataHeaderSize:
			if !errors.Is(err, format.ErrMetadataTooShort) {
				t.Fatalf("%d bytes: err = %v, want ErrMetadataTooShort", len(data), err)
			}
			return
		case data[0] != format.MetadataVersion:
			if !errors.Is(err, format.ErrMetadataVersion) {
				t.Fatalf("version %d: err = %v, want ErrMetadataVersion", data[0], err)
			}
			return
		case data[3] != 0:
			if !errors.Is(err, format.ErrMetadataReserved) {
				t.Fatalf("reserved 0x%02x: err = %v, want ErrMetadataReserved", data[3], err)
			}
			return
		}
		if err != nil {
			t.Fatalf("valid header % x rejected: %v", data[:4], err)
		}
		if !bytes.Equal(h.Bytes(), data[:format.MetadataHeaderSize]) {
			t.Fatalf("Bytes() = % x, input % x", h.Bytes(), data[:format.MetadataHeaderSize])
		}
		if !bytes.Equal(rest, data[format.MetadataHeaderSize:]) {
			t.Fatalf("rest = % x, want % x", rest, data[format.MetadataHeaderSize:])
		}
		if s, err := format.ParseSignal(h.Signal.String()); h.Signal.Known() != (err == nil) || (err == nil && s != h.Signal) {
			t.Fatalf("signal %d named %q parses back to %v, %v", uint8(h.Signal), h.Signal, s, err)
		}
		if e, err := format.ParseEncoding(h.Encoding.String()); h.Encoding.Known() != (err == nil) || (err == nil && e != h.Encoding) {
			t.Fatalf("encoding %d named %q parses back to %v, %v", uint8(h.Encoding), h.Encoding, e, err)
		}
		if !h.Signal.Known() && !strings.HasPrefix(h.Signal.String(), "unknown(") {
			t.Fatalf("unknown signal named %q", h.Signal)
		}
		if !h.Encoding.Known() && !strings.HasPrefix(h.Encoding.String(), "unknown(") {
			t.Fatalf("unknown encoding named %q", h.Encoding)
		}
	})
}
