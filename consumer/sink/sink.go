// Package sink delivers batches of CloudEvents to their destination: an
// OpenMeter (/api/v1/events) or Kong Konnect (/v3/openmeter/events) HTTP
// endpoint, an NDJSON file, or stdout. A sink makes one attempt per Send and
// reports what happened; retry policy belongs to the consumer.
package sink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sink delivers events. Send either delivers every event (nil) or reports
// an error; it never delivers a part silently.
type Sink interface {
	Send(ctx context.Context, events []json.RawMessage) error
	Close() error
}

// BatchContentType is the Content-Type of an HTTP sink request.
const BatchContentType = "application/cloudevents-batch+json"

// HTTPError is a non-2xx answer of an HTTP sink.
type HTTPError struct {
	Status     int
	RetryAfter time.Duration // parsed Retry-After (seconds or HTTP date); 0 if absent
	Body       string        // response body, truncated to maxErrorBody
	Location   string        // the Location header of a 3xx answer (redirects are never followed)
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("sink: HTTP %d %s", e.Status, http.StatusText(e.Status))
	if e.Status >= 300 && e.Status < 400 {
		// A followed redirect turns the POST into a GET without the
		// events, so the sink never follows one: the operator must point
		// the sink at the final URL.
		msg += fmt.Sprintf(" to Location %q: the sink does not follow redirects; set the sink URL to the final endpoint", e.Location)
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if b := strings.TrimSpace(e.Body); b != "" {
		msg += ": " + b
	}
	return msg
}

const maxErrorBody = 64 << 10

// FromURL opens a sink from its target:
//
//	http(s)://host/path  the full ingestion endpoint (OpenMeter or Konnect)
//	file:PATH            NDJSON, appended and fsynced on every Send
//	stdout               NDJSON on standard output
//
// token, if set, is sent as "Authorization: Bearer <token>" (HTTP only).
func FromURL(target, token string, log *slog.Logger) (Sink, error) {
	return FromURLWith(target, token, HTTPOptions{}, log)
}

// FromURLWith is FromURL with the options of an http(s) sink.
func FromURLWith(target, token string, opts HTTPOptions, log *slog.Logger) (Sink, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case target == "stdout" || target == "-":
		return &ndjson{w: os.Stdout}, nil
	case strings.HasPrefix(target, "file:"):
		path := strings.TrimPrefix(target, "file:")
		path = strings.TrimPrefix(path, "//")
		if path == "" {
			return nil, fmt.Errorf("sink %q: empty file path", target)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("sink %q: %w", target, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("sink %q: %w", target, err)
		}
		if !fi.Mode().IsRegular() {
			// A device or a pipe (file:/dev/null, a FIFO) holds nothing
			// to make durable, and fsync fails on it (EINVAL): written
			// as to stdout.
			return &ndjson{w: f, f: f}, nil
		}
		return &ndjson{w: f, f: f, fsync: true}, nil
	case strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://"):
		u, err := url.Parse(target)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("sink %q: not a valid endpoint URL", target)
		}
		if u.Path == "" || u.Path == "/" {
			log.Warn("sink URL has no path; it must be the full ingestion endpoint, e.g. .../api/v1/events or .../v3/openmeter/events", "url", target)
		}
		return NewHTTP(target, token, opts), nil
	}
	return nil, fmt.Errorf("sink %q: want http(s)://... endpoint, file:PATH or stdout", target)
}

// HTTPOptions tune an HTTP sink.
type HTTPOptions struct {
	Timeout   time.Duration // per request; default 30s
	Client    *http.Client  // default: a client with Timeout; used through a copy that never follows redirects
	UserAgent string        // default "bucketq"
	// IdleConnsPerHost sizes the keep-alive pool of the default client to
	// the requests the caller keeps in flight (the consumer's
	// sink_concurrency): Go's default transport keeps only 2 idle
	// connections per host, so concurrent requests beyond 2 would each
	// open (and TLS-handshake) a new connection. Default
	// DefaultIdleConnsPerHost; ignored with Client.
	IdleConnsPerHost int
}

// DefaultIdleConnsPerHost is the keep-alive pool of the default client: the
// consumer's default cap on sink requests in flight.
const DefaultIdleConnsPerHost = 32

// HTTP posts each Send as one JSON array of events.
type HTTP struct {
	url    string
	token  string
	client *http.Client
	ua     string
}

// NewHTTP returns an HTTP sink for the full endpoint URL.
func NewHTTP(endpoint, token string, opts HTTPOptions) *HTTP {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.IdleConnsPerHost <= 0 {
		opts.IdleConnsPerHost = DefaultIdleConnsPerHost
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = opts.IdleConnsPerHost
	tr.MaxIdleConns = max(tr.MaxIdleConns, opts.IdleConnsPerHost)
	client := &http.Client{Timeout: opts.Timeout, Transport: tr}
	if opts.Client != nil {
		c := *opts.Client // a copy: the caller's client keeps its own redirect policy
		client = &c
	}
	// Never follow a redirect: Go would re-send a 301/302/303 as a GET
	// without the body, and its 2xx would count as delivered. A 3xx is
	// returned as is and classified Operator (the queue is held).
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if opts.UserAgent == "" {
		opts.UserAgent = "bucketq"
	}
	return &HTTP{url: endpoint, token: token, client: client, ua: opts.UserAgent}
}

// StatusSender is implemented by sinks that can say which HTTP status
// delivered a batch (for metrics); status is 0 when there was no response.
type StatusSender interface {
	SendStatus(ctx context.Context, events []json.RawMessage) (status int, err error)
}

// Send implements Sink: 2xx is delivered, any other status is an
// *HTTPError, a transport failure is a wrapped error.
func (h *HTTP) Send(ctx context.Context, events []json.RawMessage) error {
	_, err := h.SendStatus(ctx, events)
	return err
}

// SendStatus implements StatusSender.
func (h *HTTP) SendStatus(ctx context.Context, events []json.RawMessage) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	body, err := encodeArray(events)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("sink: build request for %s: %w", h.url, err)
	}
	req.Header.Set("Content-Type", BatchContentType)
	req.Header.Set("User-Agent", h.ua)
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("sink: POST %s: %w", h.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return resp.StatusCode, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	he := &HTTPError{
		Status:     resp.StatusCode,
		RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Body:       string(b),
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		he.Location = resp.Header.Get("Location")
	}
	return resp.StatusCode, he
}

// Close implements Sink.
func (h *HTTP) Close() error {
	h.client.CloseIdleConnections()
	return nil
}

// ParseRetryAfter parses a Retry-After value, delay-seconds or HTTP date
// (relative to now). Absent, invalid or past values are 0.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(24*time.Hour/time.Second) {
			n = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// encodeArray joins events into one JSON array. The events are valid JSON:
// the consumer checks every converter result once before it reaches a sink
// (and a server that still refused one would 400 it into a dead letter).
func encodeArray(events []json.RawMessage) ([]byte, error) {
	n := 2
	for _, e := range events {
		n += len(e) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, e := range events {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']'), nil
}

// ndjson writes one compact JSON event per line.
type ndjson struct {
	mu    sync.Mutex
	w     io.Writer
	f     *os.File // the file opened for file:PATH; nil for stdout
	fsync bool     // fsync f after each Send: not for a device or a pipe
}

func (s *ndjson) Send(ctx context.Context, events []json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf bytes.Buffer
	for i, e := range events {
		if err := json.Compact(&buf, e); err != nil {
			return fmt.Errorf("sink: event %d of %d is not valid JSON: %w", i, len(events), err)
		}
		buf.WriteByte('\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bw := bufio.NewWriter(s.w)
	if _, err := bw.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("sink: write: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("sink: write: %w", err)
	}
	if s.fsync {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("sink: fsync %s: %w", s.f.Name(), err)
		}
	}
	return nil
}

func (s *ndjson) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// IsHTTPStatus reports whether err is an *HTTPError with one of statuses.
func IsHTTPStatus(err error, statuses ...int) bool {
	var he *HTTPError
	if !errors.As(err, &he) {
		return false
	}
	for _, s := range statuses {
		if he.Status == s {
			return true
		}
	}
	return false
}
