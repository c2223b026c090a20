// Package reqbody reads the request bodies of the HTTP ingest front doors
// (CloudEvents and OTLP/HTTP): one reader, so both accept the same
// Content-Encodings (identity, gzip, x-gzip; others are refused with 415),
// apply the same limits (max_body_bytes on the decoded body, WireLimit of
// it on an encoded body's wire bytes) and fail with the same errors, which
// Answer maps to a status each front door writes in its own format. Two
// guards protect against slow or careless clients:
//
//   - A minimum rate. A body must arrive within Limits.Timeout plus one
//     second per Limits.MinRate bytes received so far. The connection's
//     read deadline enforces it (http.ResponseController), so a client that
//     sends its headers and then nothing is cut off as well as one that
//     trickles. The front doors answer 408 and the connection is closed.
//   - A shared memory budget. Body bytes are reserved in chunks as they
//     arrive, against a Budget shared by the front doors, never the declared
//     Content-Length up front; when it is spent the front doors answer 429.
package reqbody

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// Defaults of Limits.
const (
	DefaultTimeout = 10 * time.Second
	DefaultMinRate = 16 << 10 // bytes per second
)

// chunk is how much of a body is reserved at a time.
const chunk = 64 << 10

// Limits are the minimum-rate guard. Zero fields take their defaults.
type Limits struct {
	Timeout time.Duration // every body gets this long, whatever its size
	MinRate int64         // and one more second per MinRate bytes received
}

func (l Limits) withDefaults() Limits {
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MinRate <= 0 {
		l.MinRate = DefaultMinRate
	}
	return l
}

// TooSlowError is a body that did not keep the minimum rate.
type TooSlowError struct {
	Received int64
	Elapsed  time.Duration
	Limits   Limits
}

func (e *TooSlowError) Error() string {
	return fmt.Sprintf("the request body arrived too slowly: %d bytes in %v; a body may take %v plus 1s per %d bytes",
		e.Received, e.Elapsed.Round(time.Millisecond), e.Limits.Timeout, e.Limits.MinRate)
}

// ErrBudget is returned when the budget for request bodies is spent.
var ErrBudget = errors.New("the memory bound for request bodies being received is reached")

// Budget is a bound on the body bytes held by requests in progress, shared
// by the front doors. The zero value is no bound.
type Budget struct {
	max  int64
	used atomic.Int64
}

// NewBudget returns a budget of max bytes (no bound if max <= 0).
func NewBudget(max int64) *Budget { return &Budget{max: max} }

func (b *Budget) reserve(n int64) bool {
	if b == nil || b.max <= 0 {
		return true
	}
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *Budget) release(n int64) {
	if b != nil && b.max > 0 && n > 0 {
		b.used.Add(-n)
	}
}

// Used returns the bytes reserved now.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// Reader is a request's body under the guards. Read it with ReadBody, and
// call Release once the bytes read are no longer held.
type Reader struct {
	body     io.ReadCloser
	w        http.ResponseWriter
	header   http.Header
	length   int64 // the declared Content-Length, -1 if unknown
	rc       http.ResponseController
	lim      Limits
	start    time.Time
	n        int64     // bytes received
	deadline time.Time // the read deadline set, zero if none
	noConn   bool      // the writer cannot set read deadlines: check after each Read
	budget   *Budget
	reserved int64
	lr       io.LimitedReader
}

// New starts the guards on r's body.
func New(w http.ResponseWriter, r *http.Request, budget *Budget, lim Limits) *Reader {
	rd := new(Reader)
	rd.Start(w, r, budget, lim)
	return rd
}

// Start is New for a Reader the caller keeps (a pooled one, so a request
// allocates none): it starts the guards on r's body, replacing whatever rd
// held. Call Release before reusing rd.
func (rd *Reader) Start(w http.ResponseWriter, r *http.Request, budget *Budget, lim Limits) {
	*rd = Reader{body: r.Body, w: w, header: r.Header, length: r.ContentLength, rc: *http.NewResponseController(w), lim: lim.withDefaults(), start: time.Now(), budget: budget}
}

// Clear drops rd's references to the request, once Release has been
// called, so a pooled Reader does not keep it alive.
func (rd *Reader) Clear() { *rd = Reader{} }

// Read reads the wire body, failing with a *TooSlowError when it arrives
// slower than the Limits allow.
func (rd *Reader) Read(p []byte) (int, error) {
	due := rd.start.Add(rd.lim.Timeout + time.Duration(rd.n)*time.Second/time.Duration(rd.lim.MinRate))
	if !rd.noConn && !due.Equal(rd.deadline) {
		if err := rd.rc.SetReadDeadline(due); err != nil {
			rd.noConn = true
		} else {
			rd.deadline = due
		}
	}
	n, err := rd.body.Read(p)
	rd.n += int64(n)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, rd.tooSlow()
	}
	if rd.noConn && err == nil && time.Now().After(due) {
		return n, rd.tooSlow()
	}
	return n, err
}

// Close closes the request body.
func (rd *Reader) Close() error { return rd.body.Close() }

func (rd *Reader) tooSlow() error {
	return &TooSlowError{Received: rd.n, Elapsed: time.Since(rd.start), Limits: rd.lim}
}

// readAll appends what src (rd or a decoder reading rd) yields to dst until
// EOF, reserving each chunk against the budget before reading it; hint, if
// positive, is the expected size (the first chunk is no larger than
// needed). It returns src's error or ErrBudget.
func (rd *Reader) readAll(dst *bytes.Buffer, src io.Reader, hint int64) error {
	size := int64(chunk)
	if hint >= 0 && hint < size {
		size = hint + 1 // +1: room to see EOF
	}
	for {
		if !rd.budget.reserve(size) {
			return ErrBudget
		}
		rd.reserved += size
		rd.lr = io.LimitedReader{R: src, N: size}
		n, err := dst.ReadFrom(&rd.lr)
		rd.lr.R = nil
		if err != nil {
			return err
		}
		if n < size {
			return nil
		}
		size = chunk
	}
}

// Done ends the rate guard once the body is read: the connection keeps no
// read deadline while the request waits for its answer. ReadBody calls it.
func (rd *Reader) Done() {
	if !rd.deadline.IsZero() {
		_ = rd.rc.SetReadDeadline(time.Time{})
		rd.deadline = time.Time{}
	}
}

// Release returns the reserved bytes to the budget.
func (rd *Reader) Release() {
	rd.budget.release(rd.reserved)
	rd.reserved = 0
}
