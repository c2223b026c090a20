package manifest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Salvage is what a repair can keep of a damaged manifest: never a guess.
// Only version 2 entries prove themselves (each carries a CRC-32C of its
// bytes), so only they are kept; see SalvageManifest.
type Salvage struct {
	// Manifest is the repaired manifest: every entry whose own checksum
	// verifies, in order, up to the first entry whose framing is broken;
	// next_sequence above every sequence the damaged object names; and an
	// epoch above the old one, so a consumer still holding the old lease
	// is fenced. It is written in version 2.
	Manifest *Manifest
	// Footer is the damaged object's footer as read, FooterOK whether its
	// fields could be read at all (its checksum may still have failed).
	Footer   Footer
	FooterOK bool
	// Dropped lists the entries whose checksum failed: their location as
	// far as it can be read (unverified), offset and sequence.
	Dropped []DroppedEntry
	// UnreadableFrom is the offset from which nothing could be framed as an
	// entry (-1 if the whole entry block was walked), and UnreadableBytes
	// how many bytes of the entry block lie beyond it.
	UnreadableFrom, UnreadableBytes int
}

// DroppedEntry is an entry a repair could not keep.
type DroppedEntry struct {
	Offset   int
	Sequence uint64 // as read, unverified
	Location string // as read, unverified; empty if it does not fit
	Reason   string
}

// ErrNotDamaged is returned by SalvageManifest for a manifest that decodes:
// there is nothing to repair.
var ErrNotDamaged = errors.New("manifest: the manifest decodes and its checksums verify; nothing to repair")

// SalvageManifest returns what can be trusted of a damaged manifest. An
// empty object salvages to the empty manifest. A version 1 manifest carries
// no checksums, so its entries cannot be told from damage: it is refused.
// Anything else is walked as version 2 entries from the start (the footer
// may be the damaged part): an entry is kept only if its length frames it
// inside the object, its checksum verifies, it decodes and its sequence is
// above the previous kept one; an entry that frames but fails is dropped
// and the walk goes on; the walk stops at the first entry that cannot be
// framed. now supplies a fresh epoch when the old one cannot be read.
func SalvageManifest(b []byte, now time.Time) (*Salvage, error) {
	if _, err := Decode(b); err == nil {
		return nil, ErrNotDamaged
	}
	s := &Salvage{UnreadableFrom: -1}
	f, ferr := ReadFooter(b)
	block := b
	if ferr == nil {
		s.Footer, s.FooterOK = f, true
		if f.Version == Version1 {
			return nil, fmt.Errorf("manifest: version 1 carries no checksums, so its good entries cannot be told from damaged ones; restore it from a copy, or decode what is left with bucketq inspect")
		}
		block = b[:len(b)-f.Len()]
	}
	m := &Manifest{Version: Version2}
	var last uint64
	off := 0
	for off < len(block) {
		if len(block)-off < 4+entryFixed-4+entryCRCSize {
			break
		}
		l := int(binary.LittleEndian.Uint32(block[off:]))
		if l < entryFixed-4+entryCRCSize || l > len(block)-off-4 {
			break
		}
		end := off + 4 + l
		body := block[off+4 : end-entryCRCSize]
		want := binary.LittleEndian.Uint32(block[end-entryCRCSize:])
		got := crc32.Checksum(block[off:end-entryCRCSize], castagnoli)
		e, derr := decodeEntry(body)
		reason := ""
		switch {
		case got != want:
			reason = fmt.Sprintf("entry checksum %08x, its bytes hash to %08x", want, got)
		case derr != nil:
			reason = derr.Error()
		case len(m.Entries) > 0 && e.Sequence <= last:
			reason = fmt.Sprintf("sequence %d does not follow %d", e.Sequence, last)
		}
		if reason != "" {
			d := DroppedEntry{Offset: off, Reason: reason}
			if len(body) >= 10 {
				d.Sequence = binary.LittleEndian.Uint64(body)
				if ll := int(binary.LittleEndian.Uint16(body[8:])); 10+ll <= len(body) {
					d.Location = string(body[10 : 10+ll])
				}
			}
			s.Dropped = append(s.Dropped, d)
		} else {
			m.Entries = append(m.Entries, e)
			last = e.Sequence
		}
		off = end
	}
	if off < len(block) {
		s.UnreadableFrom, s.UnreadableBytes = off, len(block)-off
	}
	if len(m.Entries) > 0 {
		m.NextSequence = last + 1
	}
	for _, d := range s.Dropped {
		m.NextSequence = max(m.NextSequence, d.Sequence+1)
	}
	if s.FooterOK {
		m.NextSequence = max(m.NextSequence, s.Footer.NextSequence)
	}
	// A fresh epoch fences any consumer of the old one. The footer's may
	// be the damaged part, so it must also be above anything plausible:
	// the clock in milliseconds is far above the number of consumer starts.
	m.Epoch = uint64(now.UnixMilli())
	if s.FooterOK && s.Footer.Epoch >= m.Epoch {
		m.Epoch = s.Footer.Epoch + 1
	}
	s.Manifest = m
	return s, nil
}
