// Package journal is the record of dequeued manifest entries (RFC 0004):
// before the consumer removes delivered entries from the manifest it writes
// them, unchanged, to an immutable segment object named by the first and
// last sequence it holds. Segments are kept for a retention period, during
// which garbage collection keeps the batch files they reference, so that
// `bucketq replay` can re-send a sequence or ingestion-time range.
//
// This file is the segment codec; journal.go reads and writes segments in a
// bucket.
package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/bucketq/bucketq/manifest"
)

const (
	// Version is the only segment version.
	Version uint16 = 1
	// FooterSize is the size of the footer, the last bytes of a segment.
	FooterSize = 4 + 8 + 8 + 8 + 8 + 8 + 8 + 4 + 2
	// minEntrySize is the smallest version 2 manifest entry: entry_len,
	// sequence, location length, metadata count and entry_crc32c.
	minEntrySize = 4 + 8 + 2 + 4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Decode errors, matched with errors.Is. Every one means the segment is
// damaged: bucketq never writes a segment that fails to decode.
var (
	ErrTooShort    = errors.New("journal segment shorter than its footer")
	ErrVersion     = errors.New("unsupported journal segment version")
	ErrChecksum    = errors.New("journal segment checksum mismatch")
	ErrEntry       = errors.New("malformed journal entry")
	ErrEntryCount  = errors.New("journal entry count does not match footer")
	ErrSequence    = errors.New("journal sequences out of order or not matching the footer")
	ErrFooterTimes = errors.New("journal footer ingestion times do not match the entries")
	ErrName        = errors.New("journal segment name does not match its footer")
)

// CorruptError says why and where a segment could not be decoded. Offset
// is the byte offset of the damaged entry, or of the footer; -1 when the
// whole object is at fault (too short).
type CorruptError struct {
	Segment string // object name, when known
	Offset  int
	Err     error
	Detail  string
}

func (e *CorruptError) Error() string {
	where := "journal segment"
	if e.Segment != "" {
		where += " " + e.Segment
	}
	if e.Offset >= 0 {
		where += fmt.Sprintf(" at offset %d", e.Offset)
	}
	return where + ": " + e.Err.Error() + ": " + e.Detail
}

func (e *CorruptError) Unwrap() error { return e.Err }

func corrupt(off int, err error, format string, args ...any) error {
	return &CorruptError{Offset: off, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// Footer is the last FooterSize bytes of a segment.
type Footer struct {
	EntryCount                             uint32
	FirstSequence, LastSequence            uint64
	MinIngestionTimeMs, MaxIngestionTimeMs int64
	// JournaledAtMs is the writer's clock (Unix ms) when the segment was
	// written; retention counts from it.
	JournaledAtMs int64
	Epoch         uint64 // the consumer lease that wrote it
	Checksum      uint32 // CRC-32C of every byte before it
	Version       uint16
}

// Segment is a decoded segment.
type Segment struct {
	Footer
	Entries []manifest.Entry
}

// timeBounds returns the smallest and largest ingestion time over every
// metadata item of entries, 0 and 0 when there is none.
func timeBounds(entries []manifest.Entry) (lo, hi int64) {
	have := false
	for i := range entries {
		for _, md := range entries[i].Metadata {
			if !have || md.IngestionTimeMs < lo {
				lo = md.IngestionTimeMs
			}
			if !have || md.IngestionTimeMs > hi {
				hi = md.IngestionTimeMs
			}
			have = true
		}
	}
	return lo, hi
}

// Encode returns the segment holding entries, which must be non-empty and
// strictly increasing by sequence.
func Encode(entries []manifest.Entry, journaledAtMs int64, epoch uint64) ([]byte, error) {
	if len(entries) == 0 {
		return nil, errors.New("journal: a segment needs at least one entry")
	}
	if uint64(len(entries)) > uint64(^uint32(0)) {
		return nil, fmt.Errorf("journal: %d entries exceed a segment's entry_count", len(entries))
	}
	size := FooterSize
	for i := range entries {
		if i > 0 && entries[i].Sequence <= entries[i-1].Sequence {
			return nil, fmt.Errorf("journal: entry %d has sequence %d after %d", i, entries[i].Sequence, entries[i-1].Sequence)
		}
		if len(entries[i].Location) > 0xffff {
			return nil, fmt.Errorf("journal: entry %d: location of %d bytes", i, len(entries[i].Location))
		}
		size += entries[i].EncodedLen() + 4
	}
	out := make([]byte, 0, size)
	for i := range entries {
		out = manifest.AppendEntry(out, &entries[i], manifest.Version2)
	}
	lo, hi := timeBounds(entries)
	f := Footer{
		EntryCount:    uint32(len(entries)),
		FirstSequence: entries[0].Sequence, LastSequence: entries[len(entries)-1].Sequence,
		MinIngestionTimeMs: lo, MaxIngestionTimeMs: hi,
		JournaledAtMs: journaledAtMs, Epoch: epoch, Version: Version,
	}
	return appendFooter(out, f), nil
}

func appendFooter(dst []byte, f Footer) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, f.EntryCount)
	dst = binary.LittleEndian.AppendUint64(dst, f.FirstSequence)
	dst = binary.LittleEndian.AppendUint64(dst, f.LastSequence)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(f.MinIngestionTimeMs))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(f.MaxIngestionTimeMs))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(f.JournaledAtMs))
	dst = binary.LittleEndian.AppendUint64(dst, f.Epoch)
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst, castagnoli))
	return binary.LittleEndian.AppendUint16(dst, f.Version)
}

// ReadFooter decodes the footer from the end of b (a whole segment or
// only its last FooterSize bytes) without checking the checksum: its
// bounds choose segments, Decode verifies them.
func ReadFooter(b []byte) (Footer, error) {
	if len(b) < FooterSize {
		return Footer{}, corrupt(-1, ErrTooShort, "%d bytes, the footer alone is %d", len(b), FooterSize)
	}
	off := len(b) - FooterSize
	t := b[off:]
	f := Footer{
		EntryCount:         binary.LittleEndian.Uint32(t[0:]),
		FirstSequence:      binary.LittleEndian.Uint64(t[4:]),
		LastSequence:       binary.LittleEndian.Uint64(t[12:]),
		MinIngestionTimeMs: int64(binary.LittleEndian.Uint64(t[20:])),
		MaxIngestionTimeMs: int64(binary.LittleEndian.Uint64(t[28:])),
		JournaledAtMs:      int64(binary.LittleEndian.Uint64(t[36:])),
		Epoch:              binary.LittleEndian.Uint64(t[44:]),
		Checksum:           binary.LittleEndian.Uint32(t[52:]),
		Version:            binary.LittleEndian.Uint16(t[56:]),
	}
	if f.Version != Version {
		return f, corrupt(off, ErrVersion, "footer says version %d, this reader knows %d: truncated, zeroed or not a journal segment", f.Version, Version)
	}
	if f.EntryCount == 0 {
		return f, corrupt(off, ErrEntryCount, "footer says 0 entries; bucketq never writes an empty segment")
	}
	if f.FirstSequence > f.LastSequence {
		return f, corrupt(off, ErrSequence, "footer's first_sequence %d is above last_sequence %d", f.FirstSequence, f.LastSequence)
	}
	return f, nil
}

// Decode verifies and decodes a whole segment: the footer checksum first,
// then every entry with its entry_crc32c, then that the entries agree with
// the footer (count, first and last sequence, ingestion-time bounds) and
// strictly increase. The encoding is canonical: Encode of the result gives
// b back. Every error is a *CorruptError.
func Decode(b []byte) (*Segment, error) {
	f, err := ReadFooter(b)
	if err != nil {
		return nil, err
	}
	foff := len(b) - FooterSize
	if got := crc32.Checksum(b[:len(b)-6], castagnoli); got != f.Checksum {
		return nil, corrupt(foff, ErrChecksum, "footer says crc32c %08x, the %d bytes before it hash to %08x", f.Checksum, len(b)-6, got)
	}
	block := b[:foff]
	if uint64(f.EntryCount)*minEntrySize > uint64(len(block)) {
		return nil, corrupt(foff, ErrEntryCount, "footer says %d entries, the entry block has %d bytes", f.EntryCount, len(block))
	}
	s := &Segment{Footer: f, Entries: make([]manifest.Entry, 0, f.EntryCount)}
	err = manifest.WalkEntries(block, func(off int, e manifest.Entry) error {
		if n := len(s.Entries); n > 0 && e.Sequence <= s.Entries[n-1].Sequence {
			return corrupt(off, ErrSequence, "entry %d has sequence %d after %d", n, e.Sequence, s.Entries[n-1].Sequence)
		}
		s.Entries = append(s.Entries, e)
		return nil
	})
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			return nil, err
		}
		var me *manifest.CorruptError
		if errors.As(err, &me) {
			return nil, &CorruptError{Offset: entryOffset(block, len(s.Entries)), Err: ErrEntry, Detail: fmt.Sprintf("entry %d: %v", len(s.Entries), me)}
		}
		return nil, err
	}
	if uint32(len(s.Entries)) != f.EntryCount {
		return nil, corrupt(foff, ErrEntryCount, "found %d entries, footer says %d", len(s.Entries), f.EntryCount)
	}
	if first, last := s.Entries[0].Sequence, s.Entries[len(s.Entries)-1].Sequence; first != f.FirstSequence || last != f.LastSequence {
		return nil, corrupt(foff, ErrSequence, "entries hold sequences %d..%d, footer says %d..%d", first, last, f.FirstSequence, f.LastSequence)
	}
	if lo, hi := timeBounds(s.Entries); lo != f.MinIngestionTimeMs || hi != f.MaxIngestionTimeMs {
		return nil, corrupt(foff, ErrFooterTimes, "entries' ingestion times span %d..%d ms, footer says %d..%d", lo, hi, f.MinIngestionTimeMs, f.MaxIngestionTimeMs)
	}
	return s, nil
}

// entryOffset is the offset of entry n in a block whose first n entries
// are well framed (the walk got past them).
func entryOffset(block []byte, n int) int {
	off := 0
	for i := 0; i < n && len(block)-off >= 4; i++ {
		off += 4 + int(binary.LittleEndian.Uint32(block[off:]))
	}
	return off
}
