// Package ceappend is the typed entry point of the producer for Go programs
// that hold CloudEvents of the reference SDK (github.com/cloudevents/sdk-go/v2):
// it validates each event with the SDK and with the rules of POST
// /api/v1/events, encodes it as structured-mode JSON, and appends the
// records with format.EventsHeader, exactly as the HTTP front door stores
// events, so the consumer delivers them unchanged.
//
// It is a package of its own, not a method of producer.Producer, so that the
// SDK and what it pulls in (a JSON library, a logger) stay out of the
// import graph of the producer and of the ingest front doors, which never
// build SDK events on the hot path.
package ceappend

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/httpevents"
	"github.com/bucketq/bucketq/producer"
)

// Appender adds AppendEvents to a producer (or any producer.Appender).
type Appender struct {
	producer.Appender
	// Now stamps events without a time, as the HTTP front door stamps the
	// receive time; nil is time.Now.
	Now func() time.Time
}

// New wraps app.
func New(app producer.Appender) *Appender { return &Appender{Appender: app} }

// AppendEvents appends events as one Append: it returns nil only once every
// one is durable and committed to the manifest. An invalid event fails the
// whole call before anything is appended; the error names its index.
func (a *Appender) AppendEvents(ctx context.Context, events ...event.Event) error {
	if len(events) == 0 {
		return nil
	}
	now := a.Now
	if now == nil {
		now = time.Now
	}
	records := make([][]byte, 0, len(events))
	var stamp time.Time
	for i := range events {
		ev := events[i]
		if ev.Time().IsZero() {
			if stamp.IsZero() {
				stamp = now().UTC()
			}
			ev = ev.Clone()
			ev.SetTime(stamp)
		}
		rec, err := Encode(ev)
		if err != nil {
			return fmt.Errorf("ceappend: event[%d]: %w", i, err)
		}
		records = append(records, rec)
	}
	return a.Append(ctx, format.EventsHeader, records)
}

// Encode validates ev with the SDK and with the front door's rules
// (httpevents.ValidateRecord: subject present, data an object, a time, ...)
// and returns the record bucketq stores for it: the SDK's structured-mode
// JSON encoding.
func Encode(ev event.Event) ([]byte, error) {
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("invalid CloudEvent: %w", err)
	}
	rec, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode CloudEvent: %w", err)
	}
	if err := httpevents.ValidateRecord(rec); err != nil {
		return nil, fmt.Errorf("refused as POST /api/v1/events would refuse it: %w", err)
	}
	return rec, nil
}
