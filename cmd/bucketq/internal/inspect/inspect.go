// Package inspect renders a manifest or a batch file for people (tables) and
// for programs (JSON of a fixed shape), from their raw bytes. It decodes
// fully, so corrupt input is reported as an error instead of half a listing.
package inspect

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
)

// ManifestJSON is the --json shape of `bucketq inspect manifest`.
type ManifestJSON struct {
	Version      uint16      `json:"version"`
	Epoch        uint64      `json:"epoch"`
	NextSequence uint64      `json:"next_sequence"`
	Entries      []EntryJSON `json:"entries"`
}

// EntryJSON is one manifest entry.
type EntryJSON struct {
	Sequence uint64         `json:"sequence"`
	Location string         `json:"location"`
	Metadata []MetadataJSON `json:"metadata"`
}

// MetadataJSON is one metadata item; Payload is hex, Signal and Encoding
// are the registry names of its header, or "invalid" if it does not parse.
type MetadataJSON struct {
	StartIndex      uint32 `json:"start_index"`
	IngestionTimeMs int64  `json:"ingestion_time_ms"`
	Payload         string `json:"payload"`
	Signal          string `json:"signal"`
	Encoding        string `json:"encoding"`
}

// BatchJSON is the --json shape of `bucketq inspect batch`; Records (base64)
// is present only when records were asked for.
type BatchJSON struct {
	Compression string    `json:"compression"`
	RecordCount uint32    `json:"record_count"`
	Version     uint16    `json:"version"`
	Records     *[]string `json:"records,omitempty"`
}

// Manifest decodes an encoded manifest of either version.
func Manifest(b []byte) (ManifestJSON, error) {
	f, err := manifest.ReadFooter(b)
	if err != nil {
		return ManifestJSON{}, err
	}
	m, err := manifest.Decode(b)
	if err != nil {
		return ManifestJSON{}, err
	}
	return ManifestJSON{Version: f.Version, Epoch: m.Epoch, NextSequence: m.NextSequence, Entries: Entries(m.Entries)}, nil
}

// Entries renders manifest (or journal) entries; never nil.
func Entries(entries []manifest.Entry) []EntryJSON {
	out := []EntryJSON{}
	for _, e := range entries {
		ej := EntryJSON{Sequence: e.Sequence, Location: e.Location, Metadata: []MetadataJSON{}}
		for _, md := range e.Metadata {
			sig, enc := "invalid", "invalid"
			if h, _, err := format.ParseHeader(md.Payload); err == nil {
				sig, enc = h.Signal.String(), h.Encoding.String()
			}
			ej.Metadata = append(ej.Metadata, MetadataJSON{
				StartIndex: md.StartIndex, IngestionTimeMs: md.IngestionTimeMs,
				Payload: hex.EncodeToString(md.Payload), Signal: sig, Encoding: enc,
			})
		}
		out = append(out, ej)
	}
	return out
}

// Batch decodes a batch file; with records it also returns its records.
func Batch(b []byte, records bool) (BatchJSON, [][]byte, error) {
	batch, err := format.DecodeBatch(b)
	if err != nil {
		return BatchJSON{}, nil, err
	}
	out := BatchJSON{Compression: batch.Footer.Compression.String(), RecordCount: batch.Footer.RecordCount, Version: batch.Footer.Version}
	if !records {
		return out, nil, nil
	}
	recs := make([]string, len(batch.Records))
	for i, r := range batch.Records {
		recs[i] = base64.StdEncoding.EncodeToString(r)
	}
	out.Records = &recs
	return out, batch.Records, nil
}

// WriteJSON writes v as one line of JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// WriteManifestTable writes the manifest as a human table.
func WriteManifestTable(w io.Writer, path string, m ManifestJSON) error {
	fmt.Fprintf(w, "manifest %s: version %d, epoch %d, next_sequence %d, %d entries\n",
		path, m.Version, m.Epoch, m.NextSequence, len(m.Entries))
	if len(m.Entries) == 0 {
		return nil
	}
	return writeEntries(w, m.Entries)
}

// writeEntries writes one row per metadata item of each entry.
func writeEntries(w io.Writer, entries []EntryJSON) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQUENCE\tLOCATION\tSTART\tINGESTED\tSIGNAL\tENCODING")
	for _, e := range entries {
		if len(e.Metadata) == 0 {
			fmt.Fprintf(tw, "%d\t%s\t-\t-\t-\t-\n", e.Sequence, e.Location)
		}
		for _, md := range e.Metadata {
			ts := time.UnixMilli(md.IngestionTimeMs).UTC().Format(time.RFC3339Nano)
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\n", e.Sequence, e.Location, md.StartIndex, ts, md.Signal, md.Encoding)
		}
	}
	return tw.Flush()
}

// WriteBatchTable writes the batch footer and, if given, one line per
// record: the record itself when it is printable text, else base64.
func WriteBatchTable(w io.Writer, location string, b BatchJSON, records [][]byte) error {
	fmt.Fprintf(w, "batch %s: version %d, compression %s, %d records\n", location, b.Version, b.Compression, b.RecordCount)
	for i, r := range records {
		if printable(r) {
			fmt.Fprintf(w, "%d\t%s\n", i, bytes.TrimSpace(r))
		} else {
			fmt.Fprintf(w, "%d\tbase64:%s\n", i, base64.StdEncoding.EncodeToString(r))
		}
	}
	return nil
}

func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	return strings.IndexFunc(string(bytes.TrimSpace(b)), func(r rune) bool {
		return !unicode.IsPrint(r) && r != ' '
	}) < 0
}
