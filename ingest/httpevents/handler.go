// Package httpevents is the OpenMeter-compatible CloudEvents front door
// (POST /api/v1/events): it validates a request's events, hands them to a
// producer as one Append, and answers 204 only once they are durable.
//
// Accepted bodies: one event (application/cloudevents+json), a JSON array
// of events (application/cloudevents-batch+json) or either
// (application/json), UTF-8. Bodies are read by package reqbody, the body
// reader shared with OTLP/HTTP: optionally Content-Encoding gzip (or
// x-gzip), other encodings refused with 415; Config.MaxBodyBytes bounds the
// body after decompression; a body slower than Config.BodyLimits allow is
// answered 408, and its bytes are reserved against Config.Budget as they
// arrive (429 when spent). Config.Tokens are checked by auth.Tokens.HTTP
// around the handler, as for every HTTP front door.
package httpevents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"slices"
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
	app producer.Appender
	cfg Config
	m   *ingestmetrics.Front
	log *slog.Logger
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
	h := &handler{app: app, cfg: cfg, m: m.Front(Front), log: log.With("component", "httpevents")}
	// The token check every HTTP front door wraps itself in.
	return auth.New(cfg.Tokens).HTTP(h, h.unauthorized)
}

// unauthorized answers a request without an accepted token (auth.Tokens.HTTP
// has set WWW-Authenticate): a problem+json 401, counted.
func (h *handler) unauthorized(w http.ResponseWriter, _ *http.Request) {
	code := h.fail(w, http.StatusUnauthorized, auth.RejectMessage)
	h.m.Request(code)
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
	rd      reqbody.Reader
}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code := h.serve(w, r)
	h.m.Request(code)
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
	mode, err := mediaMode(r.Header.Get("Content-Type"))
	if err != nil {
		return h.fail(w, http.StatusUnsupportedMediaType, err.Error())
	}

	st := statePool.Get().(*reqState)
	defer func() {
		st.rd.Clear() // after rd.Release (deferred later, so run first)
		if st.body.Cap() <= 4*DefaultMaxBodyBytes {
			st.body.Reset()
			clear(st.events)
			clear(st.records)
			st.events, st.records, st.extra, st.hasTime = st.events[:0], st.records[:0], st.extra[:0], st.hasTime[:0]
			statePool.Put(st)
		}
	}()

	// Memory is reserved as the body arrives, never the declared length.
	rd := &st.rd
	rd.Start(w, r, h.cfg.Budget, h.cfg.BodyLimits)
	defer rd.Release()
	if err := rd.ReadBody(&st.body, h.cfg.MaxBodyBytes); err != nil {
		// The encoding, the limits, a slow body, the budget: the same
		// errors as OTLP/HTTP's, as problem+json.
		f := reqbody.Answer(err)
		maps.Copy(w.Header(), f.Header)
		return h.fail(w, f.Status, f.Detail)
	}
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
	h.m.Events(len(st.records))
	w.WriteHeader(http.StatusNoContent)
	return http.StatusNoContent
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
	// What clients send, exactly: mime.ParseMediaType would return the same
	// type and no parameters, at the cost of a map per request.
	if m, ok := modeOf(ct); ok {
		return m, nil
	}
	return mediaModeParsed(ct)
}

// mediaModeParsed is mediaMode without its fast path: the Content-Type
// parsed, its charset checked.
func mediaModeParsed(ct string) (mode, error) {
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
	if m, ok := modeOf(mt); ok {
		return m, nil
	}
	return 0, fmt.Errorf("unsupported Content-Type %q; use %s, %s or %s", mt, ctSingle, ctBatch, ctJSON)
}

// modeOf maps a bare media type to its mode.
func modeOf(mt string) (mode, bool) {
	switch mt {
	case ctSingle:
		return modeSingle, true
	case ctBatch:
		return modeBatch, true
	case ctJSON:
		return modeEither, true
	}
	return 0, false
}
