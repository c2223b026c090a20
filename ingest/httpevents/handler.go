// Package httpevents is the OpenMeter-compatible CloudEvents front door
// (POST /api/v1/events): it validates a request's events, hands them to a
// producer as one Append, and answers 204 only once they are durable.
//
// Accepted bodies: one event (application/cloudevents+json), a JSON array
// of events (application/cloudevents-batch+json) or either
// (application/json), UTF-8, optionally Content-Encoding gzip (or x-gzip);
// other encodings are refused with 415. Config.MaxBodyBytes bounds the body
// after decompression. Bodies are read under package reqbody's guards: a
// body slower than Config.BodyLimits allow is answered 408, and its bytes
// are reserved against Config.Budget as they arrive (429 when spent).
package httpevents

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/auth"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/ingest/reqbody"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/producer"
)

// Config tunes the handler. Zero fields take their defaults.
type Config struct {
	MaxBodyBytes int64            // default 8 MiB; a gzip body's decompressed size
	Tokens       []string         // if non-empty, require "Authorization: Bearer <one of them>"
	Now          func() time.Time // receive time for events without "time"; default time.Now
	BodyLimits   reqbody.Limits   // minimum body rate; zero fields take reqbody's defaults
	Budget       *reqbody.Budget  // bytes of bodies being read, shared with other front doors; nil: no bound
}

// DefaultMaxBodyBytes is the default request body limit.
const DefaultMaxBodyBytes = 8 << 20

// Front is the front door's label value in the ingest metrics.
const Front = "http-events"

// Media types accepted.
const (
	ctSingle = "application/cloudevents+json"
	ctBatch  = "application/cloudevents-batch+json"
	ctJSON   = "application/json"
)

type handler struct {
	app    producer.Appender
	cfg    Config
	tokens auth.Tokens
	m      *ingestmetrics.Metrics
	log    *slog.Logger
}

// NewHandler returns the handler to mount at "/api/v1/events".
func NewHandler(app producer.Appender, cfg Config, m *ingestmetrics.Metrics, log *slog.Logger) http.Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if m == nil {
		m = ingestmetrics.New(nil)
	}
	if log == nil {
		log = slog.Default()
	}
	h := &handler{app: app, cfg: cfg, m: m, log: log.With("component", "httpevents")}
	h.tokens = auth.New(cfg.Tokens)
	return h
}

// problem is an RFC 9457 problem details body.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// reqState holds a request's pooled buffers.
type reqState struct {
	body    bytes.Buffer
	events  [][]byte
	records [][]byte
	hasTime []bool
	extra   []byte // events with an inserted time, one arena per request

	// gzip bodies only, allocated on first use and reused with the state.
	br *bufio.Reader // buffers the wire body (gzip needs an io.ByteReader)
	zr *gzip.Reader
	lr io.LimitedReader // the decompressed bound
}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code := h.serve(w, r)
	h.m.Requests.WithLabelValues(Front, strconv.Itoa(code)).Inc()
}

func (h *handler) fail(w http.ResponseWriter, code int, detail string, headers ...string) int {
	for i := 0; i+1 < len(headers); i += 2 {
		w.Header().Set(headers[i], headers[i+1])
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	b, _ := json.Marshal(problem{Type: "about:blank", Title: http.StatusText(code), Status: code, Detail: detail})
	_, _ = w.Write(b)
	return code
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request) int {
	if r.Method != http.MethodPost {
		return h.fail(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; use POST", r.Method), "Allow", http.MethodPost)
	}
	if !h.tokens.Allow(r.Header.Get("Authorization")) {
		return h.fail(w, http.StatusUnauthorized, "missing or invalid bearer token", "WWW-Authenticate", "Bearer")
	}
	mode, err := mediaMode(r.Header.Get("Content-Type"))
	if err != nil {
		return h.fail(w, http.StatusUnsupportedMediaType, err.Error())
	}
	gz, err := contentEncoding(r.Header)
	if err != nil {
		return h.fail(w, http.StatusUnsupportedMediaType, err.Error(), "Accept-Encoding", "gzip")
	}

	st := statePool.Get().(*reqState)
	defer func() {
		if st.body.Cap() <= 4*DefaultMaxBodyBytes {
			st.body.Reset()
			clear(st.events)
			clear(st.records)
			st.events, st.records, st.extra, st.hasTime = st.events[:0], st.records[:0], st.extra[:0], st.hasTime[:0]
			statePool.Put(st)
		}
	}()

	// Memory is reserved as the body arrives, never the declared length.
	rd := reqbody.New(w, r, h.cfg.Budget, h.cfg.BodyLimits)
	defer rd.Release()
	if gz {
		if code := h.readGzip(w, rd, st); code != 0 {
			return code
		}
	} else {
		body := http.MaxBytesReader(w, rd, h.cfg.MaxBodyBytes)
		if err := rd.ReadAll(&st.body, body, r.ContentLength); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return h.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", mbe.Limit))
			}
			return h.readFailed(w, err)
		}
	}
	rd.Done()
	b := bytes.TrimSpace(st.body.Bytes())
	if len(b) == 0 {
		return h.fail(w, http.StatusBadRequest, "request body is empty")
	}
	var isArray bool
	st.events, isArray, err = parseBody(st.events, b)
	switch {
	case err != nil:
		return h.fail(w, http.StatusBadRequest, err.Error())
	case isArray && mode == modeSingle:
		return h.fail(w, http.StatusBadRequest, "a JSON array needs Content-Type "+ctBatch)
	case !isArray && mode == modeBatch:
		return h.fail(w, http.StatusBadRequest, "Content-Type "+ctBatch+" needs a JSON array of events")
	case len(st.events) == 0:
		return h.fail(w, http.StatusBadRequest, "the event array is empty")
	}

	// Validate everything first: nothing of a rejected request is enqueued.
	extra := 0
	for i, ev := range st.events {
		info, err := validateEvent(ev)
		if err != nil {
			return h.fail(w, http.StatusBadRequest, fmt.Sprintf("event[%d]: %v", i, err))
		}
		st.hasTime = append(st.hasTime, info.hasTime)
		if !info.hasTime {
			extra += len(ev)
		}
	}
	var stamp []byte // `"time":"...",`
	if extra > 0 {
		stamp = fmt.Appendf(nil, `"time":%q,`, h.cfg.Now().UTC().Format(time.RFC3339Nano))
		st.extra = slices.Grow(st.extra[:0], extra+len(stamp)*len(st.events))
	}
	for i, ev := range st.events {
		if st.hasTime[i] {
			st.records = append(st.records, ev)
			continue
		}
		// Insert the receive time right after the opening brace so a
		// replay of the stored event keeps it. st.extra has room for
		// all of them, so earlier records never move.
		start := len(st.extra)
		st.extra = append(st.extra, '{')
		st.extra = append(st.extra, stamp...)
		st.extra = append(st.extra, ev[1:]...)
		st.records = append(st.records, st.extra[start:len(st.extra):len(st.extra)])
	}

	if err := h.app.Append(r.Context(), format.EventsHeader, st.records); err != nil {
		return h.appendFailed(w, r.Context(), err, len(st.records))
	}
	h.m.Events.WithLabelValues(Front).Add(float64(len(st.records)))
	w.WriteHeader(http.StatusNoContent)
	return http.StatusNoContent
}

// readFailed answers a body that could not be read: too slow (408, and the
// connection is closed), the body budget spent (429), or the client's
// error (400).
func (h *handler) readFailed(w http.ResponseWriter, err error) int {
	var slow *reqbody.TooSlowError
	switch {
	case errors.As(err, &slow):
		return h.fail(w, http.StatusRequestTimeout, slow.Error(), "Connection", "close")
	case errors.Is(err, reqbody.ErrBudget):
		return h.fail(w, http.StatusTooManyRequests, err.Error()+"; retry later", "Retry-After", "1")
	}
	return h.fail(w, http.StatusBadRequest, "reading request body: "+err.Error())
}

// errTrailingData is wire data after the last gzip member.
var errTrailingData = errors.New("trailing data after the gzip stream")

// readGzip decompresses the request body into st.body. It stops at
// MaxBodyBytes+1 decompressed bytes (so a small "zip bomb" costs at most the
// limit) and returns the status it answered, or 0 on success. Concatenated
// gzip members are one body; anything else after the last member is an
// error.
func (h *handler) readGzip(w http.ResponseWriter, rd *reqbody.Reader, st *reqState) int {
	max := h.cfg.MaxBodyBytes
	// The limit is on the decompressed size; the wire bound only stops a
	// body that never ends (a stream of empty deflate blocks). It leaves
	// room for gzip without compression (5 bytes per 64 KiB block + header),
	// so any body within the limit is accepted however it was compressed.
	wire := max + max/64 + 4096
	if wire < max { // overflow
		wire = max
	}
	body := http.MaxBytesReader(w, rd, wire)
	if st.br == nil {
		st.br = bufio.NewReader(body)
		st.zr = new(gzip.Reader)
	} else {
		st.br.Reset(body)
	}
	// Drop the references to this request's body once done: the pooled
	// readers outlive it.
	defer st.br.Reset(nil)
	err := st.zr.Reset(st.br)
	for err == nil {
		st.zr.Multistream(false) // to tell another member from trailing junk
		st.lr = io.LimitedReader{R: st.zr, N: max + 1 - int64(st.body.Len())}
		err = rd.ReadAll(&st.body, &st.lr, -1)
		st.lr.R = nil
		if err != nil || int64(st.body.Len()) > max {
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
	rd.Done()
	switch {
	case err == nil && int64(st.body.Len()) > max:
		return h.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes after gzip decompression", max))
	case err == nil:
		return 0
	}
	var mbe *http.MaxBytesError
	var cie flate.CorruptInputError
	switch {
	case errors.As(err, &mbe):
		return h.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("gzip request body is larger than %d bytes on the wire (the limit is %d bytes decompressed)", mbe.Limit, max))
	case err == io.EOF:
		// Reset found no byte at all (ReadFrom never returns io.EOF).
		return h.fail(w, http.StatusBadRequest, "request body is empty (Content-Encoding: gzip)")
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum), errors.As(err, &cie),
		errors.Is(err, io.ErrUnexpectedEOF), err == errTrailingData:
		// "gzip: invalid header" would say gzip twice.
		return h.fail(w, http.StatusBadRequest, "request body is not valid gzip (Content-Encoding: gzip): "+strings.TrimPrefix(err.Error(), "gzip: "))
	}
	return h.readFailed(w, err)
}

// contentEncoding reports whether the body is gzip-encoded, and refuses
// codings other than gzip, x-gzip and identity. Absent means identity.
func contentEncoding(hdr http.Header) (gz bool, err error) {
	vals := hdr["Content-Encoding"]
	if len(vals) == 0 {
		return false, nil
	}
	n := 0
	for _, v := range vals {
		for c := range strings.SplitSeq(v, ",") {
			switch c = strings.TrimSpace(c); {
			case c == "" || strings.EqualFold(c, "identity"):
			case strings.EqualFold(c, "gzip") || strings.EqualFold(c, "x-gzip"):
				gz = true
				n++
			default:
				n = 2
			}
		}
	}
	if n > 1 {
		return false, fmt.Errorf("unsupported Content-Encoding %q; accepted: gzip, x-gzip, identity (or no Content-Encoding header)", strings.Join(vals, ", "))
	}
	return gz, nil
}

func (h *handler) appendFailed(w http.ResponseWriter, ctx context.Context, err error, n int) int {
	switch {
	case errors.Is(err, producer.ErrBackpressure):
		return h.fail(w, http.StatusTooManyRequests, "the ingest buffer is full; retry later", "Retry-After", "1")
	case errors.Is(err, producer.ErrClosed):
		return h.fail(w, http.StatusServiceUnavailable, "the server is shutting down; retry later", "Retry-After", "5")
	}
	var ce *manifest.CorruptError
	if errors.As(err, &ce) {
		// The producer logged it once; the client learns why too, and
		// that retrying helps only once an operator has repaired it.
		return h.fail(w, http.StatusServiceUnavailable, "the queue's manifest is damaged and nothing can be committed until an operator repairs it (bucketq repair manifest); the events were not stored; retry later", "Retry-After", "30")
	}
	if ctx.Err() != nil {
		h.log.Info("client went away before its events were committed", "events", n, "err", err)
	} else {
		h.log.Warn("events not durably committed", "events", n, "err", err)
	}
	return h.fail(w, http.StatusServiceUnavailable, "the events could not be stored durably; retry the request", "Retry-After", "1")
}

type mode uint8

const (
	modeSingle mode = iota
	modeBatch
	modeEither
)

// mediaMode maps a Content-Type to what the body may hold.
func mediaMode(ct string) (mode, error) {
	if ct == "" {
		return 0, fmt.Errorf("missing Content-Type; use %s, %s or %s", ctSingle, ctBatch, ctJSON)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, fmt.Errorf("invalid Content-Type %q: %v", ct, err)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return 0, fmt.Errorf("unsupported charset %q; JSON must be UTF-8", cs)
	}
	switch mt {
	case ctSingle:
		return modeSingle, nil
	case ctBatch:
		return modeBatch, nil
	case ctJSON:
		return modeEither, nil
	}
	return 0, fmt.Errorf("unsupported Content-Type %q; use %s, %s or %s", mt, ctSingle, ctBatch, ctJSON)
}
