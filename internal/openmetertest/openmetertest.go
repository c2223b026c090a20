// Package openmetertest is an in-process fake of the OpenMeter and Kong
// Konnect event ingestion API, for tests: it enforces the documented rules of
// POST /api/v1/events (OpenMeter, 204) or POST /v3/openmeter/events (Konnect,
// 202), records what it accepted, counts duplicates by (id, source), and can
// inject throttling, outages, latency and poison events.
//
// Rules enforced, from OpenMeter's API spec (api/spec/src/events.tsp):
//   - POST only (405 otherwise), the configured path only (404 otherwise);
//   - Authorization: Bearer <token> when Options.Token is set (401 otherwise);
//   - Content-Type media type application/cloudevents+json (one event),
//     application/cloudevents-batch+json (an array), or application/json
//     (either; OpenMeter's ingestEventsJson operation) — anything else 415;
//   - every event: non-empty id, source, type and subject; specversion "1.0";
//     time, when present and not null, RFC 3339; datacontenttype, when
//     present and not null, "application/json"; data an object or null;
//   - one bad event (or one event matched by the poison predicate) rejects
//     the WHOLE request with 400 application/problem+json; nothing of it is
//     recorded.
//
// Validation is one pass over the body's bytes that checks its JSON syntax
// and the rules together (scan.go): no maps, no copies; an accepted Event's Raw and Data are
// slices of the request body. BenchmarkDecodeBody compares it with
// json.Valid on the same bytes.
package openmetertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Mode selects which API the server imitates.
type Mode int

const (
	// OpenMeter serves POST /api/v1/events and answers 204.
	OpenMeter Mode = iota
	// Konnect serves POST /v3/openmeter/events and answers 202.
	Konnect
)

// Path returns the ingestion path of the mode.
func (m Mode) Path() string {
	if m == Konnect {
		return "/v3/openmeter/events"
	}
	return "/api/v1/events"
}

// Status returns the success status of the mode.
func (m Mode) Status() int {
	if m == Konnect {
		return http.StatusAccepted
	}
	return http.StatusNoContent
}

// Event is one accepted CloudEvent.
type Event struct {
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	Type        string          `json:"type"`
	Subject     string          `json:"subject"`
	SpecVersion string          `json:"specversion"`
	Time        string          `json:"-"`
	Data        json.RawMessage `json:"-"` // nil when absent or null
	Raw         json.RawMessage `json:"-"` // the event as received
}

// Options configure a Server. The zero value is an OpenMeter server without
// authentication, poison predicate or latency.
type Options struct {
	Mode  Mode
	Token string // if set, requests need "Authorization: Bearer <Token>"
	// Poison, if set, rejects a request with 400 when any of its events
	// matches, exactly like an invalid event. See PoisonFlag.
	Poison func(Event) bool
	// Latency delays every response.
	Latency time.Duration
	// MaxBodyBytes bounds a request body (413 above it); default 16 MiB.
	MaxBodyBytes int64
}

// PoisonFlag is a poison predicate: events whose data has "poison": true.
func PoisonFlag(ev Event) bool {
	var d struct {
		Poison bool `json:"poison"`
	}
	if len(ev.Data) == 0 || json.Unmarshal(ev.Data, &d) != nil {
		return false
	}
	return d.Poison
}

type fault struct {
	status     int
	retryAfter string
	remaining  int // <0: until ClearFaults
}

type key struct{ id, source string }

// Server is the fake API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL (http://127.0.0.1:port).
	URL string
	// Endpoint is the full ingestion URL (URL + the mode's path).
	Endpoint string

	srv    *httptest.Server // nil for NewInMemory
	client *http.Client
	opts   Options

	mu       sync.Mutex
	events   [][]Event // one slice per accepted request, in arrival order
	accepted int       // events in all of them
	seen     map[key]int
	dups     int
	statuses map[int]int
	faults   []*fault
	latency  time.Duration
	poison   func(Event) bool
	changed  chan struct{} // closed and replaced on every accepted request
}

// New starts a server on 127.0.0.1.
func New(opts Options) *Server {
	s := newServer(opts)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.client = s.srv.Client()
	s.URL = s.srv.URL
	s.Endpoint = s.srv.URL + opts.Mode.Path()
	return s
}

// InMemoryURL is the base URL of a NewInMemory server.
const InMemoryURL = "http://openmeter.test"

// NewInMemory returns a server without a listener, for tests in a
// testing/synctest bubble, which cannot use the network: only its Client
// reaches it (HandlerClient), at InMemoryURL. Made in a bubble, it belongs
// to that bubble.
func NewInMemory(opts Options) *Server {
	s := newServer(opts)
	s.client = HandlerClient(http.HandlerFunc(s.serve))
	s.URL = InMemoryURL
	s.Endpoint = InMemoryURL + opts.Mode.Path()
	return s
}

func newServer(opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	return &Server{
		opts:     opts,
		seen:     map[key]int{},
		statuses: map[int]int{},
		latency:  opts.Latency,
		poison:   opts.Poison,
		changed:  make(chan struct{}),
	}
}

// Client returns an HTTP client that reaches the server: over loopback
// for New, straight to its handler for NewInMemory.
func (s *Server) Client() *http.Client { return s.client }

// Close shuts the server down (nothing to do for NewInMemory).
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
}

// HandlerClient returns an HTTP client whose requests h serves in the
// calling goroutine, with no network and no goroutine of its own: what a
// test in a testing/synctest bubble can use instead of an httptest.Server.
// The handler sees the request's context, so a client giving up (its
// context or timeout) cancels a handler that waits on it; the response
// then fails with the context's error, as over a connection.
func HandlerClient(h http.Handler) *http.Client {
	return &http.Client{Transport: handlerTransport{h}}
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sreq := req.Clone(req.Context())
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "192.0.2.1:1234"
	if sreq.Host == "" {
		sreq.Host = req.URL.Host
	}
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, sreq)
	sreq.Body.Close()
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	resp := w.Result()
	resp.Request = req
	return resp, nil
}

// Events returns every accepted event in arrival order, duplicates included.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, 0, s.accepted)
	for _, evs := range s.events {
		out = append(out, evs...)
	}
	return out
}

// Accepted is the number of accepted events, duplicates included
// (len(Events()) without the copy).
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Distinct is the number of distinct (id, source) pairs accepted.
func (s *Server) Distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// Duplicates is the number of accepted events whose (id, source) had been
// accepted before.
func (s *Server) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dups
}

// Requests returns how many requests were answered with status.
func (s *Server) Requests(status int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statuses[status]
}

// RequestsByStatus returns a copy of the response counts by status.
func (s *Server) RequestsByStatus() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]int, len(s.statuses))
	for k, v := range s.statuses {
		out[k] = v
	}
	return out
}

// FailNext makes the next n authenticated POSTs to the endpoint fail with
// status (e.g. 429 or 503) and, if retryAfter is not empty, a Retry-After
// header with that value (seconds or an HTTP date). n < 0 fails until
// ClearFaults. Faults queue up in call order.
func (s *Server) FailNext(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{status: status, retryAfter: retryAfter, remaining: n})
}

// ClearFaults drops every pending injected failure.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetLatency changes the delay before every response.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetPoison changes the poison predicate (nil: none).
func (s *Server) SetPoison(p func(Event) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.poison = p
}

// WaitEvents waits until at least n events were accepted or the timeout
// passes, and reports whether n were reached.
func (s *Server) WaitEvents(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, ch := s.accepted, s.changed
		s.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// Problem is the RFC 7807 body of an error response.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance,omitempty"`
}

func (s *Server) problem(w http.ResponseWriter, r *http.Request, status int, format string, args ...any) {
	s.count(status)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{
		Type: "about:blank", Title: http.StatusText(status), Status: status,
		Detail: fmt.Sprintf(format, args...), Instance: r.URL.Path,
	})
}

func (s *Server) count(status int) {
	s.mu.Lock()
	s.statuses[status]++
	s.mu.Unlock()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	lat := s.latency
	s.mu.Unlock()
	if lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			s.count(499) // client went away
			return
		}
	}
	if r.URL.Path != s.opts.Mode.Path() {
		s.problem(w, r, http.StatusNotFound, "no route %s", r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.problem(w, r, http.StatusMethodNotAllowed, "method %s not allowed, use POST", r.Method)
		return
	}
	if s.opts.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
		w.Header().Set("WWW-Authenticate", "Bearer")
		s.problem(w, r, http.StatusUnauthorized, "missing or invalid bearer token")
		return
	}
	if f := s.takeFault(); f != nil {
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		s.problem(w, r, f.status, "injected failure")
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = ""
	}
	var wantBatch, wantSingle bool
	switch mt {
	case "application/cloudevents+json":
		wantSingle = true
	case "application/cloudevents-batch+json":
		wantBatch = true
	case "application/json":
	default:
		s.problem(w, r, http.StatusUnsupportedMediaType, "unsupported Content-Type %q", r.Header.Get("Content-Type"))
		return
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes), r.ContentLength, s.opts.MaxBodyBytes)
	if err != nil {
		s.problem(w, r, http.StatusRequestEntityTooLarge, "reading body: %v", err)
		return
	}
	evs, err := decodeBody(bytes.TrimSpace(body), wantSingle, wantBatch)
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "%v", err)
		return
	}
	s.mu.Lock()
	poison := s.poison
	s.mu.Unlock()
	if poison != nil {
		for i, ev := range evs {
			if poison(ev) {
				s.problem(w, r, http.StatusBadRequest, "event[%d] (id %q, source %q): rejected as poison", i, ev.ID, ev.Source)
				return
			}
		}
	}
	s.mu.Lock()
	for _, ev := range evs {
		k := key{ev.ID, ev.Source}
		if s.seen[k] > 0 {
			s.dups++
		}
		s.seen[k]++
	}
	s.events = append(s.events, evs)
	s.accepted += len(evs)
	s.statuses[s.opts.Mode.Status()]++
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	w.WriteHeader(s.opts.Mode.Status())
}

// readBody reads a request body into one buffer sized from its
// Content-Length (when known and within max), without io.ReadAll's regrowth.
func readBody(r io.Reader, length, max int64) ([]byte, error) {
	var buf bytes.Buffer
	if length > 0 && length <= max {
		buf.Grow(int(length) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

func (s *Server) takeFault() *fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.faults) > 0 {
		f := s.faults[0]
		if f.remaining == 0 {
			s.faults = s.faults[1:]
			continue
		}
		if f.remaining > 0 {
			f.remaining--
		}
		return f
	}
	return nil
}

// Validate checks one event against OpenMeter's rules and decodes it. The
// Event's Raw and Data are copies: raw may be reused.
func Validate(raw json.RawMessage) (Event, error) {
	ev, err := scanOne(bytes.Clone(bytes.TrimSpace(raw)))
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			return Event{}, fmt.Errorf("not a JSON object: invalid JSON: %w", err)
		}
		return Event{}, err
	}
	return ev, nil
}

// ValidateBatch checks a whole application/cloudevents-batch+json body as
// the server does (JSON syntax, then every event; one bad event fails it)
// and returns its events. They alias body, which must not change after.
func ValidateBatch(body []byte) ([]Event, error) {
	return decodeBody(bytes.TrimSpace(body), false, true)
}

// RetryAfterDate formats t as an HTTP date for FailNext.
func RetryAfterDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// RetryAfterSeconds formats d as whole seconds for FailNext.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int(d / time.Second))
}

// Redirector is a sink that answers every POST to /api/v1/events with a
// redirect of one status to /final/api/v1/events, and 204 there: what a
// misconfigured proxy or a moved API looks like. A client must not follow
// it with the body (OpenMeter's ingest takes no redirects), so Final
// should stay 0.
type Redirector struct {
	Redirected, Final atomic.Int64 // requests seen at each path
	mux               *http.ServeMux
}

// NewRedirector returns a Redirector answering status (301, 302, 303, 307
// or 308); serve it with httptest.NewServer or HandlerClient.
func NewRedirector(status int) *Redirector {
	r := &Redirector{mux: http.NewServeMux()}
	r.mux.HandleFunc("/api/v1/events", func(w http.ResponseWriter, req *http.Request) {
		r.Redirected.Add(1)
		_, _ = io.Copy(io.Discard, req.Body)
		http.Redirect(w, req, "/final/api/v1/events", status)
	})
	r.mux.HandleFunc("/final/", func(w http.ResponseWriter, req *http.Request) {
		r.Final.Add(1)
		_, _ = io.Copy(io.Discard, req.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	return r
}

func (r *Redirector) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.mux.ServeHTTP(w, req) }
