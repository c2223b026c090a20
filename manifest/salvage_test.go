package manifest_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bucketq/bucketq/manifest"
)

func TestSalvageManifest(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	entries := []manifest.Entry{
		{Sequence: 3, Location: "ingest/data/a.batch", Metadata: []manifest.Metadata{{Payload: hdr(4, 2)}}},
		{Sequence: 4, Location: "ingest/data/b.batch", Metadata: []manifest.Metadata{{Payload: hdr(4, 2)}}},
		{Sequence: 7, Location: "ingest/data/c.batch", Metadata: []manifest.Metadata{{Payload: hdr(1, 1)}}},
	}
	good := (&manifest.Manifest{NextSequence: 9, Epoch: 5, Entries: entries}).Encode()
	entryLen := entries[0].EncodedLen() + 4 // every entry has the same size here
	at := func(b []byte, pos int, v byte) []byte {
		b = bytes.Clone(b)
		if pos < 0 {
			pos += len(b)
		}
		b[pos] ^= v
		return b
	}
	locs := func(m *manifest.Manifest) []string {
		var out []string
		for _, e := range m.Entries {
			out = append(out, e.Location)
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		in          []byte
		keep        []string
		dropped     []string // locations of dropped entries, as read
		unreadable  bool
		next, epoch uint64
	}{
		{"byte of the second entry's location flipped", at(good, entryLen+20, 0x01), []string{"ingest/data/a.batch", "ingest/data/c.batch"}, []string{"ingest.data/b.batch"}, false, 9, 1_800_000_000_000},
		{"footer epoch flipped", at(good, -10, 0x80), []string{"ingest/data/a.batch", "ingest/data/b.batch", "ingest/data/c.batch"}, nil, false, 9, 1_800_000_000_000},
		{"footer destroyed", append(bytes.Clone(good[:len(good)-26]), make([]byte, 26)...), []string{"ingest/data/a.batch", "ingest/data/b.batch", "ingest/data/c.batch"}, nil, true, 8, 1_800_000_000_000},
		{"truncated inside the third entry", good[:2*entryLen+10], []string{"ingest/data/a.batch", "ingest/data/b.batch"}, nil, true, 5, 1_800_000_000_000},
		{"second entry's length broken", at(good, entryLen, 0x40), []string{"ingest/data/a.batch"}, nil, true, 9, 1_800_000_000_000},
		{"empty object", []byte{}, nil, nil, false, 0, 1_800_000_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := manifest.Decode(tc.in); err == nil {
				t.Fatal("the damaged input decodes; the case proves nothing")
			}
			s, err := manifest.SalvageManifest(tc.in, now)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(locs(s.Manifest), ","); got != strings.Join(tc.keep, ",") {
				t.Fatalf("kept %q, want %q", got, strings.Join(tc.keep, ","))
			}
			var dropped []string
			for _, d := range s.Dropped {
				dropped = append(dropped, d.Location)
			}
			if strings.Join(dropped, ",") != strings.Join(tc.dropped, ",") {
				t.Fatalf("dropped %q, want %q", dropped, tc.dropped)
			}
			if (s.UnreadableFrom >= 0) != tc.unreadable {
				t.Fatalf("unreadable from %d (%d bytes), want unreadable=%v", s.UnreadableFrom, s.UnreadableBytes, tc.unreadable)
			}
			if s.Manifest.NextSequence != tc.next || s.Manifest.Epoch != tc.epoch {
				t.Fatalf("next_sequence %d epoch %d, want %d %d", s.Manifest.NextSequence, s.Manifest.Epoch, tc.next, tc.epoch)
			}
			// What a repair writes decodes, and every kept entry is the
			// original, byte for byte.
			out := s.Manifest.Encode()
			m, err := manifest.Decode(out)
			if err != nil {
				t.Fatalf("salvaged manifest does not decode: %v", err)
			}
			for _, e := range m.Entries {
				found := false
				for _, o := range entries {
					if o.Location == e.Location && o.Sequence == e.Sequence {
						found = true
					}
				}
				if !found {
					t.Fatalf("kept entry %+v is not one of the originals", e)
				}
			}
		})
	}
	if _, err := manifest.SalvageManifest(good, now); !errors.Is(err, manifest.ErrNotDamaged) {
		t.Fatalf("good manifest: %v, want ErrNotDamaged", err)
	}
	v1 := (&manifest.Manifest{Version: manifest.Version1, NextSequence: 9, Epoch: 5, Entries: entries}).Encode()
	if _, err := manifest.SalvageManifest(at(v1, -30, 1), now); err == nil || !strings.Contains(err.Error(), "version 1 carries no checksums") {
		t.Fatalf("damaged version 1: %v", err)
	}
	// An epoch above the clock is kept above.
	big := (&manifest.Manifest{NextSequence: 9, Epoch: 1 << 62, Entries: entries}).Encode()
	s, err := manifest.SalvageManifest(at(big, entryLen+20, 1), now)
	if err != nil || s.Manifest.Epoch != 1<<62+1 {
		t.Fatalf("epoch %v, %v; want %d", s, err, uint64(1<<62+1))
	}
}
