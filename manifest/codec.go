// Package manifest is the bucketq queue: the manifest codec (RFC 0002) and the
// queue protocol over conditional writes — producers append batch locations,
// a consumer fences older consumers by bumping the epoch, reads entries in
// sequence order and dequeues them once delivered.
package manifest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

const (
	// Version1 is the opendata Buffer manifest: a 22-byte footer and no
	// checksums.
	Version1 uint16 = 1
	// Version2 ends every entry with a CRC-32C of the entry and adds a
	// CRC-32C of the whole manifest to a 26-byte footer (RFC 0002).
	Version2 uint16 = 2
	// Version is the version queues write unless told otherwise.
	Version = Version2
	// FooterSizeV1 and FooterSizeV2 are the footer sizes of each version.
	FooterSizeV1 = 22
	FooterSizeV2 = 26
	// entryFixed is the size of a version 1 entry without location and
	// metadata, entry_len included.
	entryFixed = 4 + 8 + 2 + 4
	// entryCRCSize is what version 2 adds to each entry.
	entryCRCSize = 4
	// metadataFixed is the size of a metadata item without its payload.
	metadataFixed = 4 + 8 + 4
)

// castagnoli is the CRC-32C table (hardware-accelerated on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FooterLen is the footer size of a manifest version, 0 for an unknown one.
func FooterLen(version uint16) int {
	switch version {
	case Version1:
		return FooterSizeV1
	case Version2:
		return FooterSizeV2
	}
	return 0
}

// entryExtra is the per-entry checksum size of a version.
func entryExtra(version uint16) int {
	if version == Version2 {
		return entryCRCSize
	}
	return 0
}

// Decode errors, matched with errors.Is. Every one of them means the object
// is damaged: bucketq never writes a manifest that fails to decode, so a
// reader stops (producers answer 503, the consumer exits) and nothing is
// rewritten until an operator repairs it (bucketq repair manifest).
var (
	ErrTooShort       = errors.New("manifest truncated: shorter than its footer")
	ErrVersion        = errors.New("unsupported manifest version")
	ErrChecksum       = errors.New("manifest checksum mismatch")
	ErrEntryOverrun   = errors.New("manifest entry runs past the entry block")
	ErrEntryMalformed = errors.New("malformed manifest entry")
	ErrEntryCount     = errors.New("manifest entry count does not match footer")
	ErrSequence       = errors.New("manifest sequences out of order")
)

// CorruptError says why and where a manifest could not be decoded.
type CorruptError struct {
	Err    error
	Detail string
}

func (e *CorruptError) Error() string { return "manifest: " + e.Err.Error() + ": " + e.Detail }
func (e *CorruptError) Unwrap() error { return e.Err }

func corrupt(err error, format string, args ...any) error {
	return &CorruptError{Err: err, Detail: fmt.Sprintf(format, args...)}
}

// Metadata describes the records of a batch from StartIndex up to the next
// item's StartIndex (or the end of the batch). Payload starts with the
// 4-byte header of format.ParseHeader.
type Metadata struct {
	StartIndex      uint32
	IngestionTimeMs int64
	Payload         []byte
}

// Entry is one batch in the queue.
type Entry struct {
	Sequence uint64
	Location string
	Metadata []Metadata
}

// NewEntry is a batch to append; the queue assigns its sequence.
type NewEntry struct {
	Location string
	Metadata []Metadata
}

// Footer is the end of a manifest: 22 bytes in version 1, 26 in version 2,
// which adds Checksum.
type Footer struct {
	EntryCount   uint32
	NextSequence uint64
	Epoch        uint64
	Version      uint16
	// Checksum is the CRC-32C (Castagnoli) of every byte of the manifest
	// before it. Version 2 only.
	Checksum uint32
}

// Len is the footer's encoded size.
func (f Footer) Len() int { return FooterLen(f.Version) }

// Manifest is a decoded manifest. The zero value is the empty manifest that a
// missing object stands for (epoch 0, next sequence 0).
type Manifest struct {
	Entries      []Entry
	NextSequence uint64
	Epoch        uint64
	// Version is the version it was decoded from, and the one Encode
	// writes; 0 means Version.
	Version uint16
}

// EncodedLen is the encoded size of the entry in version 1.
func (e *Entry) EncodedLen() int {
	n := entryFixed + len(e.Location)
	for _, m := range e.Metadata {
		n += metadataFixed + len(m.Payload)
	}
	return n
}

func (e *Entry) validate() error {
	if len(e.Location) > math.MaxUint16 {
		return fmt.Errorf("manifest: location of %d bytes exceeds %d", len(e.Location), math.MaxUint16)
	}
	if e.EncodedLen()+entryCRCSize-4 > math.MaxUint32 {
		return fmt.Errorf("manifest: entry for %s too large", e.Location)
	}
	return nil
}

// AppendEntry appends the entry encoded in the given version to dst. In
// version 2 the entry ends with the CRC-32C of its bytes before it.
func AppendEntry(dst []byte, e *Entry, version uint16) []byte {
	start := len(dst)
	extra := entryExtra(version)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(e.EncodedLen()+extra-4))
	dst = binary.LittleEndian.AppendUint64(dst, e.Sequence)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(e.Location)))
	dst = append(dst, e.Location...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(e.Metadata)))
	for _, m := range e.Metadata {
		dst = binary.LittleEndian.AppendUint32(dst, m.StartIndex)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(m.IngestionTimeMs))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.Payload)))
		dst = append(dst, m.Payload...)
	}
	if extra > 0 {
		dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
	}
	return dst
}

// AppendFooter appends the encoded footer to dst, which must hold exactly
// the manifest's entry block. For version 2 it computes the checksum over
// dst and the footer fields before it (f.Checksum is ignored).
func AppendFooter(dst []byte, f Footer) []byte { return appendFooterFrom(dst, f, 0, 0) }

// appendFooterFrom is AppendFooter for a caller that already has crc, the
// CRC-32C of dst[:from]: only the bytes after it are hashed.
func appendFooterFrom(dst []byte, f Footer, crc uint32, from int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, f.EntryCount)
	dst = binary.LittleEndian.AppendUint64(dst, f.NextSequence)
	dst = binary.LittleEndian.AppendUint64(dst, f.Epoch)
	if f.Version == Version2 {
		dst = binary.LittleEndian.AppendUint32(dst, crc32.Update(crc, castagnoli, dst[from:]))
	}
	return binary.LittleEndian.AppendUint16(dst, f.Version)
}

// Empty returns the encoded empty manifest of a version (0 means Version):
// the footer alone. It is what a missing manifest object stands for.
func Empty(version uint16) []byte {
	if version == 0 {
		version = Version
	}
	return AppendFooter(nil, Footer{Version: version})
}

// ReadFooter decodes the footer of an encoded manifest without reading any
// entry or checking the checksum (Verify does). An empty object is not a
// manifest: bucketq never writes one shorter than its footer, and a missing
// object, not an empty one, is the empty queue.
func ReadFooter(b []byte) (Footer, error) {
	if len(b) == 0 {
		return Footer{}, corrupt(ErrTooShort, "the object is empty (0 bytes); bucketq never writes a manifest shorter than its %d-byte footer, so it was truncated or overwritten", FooterSizeV1)
	}
	if len(b) < 2 {
		return Footer{}, corrupt(ErrTooShort, "%d bytes, a footer needs at least %d", len(b), FooterSizeV1)
	}
	v := binary.LittleEndian.Uint16(b[len(b)-2:])
	n := FooterLen(v)
	if n == 0 {
		return Footer{Version: v}, corrupt(ErrVersion, "the last two bytes read as version %d, this reader knows 1 and 2: the object is truncated, zeroed or not a bucketq manifest", v)
	}
	if len(b) < n {
		return Footer{Version: v}, corrupt(ErrTooShort, "%d bytes, a version %d footer needs %d", len(b), v, n)
	}
	t := b[len(b)-n:]
	f := Footer{
		EntryCount:   binary.LittleEndian.Uint32(t[0:4]),
		NextSequence: binary.LittleEndian.Uint64(t[4:12]),
		Epoch:        binary.LittleEndian.Uint64(t[12:20]),
		Version:      v,
	}
	if v == Version2 {
		f.Checksum = binary.LittleEndian.Uint32(t[20:24])
	}
	return f, nil
}

func checksumError(want uint32, n int, got uint32) error {
	return corrupt(ErrChecksum, "footer says crc32c %08x, the %d bytes before it hash to %08x: the object was changed or damaged after bucketq wrote it", want, n, got)
}

// Verify reads the footer and, in version 2, checks the manifest's CRC-32C:
// one pass over the bytes, without decoding any entry. Version 1 has no
// checksum and passes.
func Verify(b []byte) (Footer, error) {
	f, err := ReadFooter(b)
	if err != nil {
		return f, err
	}
	if f.Version == Version2 {
		if got := crc32.Checksum(b[:len(b)-6], castagnoli); got != f.Checksum {
			return f, checksumError(f.Checksum, len(b)-6, got)
		}
	}
	return f, nil
}

// Encode returns the manifest's bytes in m.Version (0 means Version).
func (m *Manifest) Encode() []byte {
	v := m.Version
	if v == 0 {
		v = Version
	}
	n := FooterLen(v)
	for i := range m.Entries {
		n += m.Entries[i].EncodedLen() + entryExtra(v)
	}
	out := make([]byte, 0, n)
	for i := range m.Entries {
		out = AppendEntry(out, &m.Entries[i], v)
	}
	return AppendFooter(out, Footer{EntryCount: uint32(len(m.Entries)), NextSequence: m.NextSequence, Epoch: m.Epoch, Version: v})
}

// Decode decodes a whole manifest of either version, checking the checksums
// of version 2 first. Payloads and locations are copied, so the result does
// not alias b. It checks that sequences strictly increase and stay below
// next_sequence. An empty input is an error (ErrTooShort), not the empty
// manifest: see ReadFooter.
func Decode(b []byte) (*Manifest, error) {
	f, err := Verify(b)
	if err != nil {
		return nil, err
	}
	m := &Manifest{NextSequence: f.NextSequence, Epoch: f.Epoch, Version: f.Version}
	block := b[:len(b)-f.Len()]
	minEntry := uint64(entryFixed + entryExtra(f.Version))
	if uint64(f.EntryCount)*minEntry > uint64(len(block)) {
		return nil, corrupt(ErrEntryCount, "footer says %d entries, entry block has %d bytes", f.EntryCount, len(block))
	}
	m.Entries = make([]Entry, 0, f.EntryCount)
	err = walkEntries(block, f.Version, true, func(off int, body []byte) error {
		e, err := decodeEntry(body)
		if err != nil {
			return corrupt(ErrEntryMalformed, "entry %d at offset %d: %v", len(m.Entries), off, err)
		}
		if len(m.Entries) > 0 && e.Sequence <= m.Entries[len(m.Entries)-1].Sequence {
			return corrupt(ErrSequence, "entry %d has sequence %d after %d", len(m.Entries), e.Sequence, m.Entries[len(m.Entries)-1].Sequence)
		}
		if e.Sequence >= f.NextSequence {
			return corrupt(ErrSequence, "entry %d has sequence %d, next_sequence is %d", len(m.Entries), e.Sequence, f.NextSequence)
		}
		m.Entries = append(m.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if uint32(len(m.Entries)) != f.EntryCount {
		return nil, corrupt(ErrEntryCount, "found %d entries, footer says %d", len(m.Entries), f.EntryCount)
	}
	return m, nil
}

// walkEntries calls fn with the offset and body (after entry_len, without
// the version 2 checksum) of each entry of an entry block, checking entry
// framing and, if checkCRC, each version 2 entry's checksum. It stops at
// the first error, fn's included.
func walkEntries(block []byte, version uint16, checkCRC bool, fn func(off int, body []byte) error) error {
	extra := entryExtra(version)
	off, n := 0, 0
	for off < len(block) {
		if len(block)-off < 4 {
			return corrupt(ErrEntryOverrun, "%d stray bytes at offset %d", len(block)-off, off)
		}
		l := binary.LittleEndian.Uint32(block[off:])
		if uint64(l) > uint64(len(block)-off-4) {
			return corrupt(ErrEntryOverrun, "entry %d at offset %d has length %d, %d bytes left", n, off, l, len(block)-off-4)
		}
		if int(l) < extra {
			return corrupt(ErrEntryMalformed, "entry %d at offset %d: length %d cannot hold its checksum", n, off, l)
		}
		end := off + 4 + int(l)
		if extra > 0 && checkCRC {
			want := binary.LittleEndian.Uint32(block[end-extra:])
			if got := crc32.Checksum(block[off:end-extra], castagnoli); got != want {
				return corrupt(ErrChecksum, "entry %d at offset %d: entry crc32c %08x, its bytes hash to %08x", n, off, want, got)
			}
		}
		if err := fn(off, block[off+4:end-extra]); err != nil {
			return err
		}
		off = end
		n++
	}
	return nil
}

// scanLocations walks the entry block of b and calls fn with each entry's
// sequence and location, without decoding metadata or allocating: it is how
// a producer checks whether an append landed while appends stay free of
// decoding. The location aliases b. It verifies the version 2 checksum and
// checks what the walk needs (entry lengths, location bounds, the entry
// count); Decode checks the rest.
func scanLocations(b []byte, fn func(seq uint64, loc []byte)) error {
	f, err := Verify(b)
	if err != nil {
		return err
	}
	n := uint32(0)
	err = walkEntries(b[:len(b)-f.Len()], f.Version, false, func(off int, body []byte) error {
		if len(body) < 8+2 {
			return corrupt(ErrEntryMalformed, "entry %d at offset %d: %d bytes, need at least 10 for sequence and location length", n, off, len(body))
		}
		ll := int(binary.LittleEndian.Uint16(body[8:]))
		if len(body)-10 < ll+4 {
			return corrupt(ErrEntryMalformed, "entry %d at offset %d: location of %d bytes and metadata count do not fit in %d bytes", n, off, ll, len(body)-10)
		}
		fn(binary.LittleEndian.Uint64(body), body[10:10+ll])
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n != f.EntryCount {
		return corrupt(ErrEntryCount, "found %d entries, footer says %d", n, f.EntryCount)
	}
	return nil
}

// decodeEntry decodes the body of one entry (after entry_len).
func decodeEntry(b []byte) (Entry, error) {
	var e Entry
	if len(b) < 8+2 {
		return e, fmt.Errorf("%d bytes, need at least 10 for sequence and location length", len(b))
	}
	e.Sequence = binary.LittleEndian.Uint64(b)
	ll := int(binary.LittleEndian.Uint16(b[8:]))
	off := 10
	if len(b)-off < ll+4 {
		return e, fmt.Errorf("location of %d bytes and metadata count do not fit in %d bytes", ll, len(b)-off)
	}
	e.Location = string(b[off : off+ll])
	off += ll
	mc := binary.LittleEndian.Uint32(b[off:])
	off += 4
	if uint64(mc)*metadataFixed > uint64(len(b)-off) {
		return e, fmt.Errorf("metadata count %d does not fit in %d bytes", mc, len(b)-off)
	}
	e.Metadata = make([]Metadata, 0, mc)
	for i := uint32(0); i < mc; i++ {
		if len(b)-off < metadataFixed {
			return e, fmt.Errorf("metadata item %d truncated", i)
		}
		m := Metadata{
			StartIndex:      binary.LittleEndian.Uint32(b[off:]),
			IngestionTimeMs: int64(binary.LittleEndian.Uint64(b[off+4:])),
		}
		pl := binary.LittleEndian.Uint32(b[off+12:])
		off += metadataFixed
		if uint64(pl) > uint64(len(b)-off) {
			return e, fmt.Errorf("metadata item %d payload of %d bytes, %d left", i, pl, len(b)-off)
		}
		m.Payload = append([]byte(nil), b[off:off+int(pl)]...)
		off += int(pl)
		e.Metadata = append(e.Metadata, m)
	}
	if off != len(b) {
		return e, fmt.Errorf("%d bytes after the last metadata item", len(b)-off)
	}
	return e, nil
}

// AppendEntries appends entries to an encoded manifest and writes it in
// the given version (0 means Version). When b is already in that version it
// does not decode the entries there: it verifies b's checksum (one pass, so
// a damaged manifest is refused, never re-signed), copies the entry block,
// encodes the new entries with sequences from next_sequence on, and writes a
// new footer with the same epoch. A manifest in the other version is decoded
// and re-encoded whole, once. It returns the new manifest bytes and the
// assigned sequences.
func AppendEntries(b []byte, entries []NewEntry, version uint16) ([]byte, []uint64, error) {
	if version == 0 {
		version = Version
	}
	// The checksum of the kept entry block is computed once: it verifies
	// the manifest read and starts the checksum of the one written.
	f, err := ReadFooter(b)
	if err != nil {
		return nil, nil, err
	}
	var prefixCRC uint32
	if f.Version == Version2 {
		prefixCRC = crc32.Checksum(b[:len(b)-f.Len()], castagnoli)
		if got := crc32.Update(prefixCRC, castagnoli, b[len(b)-f.Len():len(b)-6]); got != f.Checksum {
			return nil, nil, checksumError(f.Checksum, len(b)-6, got)
		}
	}
	if uint64(f.EntryCount)+uint64(len(entries)) > math.MaxUint32 {
		return nil, nil, fmt.Errorf("manifest: %d entries already, cannot add %d", f.EntryCount, len(entries))
	}
	if f.NextSequence > math.MaxUint64-uint64(len(entries)) {
		return nil, nil, fmt.Errorf("manifest: next_sequence %d leaves no room for %d more sequences", f.NextSequence, len(entries))
	}
	var prefix []byte
	if f.Version == version {
		prefix = b[:len(b)-f.Len()]
	} else {
		m, err := Decode(b)
		if err != nil {
			return nil, nil, err
		}
		m.Version = version
		enc := m.Encode()
		prefix = enc[:len(enc)-FooterLen(version)]
		prefixCRC = crc32.Checksum(prefix, castagnoli)
	}
	size := len(prefix) + FooterLen(version)
	for i := range entries {
		size += entryFixed + entryExtra(version) + len(entries[i].Location)
		for _, m := range entries[i].Metadata {
			size += metadataFixed + len(m.Payload)
		}
	}
	out := make([]byte, 0, size)
	out = append(out, prefix...)
	seqs := make([]uint64, len(entries))
	for i := range entries {
		e := Entry{Sequence: f.NextSequence, Location: entries[i].Location, Metadata: entries[i].Metadata}
		if err := e.validate(); err != nil {
			return nil, nil, err
		}
		seqs[i] = f.NextSequence
		f.NextSequence++
		out = AppendEntry(out, &e, version)
	}
	f.EntryCount += uint32(len(entries))
	f.Version = version
	return appendFooterFrom(out, f, prefixCRC, len(prefix)), seqs, nil
}

// From returns the entries whose sequence is seq or greater. Sequences start
// at 0, so From(0) is every entry.
func (m *Manifest) From(seq uint64) []Entry {
	for i := range m.Entries {
		if m.Entries[i].Sequence >= seq {
			return m.Entries[i:]
		}
	}
	return nil
}

// WalkEntries decodes a block of version 2 entries (RFC 0002 encoding, each
// ending with its entry_crc32c) that is not a manifest: a journal segment's
// entry block (RFC 0004). It checks each entry's framing and checksum, then
// calls fn with the entry's offset in block and the decoded entry (copied,
// not aliasing block). Errors are *CorruptError naming the entry and its
// offset; fn's errors are returned as they are.
func WalkEntries(block []byte, fn func(off int, e Entry) error) error {
	n := 0
	return walkEntries(block, Version2, true, func(off int, body []byte) error {
		e, err := decodeEntry(body)
		if err != nil {
			return corrupt(ErrEntryMalformed, "entry %d at offset %d: %v", n, off, err)
		}
		n++
		return fn(off, e)
	})
}
