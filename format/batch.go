// Package format encodes and decodes bucketq batch files and the 4-byte
// entry metadata header. It is the byte layout of RFC 0001 and RFC 0003 and
// nothing else: no I/O, no queue logic, and no imports from the rest of bucketq.
package format

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// Compression is the code in the first byte of a batch footer.
type Compression uint8

const (
	// CompressionNone stores the record block as is.
	CompressionNone Compression = 0x00
	// CompressionZstd stores the record block as one zstd frame (level 3, with checksum).
	CompressionZstd Compression = 0x01
)

// String returns "none", "zstd" or "unknown(0xNN)".
func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("unknown(0x%02x)", uint8(c))
}

// ParseCompression maps "none", "" and "zstd" to their codes.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "none", "":
		return CompressionNone, nil
	case "zstd":
		return CompressionZstd, nil
	}
	return 0, fmt.Errorf("unknown compression %q (want none or zstd)", s)
}

const (
	// BatchVersion1 is the opendata Buffer layout: a 7-byte footer and no
	// checksum of its own (a zstd frame carries one; an uncompressed block
	// has none).
	BatchVersion1 uint16 = 1
	// BatchVersion2 adds a CRC-32C of everything before it to the footer
	// (11 bytes), so every change to a batch is detected (RFC 0001).
	BatchVersion2 uint16 = 2
	// BatchVersion is the version NewEncoder writes.
	BatchVersion = BatchVersion2
	// FooterSizeV1 and FooterSizeV2 are the footer sizes of each version.
	FooterSizeV1 = 7
	FooterSizeV2 = 11
	// recordHeaderSize is the u32 length prefix of each record.
	recordHeaderSize = 4
)

// castagnoli is the CRC-32C table (hardware-accelerated on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FooterLen is the footer size of a batch version, 0 for an unknown one.
func FooterLen(version uint16) int {
	switch version {
	case BatchVersion1:
		return FooterSizeV1
	case BatchVersion2:
		return FooterSizeV2
	}
	return 0
}

// Sentinel errors, matched with errors.Is; every decode error wraps one of
// these inside a *DecodeError that says where and what.
var (
	ErrTooShort           = errors.New("batch truncated: shorter than its footer")
	ErrUnknownCompression = errors.New("unknown compression")
	ErrUnknownVersion     = errors.New("unsupported batch version")
	ErrChecksum           = errors.New("batch checksum mismatch")
	ErrRecordOverrun      = errors.New("record length runs past the record block")
	ErrRecordCount        = errors.New("record count does not match footer")
	ErrTrailingBytes      = errors.New("trailing bytes after the last record")
	ErrCorruptZstd        = errors.New("corrupt zstd record block")
)

// DecodeError describes why a batch could not be decoded.
type DecodeError struct {
	Err    error  // one of the sentinel errors above
	Detail string // human-readable specifics (offsets, counts)
}

func (e *DecodeError) Error() string {
	if e.Detail == "" {
		return "batch: " + e.Err.Error()
	}
	return "batch: " + e.Err.Error() + ": " + e.Detail
}

func (e *DecodeError) Unwrap() error { return e.Err }

func decodeErr(err error, format string, args ...any) error {
	return &DecodeError{Err: err, Detail: fmt.Sprintf(format, args...)}
}

// Footer is the trailer of every batch file: 7 bytes in version 1, 11 in
// version 2, which adds Checksum.
type Footer struct {
	Compression Compression
	RecordCount uint32
	Version     uint16
	// Checksum is the CRC-32C (Castagnoli) of every byte of the file
	// before it: the stored record block, compression and record_count.
	// Version 2 only.
	Checksum uint32
}

// Len is the footer's encoded size.
func (f Footer) Len() int { return FooterLen(f.Version) }

// AppendFooter appends the encoded footer to dst, which must hold exactly
// the batch's stored record block. For version 2 it computes the checksum
// over dst and the footer fields before it (f.Checksum is ignored).
func AppendFooter(dst []byte, f Footer) []byte {
	dst = append(dst, byte(f.Compression))
	dst = binary.LittleEndian.AppendUint32(dst, f.RecordCount)
	if f.Version == BatchVersion2 {
		dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst, castagnoli))
	}
	return binary.LittleEndian.AppendUint16(dst, f.Version)
}

// ReadFooter parses the footer at the end of a batch file. It checks length,
// version and compression code, but not the checksum, so it never touches
// the record block: DecodeBatch and VerifyChecksum check that.
func ReadFooter(b []byte) (Footer, error) {
	if len(b) < 2 {
		return Footer{}, decodeErr(ErrTooShort, "%d bytes, a footer needs at least %d", len(b), FooterSizeV1)
	}
	v := binary.LittleEndian.Uint16(b[len(b)-2:])
	n := FooterLen(v)
	if n == 0 {
		return Footer{Version: v}, decodeErr(ErrUnknownVersion, "the last two bytes read as version %d, this reader knows 1 and 2: the file is truncated, zeroed or not a bucketq batch", v)
	}
	if len(b) < n {
		return Footer{Version: v}, decodeErr(ErrTooShort, "%d bytes, a version %d footer needs %d", len(b), v, n)
	}
	t := b[len(b)-n:]
	f := Footer{
		Compression: Compression(t[0]),
		RecordCount: binary.LittleEndian.Uint32(t[1:5]),
		Version:     v,
	}
	if v == BatchVersion2 {
		f.Checksum = binary.LittleEndian.Uint32(t[5:9])
	}
	if f.Compression != CompressionNone && f.Compression != CompressionZstd {
		return f, decodeErr(ErrUnknownCompression, "code 0x%02x", uint8(f.Compression))
	}
	return f, nil
}

// VerifyChecksum checks a version 2 batch's CRC-32C; a version 1 batch has
// none and passes. It reads the footer first and returns its errors.
func VerifyChecksum(b []byte) (Footer, error) {
	f, err := ReadFooter(b)
	if err != nil {
		return f, err
	}
	if f.Version != BatchVersion2 {
		return f, nil
	}
	if got := crc32.Checksum(b[:len(b)-6], castagnoli); got != f.Checksum {
		return f, decodeErr(ErrChecksum, "footer says crc32c %08x, the %d bytes before it hash to %08x: the file was changed or damaged after it was written", f.Checksum, len(b)-6, got)
	}
	return f, nil
}

// zstdMaxDecoded bounds the decompressed size of a record block.
const zstdMaxDecoded = 1 << 30

// zstdMaxRatio is the largest possible ratio of content to frame size:
// a 4-byte RLE block yields at most 128 KiB.
const zstdMaxRatio = 128 << 10 / 4

// zstd encoders and decoders are expensive to build and safe for concurrent
// EncodeAll/DecodeAll, so one of each serves the process.
var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
	zstdErr  error
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder, error) {
	zstdOnce.Do(func() {
		zstdEnc, zstdErr = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderCRC(true),
			zstd.WithEncoderConcurrency(1),
			zstd.WithZeroFrames(true))
		if zstdErr != nil {
			return
		}
		zstdDec, zstdErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.IgnoreChecksum(false),
			zstd.WithDecoderMaxMemory(zstdMaxDecoded))
	})
	return zstdEnc, zstdDec, zstdErr
}

// PrepareCodecs makes the zstd encoder and decoder that every batch of the
// process shares, which are otherwise made when the first zstd batch is
// encoded or decoded, and returns the error that would then be returned.
//
// A test that uses testing/synctest calls it before its first bubble (in
// TestMain): the channels inside the codecs belong to the bubble they are
// made in, and codecs made in one bubble fail every other bubble with
// "receive on synctest channel from outside bubble".
func PrepareCodecs() error {
	enc, dec, err := zstdCodecs()
	if err != nil {
		return err
	}
	// The encoder sets itself up on its first use, not when it is made.
	_, err = dec.DecodeAll(enc.EncodeAll([]byte("bucketq"), nil), nil)
	return err
}

// Encoder builds one batch file. Append records one at a time, watch Size for
// the flush threshold, then Finish. An Encoder may be Reset and reused.
type Encoder struct {
	compression Compression
	version     uint16
	block       []byte // uncompressed record block
	count       uint32
	err         error // a record or count the format cannot hold; Finish returns it
}

// NewEncoder returns an encoder for the given compression that writes
// BatchVersion (2, checksummed).
func NewEncoder(c Compression) *Encoder {
	return &Encoder{compression: c, version: BatchVersion}
}

// NewEncoderVersion returns an encoder that writes the given batch version:
// BatchVersion1 for readers of the opendata Buffer layout, which refuse
// version 2. It panics on an unknown version (a programming error).
func NewEncoderVersion(c Compression, version uint16) *Encoder {
	if FooterLen(version) == 0 {
		panic(fmt.Sprintf("format: unknown batch version %d", version))
	}
	return &Encoder{compression: c, version: version}
}

// Append adds one record. The bytes are copied.
//
// A record of 4 GiB or more, or a 2^32th record, cannot be represented in
// the format: it is not added, and Finish reports it.
func (e *Encoder) Append(rec []byte) {
	if uint64(len(rec)) > math.MaxUint32 || e.count == math.MaxUint32 {
		if e.err == nil {
			e.err = fmt.Errorf("batch: record %d of %d bytes does not fit the format (at most %d bytes, %d records)", e.count, len(rec), uint32(math.MaxUint32), uint32(math.MaxUint32))
		}
		return
	}
	e.block = binary.LittleEndian.AppendUint32(e.block, uint32(len(rec)))
	e.block = append(e.block, rec...)
	e.count++
}

// Count is the number of records appended so far.
func (e *Encoder) Count() int { return int(e.count) }

// Size is the uncompressed size of the batch so far, footer included: an
// upper bound for the compressed file, cheap enough to check on every append.
func (e *Encoder) Size() int { return len(e.block) + FooterLen(e.version) }

// Reset empties the encoder, keeping its buffer.
func (e *Encoder) Reset() {
	e.err = nil
	e.block = e.block[:0]
	e.count = 0
}

// Finish returns the encoded batch file. The result does not alias the
// encoder's buffer, so the encoder may be reset and reused at once.
func (e *Encoder) Finish() ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	f := Footer{Compression: e.compression, RecordCount: e.count, Version: e.version}
	fl := f.Len()
	switch e.compression {
	case CompressionNone:
		out := make([]byte, 0, len(e.block)+fl)
		out = append(out, e.block...)
		return AppendFooter(out, f), nil
	case CompressionZstd:
		if e.count == 0 {
			// An empty batch is just the footer, whatever its compression.
			return AppendFooter(make([]byte, 0, fl), f), nil
		}
		enc, _, err := zstdCodecs()
		if err != nil {
			return nil, err
		}
		out := enc.EncodeAll(e.block, make([]byte, 0, len(e.block)/2+fl))
		return AppendFooter(out, f), nil
	}
	return nil, fmt.Errorf("batch: cannot encode with %s", e.compression)
}

// EncodeBatch is a convenience wrapper: encode records in one call.
func EncodeBatch(c Compression, records [][]byte) ([]byte, error) {
	e := NewEncoder(c)
	for _, r := range records {
		e.Append(r)
	}
	return e.Finish()
}

// Batch is a decoded batch file. Records alias one decoded block: either the
// input slice (no compression) or one freshly decompressed buffer.
type Batch struct {
	Footer  Footer
	Records [][]byte
}

// DecodeBatch decodes a whole batch file of either version, checking a
// version 2 file's checksum before anything else. It never panics on bad
// input; every failure is a *DecodeError wrapping one of the sentinel errors.
func DecodeBatch(b []byte) (*Batch, error) {
	f, err := VerifyChecksum(b)
	if err != nil {
		return nil, err
	}
	block := b[:len(b)-f.Len()]
	if f.Compression == CompressionZstd {
		_, dec, err := zstdCodecs()
		if err != nil {
			return nil, err
		}
		// A zero-length block is a valid empty batch even for zstd: the
		// encoder writes an empty frame, but tolerate a bare footer too.
		if len(block) > 0 {
			// A zstd block (at most 128 KiB of content) takes at least 4
			// bytes (an RLE block), so no frame expands more than 32768
			// times. Refuse larger declared sizes before allocating them.
			var h zstd.Header
			if h.Decode(block) == nil && h.HasFCS && h.FrameContentSize > uint64(len(block))*zstdMaxRatio {
				return nil, decodeErr(ErrCorruptZstd, "frame declares %d bytes of content, impossible in %d compressed bytes", h.FrameContentSize, len(block))
			}
			block, err = dec.DecodeAll(block, nil)
			if err != nil {
				return nil, decodeErr(ErrCorruptZstd, "%v", err)
			}
		}
	}
	// Each record needs at least its 4-byte prefix: reject absurd counts
	// before allocating for them.
	if uint64(f.RecordCount)*recordHeaderSize > uint64(len(block)) {
		return nil, decodeErr(ErrRecordCount, "footer says %d records, block has %d bytes", f.RecordCount, len(block))
	}
	recs := make([][]byte, 0, f.RecordCount)
	off := 0
	var ahead byte
	for off < len(block) {
		// Read one byte a few KiB ahead. The load does not depend on the
		// chain of length prefixes, so the CPU issues it early and the
		// memory ahead is in cache when the walk gets there; without it a
		// block larger than the cache costs a full memory latency per
		// record (3x slower on 25 MB of 250-byte records).
		if a := off + walkAhead; a < len(block) {
			ahead += block[a]
		}
		if len(block)-off < recordHeaderSize {
			return nil, decodeErr(ErrTrailingBytes, "%d bytes at offset %d after record %d", len(block)-off, off, len(recs))
		}
		if uint32(len(recs)) == f.RecordCount {
			return nil, decodeErr(ErrRecordCount, "more records than the footer's %d (offset %d)", f.RecordCount, off)
		}
		n := binary.LittleEndian.Uint32(block[off:])
		off += recordHeaderSize
		if uint64(n) > uint64(len(block)-off) {
			return nil, decodeErr(ErrRecordOverrun, "record %d at offset %d has length %d, %d bytes left", len(recs), off-recordHeaderSize, n, len(block)-off)
		}
		recs = append(recs, block[off:off+int(n):off+int(n)])
		off += int(n)
	}
	walkSink.Store(uint32(ahead)) // keeps the loads above from being optimised away
	if uint32(len(recs)) != f.RecordCount {
		return nil, decodeErr(ErrRecordCount, "found %d records, footer says %d", len(recs), f.RecordCount)
	}
	return &Batch{Footer: f, Records: recs}, nil
}

// walkAhead is how far ahead of the record walk DecodeBatch touches the block.
const walkAhead = 4 << 10

var walkSink atomic.Uint32
