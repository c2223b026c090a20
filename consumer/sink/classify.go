package sink

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
