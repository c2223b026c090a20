package reqbody

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Encoding is a request body's Content-Encoding.
type Encoding uint8

// The encodings the front doors accept.
const (
	Identity Encoding = iota
	Gzip              // gzip or x-gzip; concatenated members are one body
)

// AcceptEncoding is the Accept-Encoding value a 415 for an unsupported
// Content-Encoding carries: what the front doors decode.
const AcceptEncoding = "gzip"

// EncodingError is a Content-Encoding the front doors do not decode.
type EncodingError struct {
	Header string // the Content-Encoding values, joined with ", "
}

func (e *EncodingError) Error() string {
	return fmt.Sprintf("unsupported Content-Encoding %q; accepted: gzip, x-gzip, identity (or no Content-Encoding header)", e.Header)
}

// ParseEncoding reads the Content-Encoding of hdr: absent, empty or
// identity is Identity; one gzip (or x-gzip, any case, among identities) is
// Gzip; anything else, or gzip twice, is an *EncodingError.
func ParseEncoding(hdr http.Header) (Encoding, error) {
	vals := hdr.Values("Content-Encoding")
	enc, n := Identity, 0
	for _, v := range vals {
		for c := range strings.SplitSeq(v, ",") {
			switch c = strings.TrimSpace(c); {
			case c == "" || strings.EqualFold(c, "identity"):
			case strings.EqualFold(c, "gzip") || strings.EqualFold(c, "x-gzip"):
				enc = Gzip
				n++
			default:
				n = 2
			}
		}
	}
	if n > 1 {
		return Identity, &EncodingError{Header: strings.Join(vals, ", ")}
	}
	return enc, nil
}

// WireLimit is the bound on an encoded body's bytes on the wire for a
// decoded limit of max. The limit is on the decoded size; the wire bound
// only stops a body that never ends (a stream of empty deflate blocks). It
// leaves room for gzip without compression (5 bytes per 64 KiB block plus a
// header), so any body within max is accepted however it was compressed.
func WireLimit(max int64) int64 {
	wire := max + max/64 + 4096
	if wire < max { // overflow
		wire = max
	}
	return wire
}

// TooLargeError is a body over its limit: on the wire (identity, or the
// compressed bound of an encoded body) or after decoding.
type TooLargeError struct {
	Max      int64    // the limit on the decoded body (max_body_bytes)
	Encoding Encoding // the body's encoding
	Wire     int64    // for an encoded body over its wire bound: that bound, else 0
}

func (e *TooLargeError) Error() string {
	switch {
	case e.Encoding == Identity:
		return fmt.Sprintf("request body is larger than %d bytes", e.Max)
	case e.Wire > 0:
		return fmt.Sprintf("gzip request body is larger than %d bytes on the wire (the limit is %d bytes decompressed)", e.Wire, e.Max)
	}
	return fmt.Sprintf("request body is larger than %d bytes after gzip decompression", e.Max)
}

// DecodeError is an encoded body that cannot be decoded: not gzip, corrupt,
// truncated, with trailing data, or no bytes at all (Err is io.EOF).
type DecodeError struct {
	Err error
}

func (e *DecodeError) Error() string {
	if e.Err == io.EOF {
		return "request body is empty (Content-Encoding: gzip)"
	}
	// "gzip: invalid header" would say gzip twice.
	return "cannot decompress gzip body: not valid gzip (Content-Encoding: gzip): " + strings.TrimPrefix(e.Err.Error(), "gzip: ")
}

func (e *DecodeError) Unwrap() error { return e.Err }

// ReadError is a body the client did not send whole (it went away, or sent
// less than its Content-Length): nothing was stored, it may retry.
type ReadError struct {
	Err error
}

func (e *ReadError) Error() string { return "reading request body: " + e.Err.Error() }

func (e *ReadError) Unwrap() error { return e.Err }

// errTrailingData is wire data after the last gzip member.
var errTrailingData = errors.New("trailing data after the gzip stream")

// ReadBody reads the request's body, decoded as its Content-Encoding says,
// into dst, under the rate and budget guards, and ends the rate guard. The
// decoded body may hold at most max bytes (max_body_bytes); an encoded body
// may take at most WireLimit(max) bytes on the wire, and decoding stops at
// max+1 bytes, so a small "zip bomb" costs at most the limit. The error is
// one of *EncodingError, *TooLargeError, *TooSlowError, ErrBudget,
// *DecodeError or *ReadError; Answer maps it to the HTTP answer.
func (rd *Reader) ReadBody(dst *bytes.Buffer, max int64) error {
	defer rd.Done()
	if max <= 0 {
		max = math.MaxInt64 / 2
	}
	base := dst.Len()
	enc, err := ParseEncoding(rd.header)
	if err != nil {
		return err
	}
	if enc == Identity {
		err = rd.readAll(dst, http.MaxBytesReader(rd.w, rd, max), rd.length)
	} else {
		err = rd.readGzip(dst, http.MaxBytesReader(rd.w, rd, WireLimit(max)), max)
	}
	if err == nil && int64(dst.Len()-base) > max {
		return &TooLargeError{Max: max, Encoding: enc}
	}
	return classify(err, enc, max)
}

// gzState is the reusable state of a gzip body.
type gzState struct {
	br *bufio.Reader // buffers the wire body (gzip needs an io.ByteReader)
	zr gzip.Reader
	lr io.LimitedReader // the decoded bound
}

var gzPool = sync.Pool{New: func() any { return &gzState{br: bufio.NewReader(nil)} }}

// readGzip decompresses wire into dst, at most max+1 bytes. Concatenated
// gzip members are one body; anything else after the last member is an
// error.
func (rd *Reader) readGzip(dst *bytes.Buffer, wire io.Reader, max int64) error {
	st := gzPool.Get().(*gzState)
	st.br.Reset(wire)
	defer func() {
		// Drop the references to this request's body: the pooled
		// readers outlive it.
		st.br.Reset(nil)
		gzPool.Put(st)
	}()
	limit := int64(dst.Len()) + max + 1
	err := st.zr.Reset(st.br)
	for err == nil {
		st.zr.Multistream(false) // to tell another member from trailing junk
		st.lr = io.LimitedReader{R: &st.zr, N: limit - int64(dst.Len())}
		err = rd.readAll(dst, &st.lr, -1)
		st.lr.R = nil
		if err != nil || st.lr.N <= 0 {
			break
		}
		next, perr := st.br.Peek(2)
		switch {
		case len(next) == 0 && perr == io.EOF:
		case len(next) == 2 && next[0] == 0x1f && next[1] == 0x8b: // another member's magic
			err = st.zr.Reset(st.br)
			continue
		case perr != nil && perr != io.EOF:
			err = perr
		default:
			err = errTrailingData
		}
		break
	}
	return err
}

// classify turns a read error into one of ReadBody's error types.
func classify(err error, enc Encoding, max int64) error {
	if err == nil {
		return nil
	}
	var mbe *http.MaxBytesError
	var slow *TooSlowError
	var cie flate.CorruptInputError
	switch {
	case errors.As(err, &mbe):
		if enc == Identity {
			return &TooLargeError{Max: max, Encoding: enc}
		}
		return &TooLargeError{Max: max, Encoding: enc, Wire: mbe.Limit}
	case errors.As(err, &slow), errors.Is(err, ErrBudget):
		return err
	case enc == Gzip && (err == io.EOF || // Reset found no byte at all (ReadFrom never returns io.EOF)
		errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.As(err, &cie) ||
		errors.Is(err, io.ErrUnexpectedEOF) || err == errTrailingData):
		return &DecodeError{Err: err}
	}
	return &ReadError{Err: err}
}

// Failure is how a front door answers a body ReadBody refused: the status,
// a detail naming the problem, and the headers to set. Each front door
// writes it in its own body format.
type Failure struct {
	Status int
	Detail string
	Header http.Header // Accept-Encoding (415), Connection: close (408), Retry-After (429)
}

// BudgetRetryAfter is the Retry-After of a 429 for a spent body budget.
const BudgetRetryAfter = time.Second

// Answer maps an error of ReadBody to its answer: 415 for an unsupported
// encoding, 413 over a limit, 408 too slow (and the connection is closed),
// 429 when the body budget is spent, 400 for a body that cannot be decoded
// or was not sent whole.
func Answer(err error) Failure {
	var (
		enc  *EncodingError
		big  *TooLargeError
		slow *TooSlowError
	)
	switch {
	case errors.As(err, &enc):
		return Failure{http.StatusUnsupportedMediaType, err.Error(), http.Header{"Accept-Encoding": {AcceptEncoding}}}
	case errors.As(err, &big):
		return Failure{http.StatusRequestEntityTooLarge, err.Error(), nil}
	case errors.As(err, &slow):
		return Failure{http.StatusRequestTimeout, err.Error(), http.Header{"Connection": {"close"}}}
	case errors.Is(err, ErrBudget):
		return Failure{http.StatusTooManyRequests, err.Error() + "; retry later",
			http.Header{"Retry-After": {strconv.Itoa(int(BudgetRetryAfter / time.Second))}}}
	}
	return Failure{http.StatusBadRequest, err.Error(), nil}
}
