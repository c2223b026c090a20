package producer

import (
	"context"
	"errors"

	"github.com/bucketq/bucketq/format"
)

// Appender is what an ingest front door needs from a producer: hand it
// records of one kind, and learn once they are durable and committed.
type Appender interface {
	// Append returns nil only after the batch holding every record is
	// uploaded and committed to the manifest. On error, none, some or all
	// of the records may have been committed: the client must retry (and
	// the metering API's (id, source) dedup removes the duplicates).
	// Records are not retained after Append returns.
	Append(ctx context.Context, h format.Header, records [][]byte) error
}

var (
	// ErrBackpressure is returned at once when accepting the records would
	// exceed the producer's memory bound. Front doors answer 429 / RESOURCE_EXHAUSTED.
	ErrBackpressure = errors.New("producer: memory bound reached, retry later")
	// ErrClosed is returned after Close has begun. Front doors answer 503.
	ErrClosed = errors.New("producer: shutting down")
)
