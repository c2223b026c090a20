package inspect

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/bucketq/bucketq/journal"
)

// JournalJSON is the --json shape of `bucketq inspect journal`: the
// segments under one journal prefix in sequence order, from their footers.
// Problems lists segments whose footer (or, with --verify, whole body)
// failed to read or decode, each naming the segment and byte offset.
type JournalJSON struct {
	Prefix   string        `json:"prefix"`
	Segments []SegmentJSON `json:"segments"`
	Entries  uint64        `json:"entries"`
	Problems []string      `json:"problems"`
}

// SegmentJSON is one segment's footer.
type SegmentJSON struct {
	Name               string `json:"name"`
	FirstSequence      uint64 `json:"first_sequence"`
	LastSequence       uint64 `json:"last_sequence"`
	EntryCount         uint32 `json:"entry_count"`
	MinIngestionTimeMs int64  `json:"min_ingestion_time_ms"`
	MaxIngestionTimeMs int64  `json:"max_ingestion_time_ms"`
	JournaledAtMs      int64  `json:"journaled_at_ms"`
	Epoch              uint64 `json:"epoch"`
	Version            uint16 `json:"version"`
}

// SegmentDetailJSON is the --json shape of `bucketq inspect journal NAME`.
type SegmentDetailJSON struct {
	SegmentJSON
	Entries []EntryJSON `json:"entries"`
}

// Segment renders a footer under its object name.
func Segment(name string, f journal.Footer) SegmentJSON {
	return SegmentJSON{Name: name, FirstSequence: f.FirstSequence, LastSequence: f.LastSequence, EntryCount: f.EntryCount,
		MinIngestionTimeMs: f.MinIngestionTimeMs, MaxIngestionTimeMs: f.MaxIngestionTimeMs,
		JournaledAtMs: f.JournaledAtMs, Epoch: f.Epoch, Version: f.Version}
}

func ms(t int64) string { return time.UnixMilli(t).UTC().Format(time.RFC3339Nano) }

// WriteJournalTable writes the segment listing for people.
func WriteJournalTable(w io.Writer, j JournalJSON) error {
	fmt.Fprintf(w, "journal %s: %d segments, %d entries", j.Prefix, len(j.Segments), j.Entries)
	if n := len(j.Segments); n > 0 {
		fmt.Fprintf(w, ", sequences %d..%d, journaled %s..%s", j.Segments[0].FirstSequence, j.Segments[n-1].LastSequence,
			ms(j.Segments[0].JournaledAtMs), ms(j.Segments[n-1].JournaledAtMs))
	}
	fmt.Fprintln(w)
	if len(j.Segments) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FIRST\tLAST\tENTRIES\tJOURNALED\tINGESTED FROM\tINGESTED TO\tEPOCH\tNAME")
		for _, s := range j.Segments {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%d\t%s\n", s.FirstSequence, s.LastSequence, s.EntryCount,
				ms(s.JournaledAtMs), ms(s.MinIngestionTimeMs), ms(s.MaxIngestionTimeMs), s.Epoch, s.Name)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, p := range j.Problems {
		fmt.Fprintln(w, p)
	}
	return nil
}

// WriteSegmentTable writes one segment's footer and entries.
func WriteSegmentTable(w io.Writer, s SegmentDetailJSON) error {
	fmt.Fprintf(w, "journal segment %s: version %d, sequences %d..%d, %d entries, journaled %s by epoch %d\n",
		s.Name, s.Version, s.FirstSequence, s.LastSequence, s.EntryCount, ms(s.JournaledAtMs), s.Epoch)
	return writeEntries(w, s.Entries)
}
