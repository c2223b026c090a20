package consumer

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"path"
	"strings"
	"time"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
)

// DeadLetter is the JSON body of a dead-letter object. Objects are named
// deterministically (DeadLetterPrefix/<sequence>-<batch name>/<kind>...json),
// so a redelivered entry overwrites its own dead letters instead of adding
// copies.
//
// Version 2 objects (DeadLetterVersion) carry CRC32C, a checksum of every
// other field; DecodeDeadLetter verifies it. Objects without "version" were
// written before checksums (version 1) and are read unverified.
type DeadLetter struct {
	// Version is DeadLetterVersion in what bucketq writes; 0 (absent):
	// version 1, no checksum.
	Version int `json:"version,omitempty"`
	// Reason: "poison_event" (the sink refused it), "unknown_signal",
	// "batch_missing", "batch_corrupt" or "convert_error" (Error holds the
	// converter's message). It is also the reason label of
	// buffer_entries_skipped.
	Reason      string `json:"reason"`
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
	// the consumer converted, so `bucketq dead-letters redrive` converts
	// the records again into the same events, ids included (convert_error,
	// unknown_signal; also set for poison_event).
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

// DeadLetterVersion is the version of the dead-letter objects bucketq
// writes: 2 = checksummed (CRC32C). Version 1 objects have no "version".
const DeadLetterVersion = 2

// ErrDeadLetterDamaged marks a dead-letter object that is not the JSON
// bucketq wrote: its checksum does not match, it is not a JSON object, or
// its version is one this bucketq does not read. Such an object must not
// be re-sent, deleted or rewritten.
var ErrDeadLetterDamaged = errors.New("dead letter changed or damaged")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is the CRC32C a dead letter with dl's fields carries.
func (dl DeadLetter) checksum() (string, error) {
	dl.CRC32C = ""
	b, err := json.Marshal(dl)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%08x", crc32.Checksum(b, castagnoli)), nil
}

// EncodeDeadLetter is the body of a dead-letter object: dl as version 2,
// with a fresh checksum, pretty-printed.
func EncodeDeadLetter(dl DeadLetter) ([]byte, error) {
	dl.Version = DeadLetterVersion
	sum, err := dl.checksum()
	if err != nil {
		return nil, err
	}
	dl.CRC32C = sum
	return json.MarshalIndent(dl, "", "  ")
}

// DecodeDeadLetter decodes and verifies the body of a dead-letter object.
// A version 2 object must carry the checksum of its fields; a version 1
// object (no "version", no "crc32c") is returned unverified, with Version
// 0. Errors wrap ErrDeadLetterDamaged; the decoded fields are returned
// with a checksum mismatch, for display only.
func DecodeDeadLetter(b []byte) (DeadLetter, error) {
	var dl DeadLetter
	if err := json.Unmarshal(b, &dl); err != nil {
		return DeadLetter{}, fmt.Errorf("%w: not a JSON dead letter: %v", ErrDeadLetterDamaged, err)
	}
	switch {
	case dl.Version == 0 && dl.CRC32C == "":
		return dl, nil // version 1: written before checksums
	case dl.Version != 0 && dl.Version != DeadLetterVersion:
		return dl, fmt.Errorf("%w: version %d is not one this bucketq reads (1 or %d): written by a newer bucketq, or damaged",
			ErrDeadLetterDamaged, dl.Version, DeadLetterVersion)
	case dl.CRC32C == "":
		return dl, fmt.Errorf("%w: version %d without crc32c: the object was changed or damaged after bucketq wrote it", ErrDeadLetterDamaged, dl.Version)
	}
	want, err := dl.checksum()
	if err != nil {
		return dl, fmt.Errorf("%w: re-encoding it for its checksum: %v", ErrDeadLetterDamaged, err)
	}
	if dl.CRC32C != want {
		return dl, fmt.Errorf("%w: crc32c says %q, its fields hash to %q: the object was changed or damaged after bucketq wrote it",
			ErrDeadLetterDamaged, dl.CRC32C, want)
	}
	return dl, nil
}

// FailedItem is one item of a record that could not be converted.
type FailedItem struct {
	Item     int    `json:"item"`     // the converter's positional item index (its events' ids derive from it)
	Position string `json:"position"` // e.g. "resource 0 scope 1 log record 5"
	Error    string `json:"error"`    // why, naming the config field and expression
}

// Dead-letter reasons: DeadLetter.Reason and the reason label of
// buffer_entries_skipped use the same words.
const (
	reasonPoison        = "poison_event"
	reasonUnknownSignal = "unknown_signal"
	reasonConvert       = "convert_error"
	reasonBatchMissing  = "batch_missing"
	reasonBatchCorrupt  = "batch_corrupt"
)

// ingestMsAt is the ingestion time of the metadata item that covers record
// idx of e (the last item starting at or before it), as the consumer's
// ranges assign it.
func ingestMsAt(e manifest.Entry, idx int) int64 {
	var ms int64
	for _, md := range e.Metadata {
		if int(md.StartIndex) > idx {
			break
		}
		ms = md.IngestionTimeMs
	}
	return ms
}

// headerAt is the metadata header (hex) of the item that covers record idx
// of e, "" if there is none or it does not parse.
func headerAt(e manifest.Entry, idx int) string {
	var payload []byte
	for _, md := range e.Metadata {
		if int(md.StartIndex) > idx {
			break
		}
		payload = md.Payload
	}
	h, _, err := format.ParseHeader(payload)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(h.Bytes())
}

// dlDir is the dead-letter folder of an entry.
func (c *Consumer) dlDir(e manifest.Entry) string {
	base := path.Base(e.Location)
	base = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 {
			return '_'
		}
		return r
	}, base)
	return fmt.Sprintf("%s/%020d-%s", c.cfg.DeadLetterPrefix, e.Sequence, base)
}

// writeDL uploads one dead-letter object, retrying until it succeeds or ctx
// ends: an entry is complete only once its dead letters are durable.
func (r *run) writeDL(ctx context.Context, name string, body []byte) error {
	c := r.c
	b := c.newBackoff()
	for {
		err := c.bkt.Upload(ctx, name, bytes.NewReader(body))
		if err == nil {
			c.m.DeadLetterWrites.Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.m.DeadLetterFailures.Inc()
		wait := b.next()
		c.log.Error("dead-letter write failed; retrying (the queue waits)", "object", name, "error", err, "wait", wait)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

func (r *run) writeDLJSON(ctx context.Context, name string, dl DeadLetter) error {
	dl.Epoch = r.lease.Epoch()
	dl.DeadLettered = r.c.now().UTC()
	if len(dl.Event) > 0 && !json.Valid(dl.Event) {
		dl.Records = append(dl.Records, []byte(dl.Event))
		dl.Event = nil
	}
	body, err := EncodeDeadLetter(dl)
	if err != nil {
		return fmt.Errorf("encode dead letter %s: %w", name, err)
	}
	return r.writeDL(ctx, name, body)
}

// unreadable records a missing or corrupt batch and skips its entry.
func (r *run) unreadable(ctx context.Context, e manifest.Entry, reason string, cause error, data []byte) error {
	c := r.c
	label := strings.TrimPrefix(reason, "batch_")
	c.m.BatchesCorrupt.WithLabelValues(label).Inc()
	c.log.Error("referenced batch is unreadable; dead-lettering its entry and moving on",
		"reason", reason, "location", e.Location, "sequence", e.Sequence, "bytes", len(data), "error", cause)
	dir := c.dlDir(e)
	dl := DeadLetter{Reason: reason, Location: e.Location, Sequence: e.Sequence, Error: cause.Error()}
	if len(data) > 0 {
		dl.BatchCopy = dir + "/" + reason + ".batch"
		if err := r.writeDL(ctx, dl.BatchCopy, data); err != nil {
			return err
		}
	}
	if err := r.writeDLJSON(ctx, dir+"/"+reason+".json", dl); err != nil {
		return err
	}
	c.m.EntriesSkipped.WithLabelValues(reason).Inc()
	return nil
}

// deadLetterRecord records one record the converter refused.
func (r *run) deadLetterRecord(ctx context.Context, e manifest.Entry, h format.Header, idx int, rec []byte, cause error) error {
	c := r.c
	c.log.Error("record cannot be converted; dead-lettering it", "location", e.Location, "sequence", e.Sequence, "record", idx, "error", cause)
	i := idx
	dl := DeadLetter{
		Reason: reasonConvert, Location: e.Location, Sequence: e.Sequence, RecordIndex: &i,
		Signal: h.Signal.String(), Encoding: h.Encoding.String(), Error: cause.Error(),
		Header: hex.EncodeToString(h.Bytes()), IngestionTimeMs: ingestMsAt(e, idx),
		Records: [][]byte{rec},
	}
	if err := r.writeDLJSON(ctx, fmt.Sprintf("%s/convert-r%06d.json", c.dlDir(e), idx), dl); err != nil {
		return err
	}
	c.m.EntriesSkipped.WithLabelValues(reasonConvert).Inc()
	return nil
}

// deadLetterItems records the items of one record the converter refused
// while its other items (delivered events) converted: one object per
// record, holding the raw record so redrive can convert it again, and the
// failed items. It counts each failed item as skipped.
func (r *run) deadLetterItems(ctx context.Context, e manifest.Entry, h format.Header, idx int, rec []byte, failed []convert.ItemError, delivered int) error {
	c := r.c
	first := failed[0]
	c.log.Error("items of a record cannot be converted; delivering the others and dead-lettering these",
		"location", e.Location, "sequence", e.Sequence, "record", idx, "failed_items", len(failed), "events", delivered,
		"first_position", first.Position, "error", first.Err)
	items := make([]FailedItem, len(failed))
	for k, f := range failed {
		items[k] = FailedItem{Item: f.Item, Position: f.Position, Error: f.Err.Error()}
	}
	i := idx
	dl := DeadLetter{
		Reason: reasonConvert, Location: e.Location, Sequence: e.Sequence, RecordIndex: &i,
		Signal: h.Signal.String(), Encoding: h.Encoding.String(),
		Error: fmt.Sprintf("record %d of %s (%s): %d items cannot be converted, %d events of the others delivered; first: %s",
			idx, e.Location, h.Signal, len(failed), delivered, first.Error()),
		Header: hex.EncodeToString(h.Bytes()), IngestionTimeMs: ingestMsAt(e, idx),
		Records: [][]byte{rec}, FailedItems: items,
	}
	if err := r.writeDLJSON(ctx, fmt.Sprintf("%s/convert-r%06d.json", c.dlDir(e), idx), dl); err != nil {
		return err
	}
	c.m.EntriesSkipped.WithLabelValues(reasonConvert).Add(float64(len(failed)))
	return nil
}

// deadLetterRange records the records [from, rg.end) of a range whose
// signal/encoding has no converter, in one object.
func (r *run) deadLetterRange(ctx context.Context, e manifest.Entry, rg metadataRange, from int, recs [][]byte, cause error) error {
	c := r.c
	c.log.Error("no converter for the records' signal and encoding; dead-lettering them",
		"location", e.Location, "sequence", e.Sequence, "header", rg.h.String(), "records", len(recs), "first_record", from)
	i := from
	dl := DeadLetter{
		Reason: reasonUnknownSignal, Location: e.Location, Sequence: e.Sequence, RecordIndex: &i, RecordCount: len(recs),
		Signal: rg.h.Signal.String(), Encoding: rg.h.Encoding.String(), Error: cause.Error(), Records: recs,
		Header: hex.EncodeToString(rg.h.Bytes()), IngestionTimeMs: rg.ingestMs,
	}
	if err := r.writeDLJSON(ctx, fmt.Sprintf("%s/unknown_signal-r%06d.json", c.dlDir(e), from), dl); err != nil {
		return err
	}
	c.m.EntriesSkipped.WithLabelValues(reasonUnknownSignal).Add(float64(len(recs)))
	return nil
}

// deadLetterPoison records one event the sink refused on its own.
func (r *run) deadLetterPoison(ctx context.Context, p pendingEvent, he *sink.HTTPError) error {
	c := r.c
	e := p.st.e
	c.log.Error("sink refused an event; dead-lettering it", "location", e.Location, "sequence", e.Sequence,
		"record", p.rec, "event", p.idx, "status", he.Status, "response", he.Body)
	ri, ei := p.rec, p.idx
	dl := DeadLetter{
		Reason: reasonPoison, Location: e.Location, Sequence: e.Sequence, RecordIndex: &ri, EventIndex: &ei,
		Status: he.Status, Response: he.Body, Event: p.ev,
		Header: headerAt(e, ri), IngestionTimeMs: ingestMsAt(e, ri),
	}
	if err := r.writeDLJSON(ctx, fmt.Sprintf("%s/poison-r%06d-e%04d.json", c.dlDir(e), ri, ei), dl); err != nil {
		return err
	}
	c.m.SinkEvents.WithLabelValues("dead_lettered").Inc()
	c.m.EntriesSkipped.WithLabelValues(reasonPoison).Inc()
	return nil
}
