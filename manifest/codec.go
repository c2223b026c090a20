// Package manifest is the bucketq queue: the manifest codec (RFC 0002) and the
// queue protocol over conditional writes — producers append batch locations,
// a consumer fences older consumers by bumping the epoch, reads entries in
// sequence order and dequeues them once delivered.
package manifest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

const (
	// Version is the only manifest format version.
	Version uint16 = 1
	// FooterSize is the size of the manifest footer.
	FooterSize = 22
	// entryFixed is the size of an entry without location and metadata,
	// entry_len included.
	entryFixed = 4 + 8 + 2 + 4
	// metadataFixed is the size of a metadata item without its payload.
	metadataFixed = 4 + 8 + 4
)

// Decode errors, matched with errors.Is.
var (
	ErrTooShort       = errors.New("manifest shorter than its footer")
	ErrVersion        = errors.New("unsupported manifest version")
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

// Footer is the last 22 bytes of a manifest.
type Footer struct {
	EntryCount   uint32
	NextSequence uint64
	Epoch        uint64
	Version      uint16
}

// Manifest is a decoded manifest. The zero value is the empty manifest that a
// missing object stands for (epoch 0, next sequence 0).
type Manifest struct {
	Entries      []Entry
	NextSequence uint64
	Epoch        uint64
}

// EncodedLen is the encoded size of the entry.
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
	if e.EncodedLen()-4 > math.MaxUint32 {
		return fmt.Errorf("manifest: entry for %s too large", e.Location)
	}
	return nil
}

// AppendEntry appends the encoded entry to dst.
func AppendEntry(dst []byte, e *Entry) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(e.EncodedLen()-4))
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
	return dst
}

// AppendFooter appends the encoded footer to dst.
func AppendFooter(dst []byte, f Footer) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, f.EntryCount)
	dst = binary.LittleEndian.AppendUint64(dst, f.NextSequence)
	dst = binary.LittleEndian.AppendUint64(dst, f.Epoch)
	return binary.LittleEndian.AppendUint16(dst, f.Version)
}

// ReadFooter decodes the footer of an encoded manifest without reading any
// entry. An empty input is the empty manifest.
func ReadFooter(b []byte) (Footer, error) {
	if len(b) == 0 {
		return Footer{Version: Version}, nil
	}
	if len(b) < FooterSize {
		return Footer{}, corrupt(ErrTooShort, "%d bytes, footer needs %d", len(b), FooterSize)
	}
	t := b[len(b)-FooterSize:]
	f := Footer{
		EntryCount:   binary.LittleEndian.Uint32(t[0:4]),
		NextSequence: binary.LittleEndian.Uint64(t[4:12]),
		Epoch:        binary.LittleEndian.Uint64(t[12:20]),
		Version:      binary.LittleEndian.Uint16(t[20:22]),
	}
	if f.Version != Version {
		return f, corrupt(ErrVersion, "version %d, want %d", f.Version, Version)
	}
	return f, nil
}

// Encode returns the manifest's bytes.
func (m *Manifest) Encode() []byte {
	n := FooterSize
	for i := range m.Entries {
		n += m.Entries[i].EncodedLen()
	}
	out := make([]byte, 0, n)
	for i := range m.Entries {
		out = AppendEntry(out, &m.Entries[i])
	}
	return AppendFooter(out, Footer{EntryCount: uint32(len(m.Entries)), NextSequence: m.NextSequence, Epoch: m.Epoch, Version: Version})
}

// Decode decodes a whole manifest. An empty input is the empty manifest.
// Payloads and locations are copied, so the result does not alias b.
// It checks that sequences strictly increase and stay below next_sequence.
func Decode(b []byte) (*Manifest, error) {
	f, err := ReadFooter(b)
	if err != nil {
		return nil, err
	}
	m := &Manifest{NextSequence: f.NextSequence, Epoch: f.Epoch}
	if len(b) == 0 {
		return m, nil
	}
	block := b[:len(b)-FooterSize]
	if uint64(f.EntryCount)*entryFixed > uint64(len(block)) {
		return nil, corrupt(ErrEntryCount, "footer says %d entries, entry block has %d bytes", f.EntryCount, len(block))
	}
	m.Entries = make([]Entry, 0, f.EntryCount)
	off := 0
	for off < len(block) {
		if len(block)-off < 4 {
			return nil, corrupt(ErrEntryOverrun, "%d stray bytes at offset %d", len(block)-off, off)
		}
		n := binary.LittleEndian.Uint32(block[off:])
		if uint64(n) > uint64(len(block)-off-4) {
			return nil, corrupt(ErrEntryOverrun, "entry %d at offset %d has length %d, %d bytes left", len(m.Entries), off, n, len(block)-off-4)
		}
		e, err := decodeEntry(block[off+4 : off+4+int(n)])
		if err != nil {
			return nil, corrupt(ErrEntryMalformed, "entry %d at offset %d: %v", len(m.Entries), off, err)
		}
		if len(m.Entries) > 0 && e.Sequence <= m.Entries[len(m.Entries)-1].Sequence {
			return nil, corrupt(ErrSequence, "entry %d has sequence %d after %d", len(m.Entries), e.Sequence, m.Entries[len(m.Entries)-1].Sequence)
		}
		if e.Sequence >= f.NextSequence {
			return nil, corrupt(ErrSequence, "entry %d has sequence %d, next_sequence is %d", len(m.Entries), e.Sequence, f.NextSequence)
		}
		m.Entries = append(m.Entries, e)
		off += 4 + int(n)
	}
	if uint32(len(m.Entries)) != f.EntryCount {
		return nil, corrupt(ErrEntryCount, "found %d entries, footer says %d", len(m.Entries), f.EntryCount)
	}
	return m, nil
}

// scanLocations walks the entry block of b and calls fn with each entry's
// sequence and location, without decoding metadata or allocating: it is how
// a producer checks whether an append landed while appends stay free of
// decoding. The location aliases b. It checks only what the walk needs
// (entry lengths, location bounds, the entry count); Decode checks the rest.
func scanLocations(b []byte, fn func(seq uint64, loc []byte)) error {
	f, err := ReadFooter(b)
	if err != nil || len(b) == 0 {
		return err
	}
	block := b[:len(b)-FooterSize]
	off, n := 0, uint32(0)
	for off < len(block) {
		if len(block)-off < 4 {
			return corrupt(ErrEntryOverrun, "%d stray bytes at offset %d", len(block)-off, off)
		}
		l := binary.LittleEndian.Uint32(block[off:])
		if uint64(l) > uint64(len(block)-off-4) {
			return corrupt(ErrEntryOverrun, "entry %d at offset %d has length %d, %d bytes left", n, off, l, len(block)-off-4)
		}
		body := block[off+4 : off+4+int(l)]
		if len(body) < 8+2 {
			return corrupt(ErrEntryMalformed, "entry %d at offset %d: %d bytes, need at least 10 for sequence and location length", n, off, len(body))
		}
		ll := int(binary.LittleEndian.Uint16(body[8:]))
		if len(body)-10 < ll+4 {
			return corrupt(ErrEntryMalformed, "entry %d at offset %d: location of %d bytes and metadata count do not fit in %d bytes", n, off, ll, len(body)-10)
		}
		fn(binary.LittleEndian.Uint64(body), body[10:10+ll])
		off += 4 + int(l)
		n++
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

// AppendEntries appends entries to an encoded manifest without decoding the
// entries already there: it reads only the footer, assigns sequences from
// next_sequence on, and writes a new footer with the same epoch. It returns
// the new manifest bytes and the assigned sequences.
func AppendEntries(b []byte, entries []NewEntry) ([]byte, []uint64, error) {
	f, err := ReadFooter(b)
	if err != nil {
		return nil, nil, err
	}
	if uint64(f.EntryCount)+uint64(len(entries)) > math.MaxUint32 {
		return nil, nil, fmt.Errorf("manifest: %d entries already, cannot add %d", f.EntryCount, len(entries))
	}
	if f.NextSequence > math.MaxUint64-uint64(len(entries)) {
		return nil, nil, fmt.Errorf("manifest: next_sequence %d leaves no room for %d more sequences", f.NextSequence, len(entries))
	}
	prefix := 0
	if len(b) > 0 {
		prefix = len(b) - FooterSize
	}
	size := prefix + FooterSize
	for i := range entries {
		size += entryFixed + len(entries[i].Location)
		for _, m := range entries[i].Metadata {
			size += metadataFixed + len(m.Payload)
		}
	}
	out := make([]byte, 0, size)
	out = append(out, b[:prefix]...)
	seqs := make([]uint64, len(entries))
	for i := range entries {
		e := Entry{Sequence: f.NextSequence, Location: entries[i].Location, Metadata: entries[i].Metadata}
		if err := e.validate(); err != nil {
			return nil, nil, err
		}
		seqs[i] = f.NextSequence
		f.NextSequence++
		out = AppendEntry(out, &e)
	}
	f.EntryCount += uint32(len(entries))
	f.Version = Version
	return AppendFooter(out, f), seqs, nil
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
