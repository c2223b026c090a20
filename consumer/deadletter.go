package consumer

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/consumer/sink"
	"github.com/bucketq/bucketq/deadletter"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
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

// dlWriter is the consumer's dead-letter writer: retried with the
// consumer's backoff until durable, counted and logged.
func (c *Consumer) dlWriter() deadletter.Writer {
	return deadletter.Writer{
		Bucket: c.bkt, Prefix: c.cfg.DeadLetterPrefix,
		MinBackoff: c.cfg.MinBackoff, MaxBackoff: c.cfg.MaxBackoff,
		Now:     c.now,
		OnWrite: func(string) { c.m.DeadLetterWrites.Inc() },
		OnFailure: func(name string, err error, wait time.Duration) {
			c.m.DeadLetterFailures.Inc()
			c.log.Error("dead-letter write failed; retrying (the queue waits)", "object", name, "error", err, "wait", wait)
		},
	}
}

// writeDL stores one dead letter, stamped with the lease's epoch,
// retrying until it succeeds or ctx ends: an entry is complete only once
// its dead letters are durable.
func (r *run) writeDL(ctx context.Context, dl deadletter.Letter) error {
	dl.Epoch = r.lease.Epoch()
	_, err := r.c.dlWriter().Write(ctx, dl)
	return err
}

// unreadable records a missing or corrupt batch and skips its entry.
func (r *run) unreadable(ctx context.Context, e manifest.Entry, reason string, cause error, data []byte) error {
	c := r.c
	label := strings.TrimPrefix(reason, "batch_")
	c.m.BatchesCorrupt.WithLabelValues(label).Inc()
	c.log.Error("referenced batch is unreadable; dead-lettering its entry and moving on",
		"reason", reason, "location", e.Location, "sequence", e.Sequence, "bytes", len(data), "error", cause)
	dl := deadletter.Letter{Reason: reason, Location: e.Location, Sequence: e.Sequence, Error: cause.Error()}
	if len(data) > 0 {
		if _, err := c.dlWriter().WriteBatchCopy(ctx, &dl, data); err != nil {
			return err
		}
	}
	if err := r.writeDL(ctx, dl); err != nil {
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
	dl := deadletter.Letter{
		Reason: deadletter.ConvertError, Location: e.Location, Sequence: e.Sequence, RecordIndex: &i,
		Signal: h.Signal.String(), Encoding: h.Encoding.String(), Error: cause.Error(),
		Header: hex.EncodeToString(h.Bytes()), IngestionTimeMs: ingestMsAt(e, idx),
		Records: [][]byte{rec},
	}
	if err := r.writeDL(ctx, dl); err != nil {
		return err
	}
	c.m.EntriesSkipped.WithLabelValues(deadletter.ConvertError).Inc()
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
	items := make([]deadletter.FailedItem, len(failed))
	for k, f := range failed {
		items[k] = deadletter.FailedItem{Item: f.Item, Position: f.Position, Error: f.Err.Error()}
	}
	i := idx
	dl := deadletter.Letter{
		Reason: deadletter.ConvertError, Location: e.Location, Sequence: e.Sequence, RecordIndex: &i,
		Signal: h.Signal.String(), Encoding: h.Encoding.String(),
		Error: fmt.Sprintf("record %d of %s (%s): %d items cannot be converted, %d events of the others delivered; first: %s",
			idx, e.Location, h.Signal, len(failed), delivered, first.Error()),
		Header: hex.EncodeToString(h.Bytes()), IngestionTimeMs: ingestMsAt(e, idx),
		Records: [][]byte{rec}, FailedItems: items,
	}
	if err := r.writeDL(ctx, dl); err != nil {
		return err
	}
	c.m.EntriesSkipped.WithLabelValues(deadletter.ConvertError).Add(float64(len(failed)))
	return nil
}

// deadLetterRange records the records [from, rg.end) of a range whose
// signal/encoding has no converter, in one object.
func (r *run) deadLetterRange(ctx context.Context, e manifest.Entry, rg metadataRange, from int, recs [][]byte, cause error) error {
	c := r.c
	c.log.Error("no converter for the records' signal and encoding; dead-lettering them",
		"location", e.Location, "sequence", e.Sequence, "header", rg.h.String(), "records", len(recs), "first_record", from)
	i := from
	dl := deadletter.Letter{
		Reason: deadletter.UnknownSignal, Location: e.Location, Sequence: e.Sequence, RecordIndex: &i, RecordCount: len(recs),
		Signal: rg.h.Signal.String(), Encoding: rg.h.Encoding.String(), Error: cause.Error(), Records: recs,
		Header: hex.EncodeToString(rg.h.Bytes()), IngestionTimeMs: rg.ingestMs,
	}
	if err := r.writeDL(ctx, dl); err != nil {
		return err
	}
	c.m.EntriesSkipped.WithLabelValues(deadletter.UnknownSignal).Add(float64(len(recs)))
	return nil
}

// deadLetterPoison records one event the sink refused on its own.
func (r *run) deadLetterPoison(ctx context.Context, p pendingEvent, he *sink.HTTPError) error {
	c := r.c
	e := p.st.e
	c.log.Error("sink refused an event; dead-lettering it", "location", e.Location, "sequence", e.Sequence,
		"record", p.rec, "event", p.idx, "status", he.Status, "response", he.Body)
	ri, ei := p.rec, p.idx
	dl := deadletter.Letter{
		Reason: deadletter.PoisonEvent, Location: e.Location, Sequence: e.Sequence, RecordIndex: &ri, EventIndex: &ei,
		Status: he.Status, Response: he.Body, Event: p.ev,
		Header: headerAt(e, ri), IngestionTimeMs: ingestMsAt(e, ri),
	}
	if err := r.writeDL(ctx, dl); err != nil {
		return err
	}
	c.m.SinkEvents.WithLabelValues("dead_lettered").Inc()
	c.m.EntriesSkipped.WithLabelValues(deadletter.PoisonEvent).Inc()
	return nil
}
