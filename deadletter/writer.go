package deadletter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/internal/backoff"
)

// DefaultPrefix is the dead-letter prefix of the consumer and the importer
// unless configured otherwise.
const DefaultPrefix = "ingest/dead-letter"

// Writer stores dead letters under Prefix in Bucket. Each write is retried
// (jittered exponential backoff between MinBackoff and MaxBackoff, by
// default 200ms and 30s) until it succeeds or ctx ends: whoever writes a
// dead letter must not move on before it is durable.
//
//	w := deadletter.Writer{Bucket: bkt, Prefix: deadletter.DefaultPrefix}
//	name, err := w.Write(ctx, deadletter.Letter{Reason: deadletter.ConvertError, Location: "rows.csv", ...})
type Writer struct {
	Bucket objstore.Bucket
	// Prefix is the dead-letter prefix (DefaultPrefix, for instance); a trailing
	// "/" is ignored.
	Prefix string

	MinBackoff, MaxBackoff time.Duration
	// Now stamps Letter.DeadLettered when it is zero; nil: time.Now.
	Now func() time.Time
	// OnWrite, if set, is called after each object is stored; OnFailure
	// after each failed attempt, with the pause before the next.
	OnWrite   func(name string)
	OnFailure func(name string, err error, wait time.Duration)
}

// Write stores l, encoded as version 2 with its checksum, under
// Name(w.Prefix, l), and returns that name. A zero DeadLettered is set to
// now (UTC). An Event that is not valid JSON is kept as a record instead,
// since the object must stay JSON.
func (w Writer) Write(ctx context.Context, l Letter) (string, error) {
	if w.Bucket == nil {
		return "", errors.New("deadletter: Writer without a Bucket")
	}
	if l.Reason == "" {
		return "", errors.New("deadletter: Letter without a Reason")
	}
	if l.DeadLettered.IsZero() {
		now := time.Now
		if w.Now != nil {
			now = w.Now
		}
		l.DeadLettered = now().UTC()
	}
	if len(l.Event) > 0 && !json.Valid(l.Event) {
		l.Records = append(l.Records, []byte(l.Event))
		l.Event = nil
	}
	name := Name(w.Prefix, l)
	body, err := Encode(l)
	if err != nil {
		return name, fmt.Errorf("deadletter: encode %s: %w", name, err)
	}
	return name, w.put(ctx, name, body)
}

// WriteBatchCopy stores the bytes of the unreadable batch l reports
// beside its marker, sets l.BatchCopy to their name, and returns it. Call
// it before Write(ctx, *l).
func (w Writer) WriteBatchCopy(ctx context.Context, l *Letter, data []byte) (string, error) {
	if w.Bucket == nil {
		return "", errors.New("deadletter: Writer without a Bucket")
	}
	name := BatchCopyName(w.Prefix, *l)
	if err := w.put(ctx, name, data); err != nil {
		return name, err
	}
	l.BatchCopy = name
	return name, nil
}

func (w Writer) put(ctx context.Context, name string, body []byte) error {
	bo := backoff.New(w.MinBackoff, w.MaxBackoff)
	for {
		err := w.Bucket.Upload(ctx, name, bytes.NewReader(body))
		if err == nil {
			if w.OnWrite != nil {
				w.OnWrite(name)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := bo.Next()
		if w.OnFailure != nil {
			w.OnFailure(name, err, wait)
		}
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}
