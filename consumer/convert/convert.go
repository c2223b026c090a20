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
