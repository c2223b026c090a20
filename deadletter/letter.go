// Package deadletter owns bucketq's dead letters (RFC 0006): the object
// type and its encoding (Letter, Encode, Decode: JSON with a version and a
// CRC-32C of every field), where each one is stored (Name), why (the
// Reason constants, also the reason label of buffer_entries_skipped), a
// Writer that stores them (the consumer's, and any other writer's such as
// an importer's), a Reader that lists and verifies them, and the Redriver
// that sends them to the sink again (`bucketq dead-letters redrive`).
//
// A dead letter whose checksum does not match (ErrDamaged) was changed
// after bucketq wrote it: it is shown but never re-sent, deleted or
// rewritten.
package deadletter

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Letter is the JSON body of a dead-letter object. Objects are named
// deterministically (Name: <prefix>/<sequence>-<batch name>/<kind>...json),
// so a redelivered entry overwrites its own dead letters instead of adding
// copies.
//
// Version 2 objects (Version) carry CRC32C, a checksum of every other
// field; Decode verifies it. Objects without "version" were written before
// checksums (version 1) and are read unverified.
type Letter struct {
	// Version is Version in what bucketq writes; 0 (absent): version 1,
	// no checksum.
	Version int `json:"version,omitempty"`
	// Reason: one of the Reason constants (Error holds the converter's
	// message for ConvertError). It is also the reason label of
	// buffer_entries_skipped.
	Reason string `json:"reason"`
	// Location is where the data came from: the batch object.
	Location    string `json:"location"`
	Sequence    uint64 `json:"sequence"`
	RecordIndex *int   `json:"record_index,omitempty"`
	RecordCount int    `json:"record_count,omitempty"` // unknown_signal: records from RecordIndex on
	EventIndex  *int   `json:"event_index,omitempty"`
	Signal      string `json:"signal,omitempty"`
	Encoding    string `json:"encoding,omitempty"`
	// Header is the record's 4-byte metadata header (RFC 0003) in hex and
	// IngestionTimeMs the ingestion time of its metadata item. With
	// Location, Sequence and the record index they are the convert.Record
	// the consumer converted, so the Redriver converts the records again
	// into the same events, ids included (convert_error, unknown_signal;
	// also set for poison_event).
	Header          string `json:"header,omitempty"`
	IngestionTimeMs int64  `json:"ingestion_time_ms,omitempty"`
	Status          int    `json:"status,omitempty"`   // sink HTTP status
	Response        string `json:"response,omitempty"` // sink response body
	Error           string `json:"error,omitempty"`
	// Event is the refused event (poison_event).
	Event json.RawMessage `json:"event,omitempty"`
	// Records are the raw records that could not be converted (base64).
	Records [][]byte `json:"records,omitempty"`
	// FailedItems (convert_error) lists the items of the record that could
	// not be converted, when the converter converts item by item (OTLP: a
	// log record, data point or span). The record's other items were
	// delivered; redrive sends only these items' events. Empty: the whole
	// record failed (an undecodable payload, or a converter that converts
	// whole records) and none of its events was delivered.
	FailedItems []FailedItem `json:"failed_items,omitempty"`
	// BatchCopy names the object holding the bytes of a corrupt batch.
	BatchCopy    string    `json:"batch_copy,omitempty"`
	Epoch        uint64    `json:"epoch"`
	DeadLettered time.Time `json:"dead_lettered_at"`
	// CRC32C is the CRC-32C (Castagnoli), 8 lowercase hex digits, of the
	// compact JSON encoding (json.Marshal) of this dead letter with CRC32C
	// empty: it covers every other field, version included.
	CRC32C string `json:"crc32c,omitempty"`
}

// FailedItem is one item of a record that could not be converted.
type FailedItem struct {
	Item     int    `json:"item"`     // the converter's positional item index (its events' ids derive from it)
	Position string `json:"position"` // e.g. "resource 0 scope 1 log record 5"
	Error    string `json:"error"`    // why, naming the config field and expression
}

// Version is the version of the dead-letter objects bucketq writes: 2 =
// checksummed (CRC32C). Version 1 objects have no "version".
const Version = 2

// ErrDamaged marks a dead-letter object that is not the JSON bucketq
// wrote: its checksum does not match, it is not a JSON object, or its
// version is one this bucketq does not read. Such an object must not be
// re-sent, deleted or rewritten.
var ErrDamaged = errors.New("dead letter changed or damaged")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is the CRC32C a dead letter with l's fields carries.
func (l Letter) checksum() (string, error) {
	l.CRC32C = ""
	b, err := json.Marshal(l)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%08x", crc32.Checksum(b, castagnoli)), nil
}

// Encode is the body of a dead-letter object: l as version 2, with a fresh
// checksum, pretty-printed.
func Encode(l Letter) ([]byte, error) {
	l.Version = Version
	sum, err := l.checksum()
	if err != nil {
		return nil, err
	}
	l.CRC32C = sum
	return json.MarshalIndent(l, "", "  ")
}

// Decode decodes and verifies the body of a dead-letter object. A version
// 2 object must carry the checksum of its fields; a version 1 object (no
// "version", no "crc32c") is returned unverified, with Version 0. Errors
// wrap ErrDamaged; the decoded fields are returned with a checksum
// mismatch, for display only.
func Decode(b []byte) (Letter, error) {
	var l Letter
	if err := json.Unmarshal(b, &l); err != nil {
		return Letter{}, fmt.Errorf("%w: not a JSON dead letter: %v", ErrDamaged, err)
	}
	switch {
	case l.Version == 0 && l.CRC32C == "":
		return l, nil // version 1: written before checksums
	case l.Version != 0 && l.Version != Version:
		return l, fmt.Errorf("%w: version %d is not one this bucketq reads (1 or %d): written by a newer bucketq, or damaged",
			ErrDamaged, l.Version, Version)
	case l.CRC32C == "":
		return l, fmt.Errorf("%w: version %d without crc32c: the object was changed or damaged after bucketq wrote it", ErrDamaged, l.Version)
	}
	want, err := l.checksum()
	if err != nil {
		return l, fmt.Errorf("%w: re-encoding it for its checksum: %v", ErrDamaged, err)
	}
	if l.CRC32C != want {
		return l, fmt.Errorf("%w: crc32c says %q, its fields hash to %q: the object was changed or damaged after bucketq wrote it",
			ErrDamaged, l.CRC32C, want)
	}
	return l, nil
}
