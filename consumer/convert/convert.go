// Package convert turns queue records into CloudEvents: the seam between the
// consumer, which moves batches, and the converters keyed by the signal and
// payload encoding of the entry metadata header.
package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bucketq/bucketq/format"
)

// Record is one record of a batch, with where it came from.
type Record struct {
	Location        string // batch object name
	Sequence        uint64 // manifest sequence of the batch
	Index           int    // record index within the batch
	Header          format.Header
	IngestionTimeMs int64
	Data            []byte // aliases the decoded batch; copy to keep
}

// Converter turns one record into zero or more CloudEvents, each one JSON
// object in structured mode. An error means the record cannot be converted;
// the consumer dead-letters it with the error as reason and moves on, so the
// error text should name what is wrong. Implementations must be safe for
// concurrent use and deterministic: the same record yields the same events
// (ids included) on every call, so redelivery and replay are deduplicated by
// the metering API.
type Converter interface {
	Convert(rec Record) ([]json.RawMessage, error)
}

// Event is one converted event and the item of the record it came from.
// Item is the converter's positional index of the item (an OTLP log
// record, metric data point or span, counted over the whole record, items
// that give no event included); for a converter that does not split records
// into items it is the event's index among the record's events.
type Event struct {
	Item int
	JSON json.RawMessage
}

// ItemError is one item of a record that could not be converted.
// Position names it in the record ("resource 0 scope 1 log record 5") and
// Err says why, naming the config field and expression at fault.
type ItemError struct {
	Item     int
	Position string
	Err      error
}

func (e ItemError) Error() string { return e.Position + ": " + e.Err.Error() }

func (e ItemError) Unwrap() error { return e.Err }

// ItemConverter is a Converter that converts the items of a record one by
// one: an item that cannot be converted is reported in failed and the
// others still give their events, with the same ids as when every item
// converts (ids are positional). err is only for a record that cannot be
// read at all (an undecodable payload). Convert of an ItemConverter stays
// all-or-nothing: it fails when any item fails.
type ItemConverter interface {
	Converter
	ConvertItems(rec Record) (events []Event, failed []ItemError, err error)
}

// ConvertItems converts rec with c item by item when c is an
// ItemConverter, else with c.Convert: then each event's Item is its index
// and failed is empty (the record converts whole or fails whole).
func ConvertItems(c Converter, rec Record) ([]Event, []ItemError, error) {
	if ic, ok := c.(ItemConverter); ok {
		return ic.ConvertItems(rec)
	}
	evs, err := c.Convert(rec)
	if err != nil {
		return nil, nil, err
	}
	out := make([]Event, len(evs))
	for i, ev := range evs {
		out[i] = Event{Item: i, JSON: ev}
	}
	return out, nil, nil
}

// ErrNoConverter is returned by Registry.Convert for a signal/encoding pair
// nothing is registered for (including unknown codes).
var ErrNoConverter = errors.New("no converter for this signal and encoding")

// Registry picks a converter by the record's signal and encoding.
type Registry struct {
	byKind map[[2]uint8]Converter
}

// NewRegistry returns a registry holding the CloudEvents pass-through.
func NewRegistry() *Registry {
	r := &Registry{byKind: map[[2]uint8]Converter{}}
	r.Register(format.SignalEvents, format.EncodingCloudEventsJSON, PassThrough{})
	return r
}

// Register sets the converter for one signal/encoding pair.
func (r *Registry) Register(s format.SignalType, e format.PayloadEncoding, c Converter) {
	r.byKind[[2]uint8{uint8(s), uint8(e)}] = c
}

// Convert implements Converter by dispatch.
func (r *Registry) Convert(rec Record) ([]json.RawMessage, error) {
	c, ok := r.byKind[[2]uint8{uint8(rec.Header.Signal), uint8(rec.Header.Encoding)}]
	if !ok {
		return nil, fmt.Errorf("%w: %s/%s", ErrNoConverter, rec.Header.Signal, rec.Header.Encoding)
	}
	return c.Convert(rec)
}

// ConvertItems implements ItemConverter by dispatch: the registered
// converter's ConvertItems when it has one, else its Convert (see the
// function ConvertItems).
func (r *Registry) ConvertItems(rec Record) ([]Event, []ItemError, error) {
	c, ok := r.byKind[[2]uint8{uint8(rec.Header.Signal), uint8(rec.Header.Encoding)}]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s/%s", ErrNoConverter, rec.Header.Signal, rec.Header.Encoding)
	}
	return ConvertItems(c, rec)
}

// PassThrough forwards CloudEvents JSON records unchanged: they were
// validated at ingest, and they keep their own ids. It only checks that the
// record looks like a JSON object; the consumer validates every converter's
// output once (consumer.checkEvents), so a corrupt record is dead-lettered
// instead of poisoning a whole sink request.
type PassThrough struct{}

// Convert implements Converter.
func (PassThrough) Convert(rec Record) ([]json.RawMessage, error) {
	data := bytes.TrimSpace(rec.Data)
	if len(data) == 0 || data[0] != '{' || data[len(data)-1] != '}' {
		return nil, fmt.Errorf("record %d of %s is not a JSON object", rec.Index, rec.Location)
	}
	return []json.RawMessage{json.RawMessage(append([]byte(nil), data...))}, nil
}
