package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bucketq/bucketq/internal/backoff"
)

// DefaultMaxRetryAfter caps an honoured Retry-After unless told otherwise:
// the consumer's, SendRetrying's and dead-letter redrive's default.
const DefaultMaxRetryAfter = 10 * time.Minute

// RetryPolicy bounds SendRetrying's waits. Zero fields take the defaults.
type RetryPolicy struct {
	MinBackoff, MaxBackoff time.Duration // defaults 200ms and 30s
	MaxRetryAfter          time.Duration // cap on an honoured Retry-After; default 10m
	// OnRetry, if set, is told of each failed attempt and the wait before
	// the next.
	OnRetry func(err error, wait time.Duration)
}

// Refusal is one event the sink refused alone (Reject class: 400, 413,
// 422), with its index in the events given to SendRetrying.
type Refusal struct {
	Index int
	Err   *HTTPError
}

// ErrOperator wraps an answer that only an operator can fix (Operator
// class: 401, 403, 404, a 3xx): SendRetrying stops on it.
var ErrOperator = errors.New("the sink refuses requests; check the sink URL and token")

// SendRetrying delivers events the way the consumer reads answers
// (Classify), for a one-shot sender such as replay: Transient failures back
// off exponentially with jitter, Throttle honours Retry-After, Reject
// bisects the request until the refused events are isolated (returned,
// in order; the rest is delivered), and Operator stops with an error
// wrapping ErrOperator. It returns only when every event is delivered or
// refused, or ctx ends.
func SendRetrying(ctx context.Context, s Sink, events []json.RawMessage, p RetryPolicy) ([]Refusal, error) {
	if p.MinBackoff <= 0 {
		p.MinBackoff = backoff.DefaultMin
	}
	if p.MaxBackoff < p.MinBackoff {
		p.MaxBackoff = max(backoff.DefaultMax, p.MinBackoff)
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = DefaultMaxRetryAfter
	}
	var refused []Refusal
	var send func(from, to int) error
	send = func(from, to int) error {
		bo := backoff.New(p.MinBackoff, p.MaxBackoff)
		for {
			err := s.Send(ctx, events[from:to])
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f := ReadFailure(err)
			switch f.Class {
			case Reject:
				if to-from == 1 {
					refused = append(refused, Refusal{Index: from, Err: f.HTTP})
					return nil
				}
				mid := from + (to-from)/2
				if err := send(from, mid); err != nil {
					return err
				}
				return send(mid, to)
			case Operator:
				return fmt.Errorf("%w: %v", ErrOperator, err)
			}
			wait := f.Wait(bo.Next, p.MaxRetryAfter)
			if p.OnRetry != nil {
				p.OnRetry(err, wait)
			}
			if err := backoff.Sleep(ctx, wait); err != nil {
				return err
			}
		}
	}
	if len(events) == 0 {
		return nil, nil
	}
	err := send(0, len(events))
	return refused, err
}
