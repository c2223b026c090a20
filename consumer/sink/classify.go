package sink

import (
	"errors"
	"time"
)

// Class is how a sender should react to a sink's HTTP answer. The consumer
// and `bucketq dead-letters redrive` share it, so both read an answer the
// same way (RFC 0006).
type Class int

const (
	// Transient: back off exponentially and retry (408, 409, 425, 5xx
	// other than 503, and any non-HTTP failure).
	Transient Class = iota
	// Throttle: retry after the answer's Retry-After (429, 503).
	Throttle
	// Operator: only an operator can fix it (401, 403, 404 and other 4xx,
	// and any 3xx: the sink never follows a redirect); retry slowly and
	// loudly, or stop.
	Operator
	// Reject: the server refused the events themselves (400, 413, 422);
	// bisect to find the ones it refuses.
	Reject
)

// Classify returns the Class of an HTTP status.
func Classify(status int) Class {
	switch {
	case status == 400 || status == 413 || status == 422:
		return Reject
	case status == 429 || status == 503:
		return Throttle
	case status == 408 || status == 425 || status == 409:
		return Transient
	case status >= 300 && status < 500:
		return Operator
	}
	return Transient
}

// Failure is a failed Send as every sender reads it: the consumer and
// `bucketq dead-letters redrive` (package deadletter) classify and time
// their retries through it, so both treat an answer alike.
type Failure struct {
	Class Class
	// HTTP is the sink's answer; nil when the request failed without one
	// (a transport error or timeout), which is Transient.
	HTTP *HTTPError
}

// ReadFailure classifies err, an error a Sink's Send returned.
func ReadFailure(err error) Failure {
	var he *HTTPError
	if errors.As(err, &he) {
		return Failure{Class: Classify(he.Status), HTTP: he}
	}
	return Failure{Class: Transient}
}

// RetryAfter is the pause a Throttle answer asks for with its Retry-After,
// capped at maxWait; 0 for any other failure or an answer without one.
func (f Failure) RetryAfter(maxWait time.Duration) time.Duration {
	if f.Class != Throttle || f.HTTP == nil || f.HTTP.RetryAfter <= 0 {
		return 0
	}
	return min(f.HTTP.RetryAfter, maxWait)
}

// Wait is the pause before retrying a Throttle or Transient failure: the
// answer's Retry-After (capped at maxRetryAfter) when it gave one, else
// the next step of the sender's backoff.
func (f Failure) Wait(backoff func() time.Duration, maxRetryAfter time.Duration) time.Duration {
	if w := f.RetryAfter(maxRetryAfter); w > 0 {
		return w
	}
	return backoff()
}
