package reqbody_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/testutil"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/auth"
	"github.com/bucketq/bucketq/ingest/httpevents"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/ingest/otlp"
	"github.com/bucketq/bucketq/ingest/reqbody"
)

// appender records what a front door hands to the producer.
type appender struct {
	mu      sync.Mutex
	records [][]byte
}

func (a *appender) Append(_ context.Context, _ format.Header, recs [][]byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range recs {
		a.records = append(a.records, bytes.Clone(r))
	}
	return nil
}

// doorConfig is what both front doors are configured with.
type doorConfig struct {
	max    int64
	budget *reqbody.Budget
	tokens []string
}

// door is one HTTP front door under test: how to build it, a valid
// payload of the given size (at least), and how to read its answers.
type door struct {
	name, path, ct string
	ok             int // status of a stored request
	front          string
	payload        func(t *testing.T, size int) []byte
	handler        func(app *appender, cfg doorConfig, m *ingestmetrics.Metrics) http.Handler
	detail         func(t *testing.T, w *httptest.ResponseRecorder) string // the error's text
}

var log = slog.New(slog.NewTextHandler(io.Discard, nil))

var doors = []door{
	{
		name: "events", path: "/api/v1/events", ct: "application/cloudevents+json", ok: http.StatusNoContent, front: httpevents.Front,
		payload: func(t *testing.T, size int) []byte {
			ev := `{"id":"a","source":"s","type":"t","subject":"u","specversion":"1.0","time":"2026-01-01T00:00:00Z","data":{"pad":"`
			pad := max(0, size-len(ev)-3)
			return []byte(ev + strings.Repeat("x", pad) + `"}}`)
		},
		handler: func(app *appender, cfg doorConfig, m *ingestmetrics.Metrics) http.Handler {
			return httpevents.NewHandler(app, httpevents.Config{MaxBodyBytes: cfg.max, Budget: cfg.budget, Tokens: cfg.tokens}, m, log)
		},
		detail: func(t *testing.T, w *httptest.ResponseRecorder) string {
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("events: error Content-Type %q", ct)
			}
			var p struct {
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatalf("events: answer is not problem+json: %v: %q", err, w.Body)
			}
			if p.Status != w.Code {
				t.Errorf("events: problem status %d, answer %d", p.Status, w.Code)
			}
			return p.Detail
		},
	},
	{
		name: "otlp-http", path: "/v1/logs", ct: otlp.ContentTypeProtobuf, ok: http.StatusOK, front: otlp.FrontHTTP,
		payload: func(t *testing.T, size int) []byte {
			pad := size
			for range 8 { // the varint lengths settle in a step or two
				req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{
					TimeUnixNano: 1, Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: strings.Repeat("x", max(1, pad))}},
				}}}}}}}
				b, err := proto.Marshal(req)
				if err != nil {
					t.Fatal(err)
				}
				if len(b) == size || pad <= 1 {
					return b
				}
				pad += size - len(b)
			}
			t.Fatalf("no OTLP request of %d bytes", size)
			return nil
		},
		handler: func(app *appender, cfg doorConfig, m *ingestmetrics.Metrics) http.Handler {
			return otlp.NewHTTPHandler(app, otlp.HTTPConfig{MaxBodyBytes: cfg.max, Budget: cfg.budget, Tokens: cfg.tokens}, m, log)
		},
		detail: func(t *testing.T, w *httptest.ResponseRecorder) string {
			if ct := w.Header().Get("Content-Type"); ct != otlp.ContentTypeProtobuf {
				t.Errorf("otlp-http: error Content-Type %q", ct)
			}
			var st spb.Status
			if err := proto.Unmarshal(w.Body.Bytes(), &st); err != nil {
				t.Fatalf("otlp-http: answer is not a google.rpc.Status: %v", err)
			}
			return st.Message
		},
	},
}

func gzipLevel(t *testing.T, level int, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t *testing.T, b []byte) []byte { return gzipLevel(t, gzip.BestCompression, b) }

// stalledGzip is b gzip-compressed after n bytes of empty deflate blocks:
// valid, and no larger decompressed, but long on the wire.
func stalledGzip(t *testing.T, b []byte, n int) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for buf.Len() < n {
		zw.Flush() // an empty stored block
	}
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// TestFrontDoorsReadBodiesAlike runs the same bodies against
// /api/v1/events and OTLP/HTTP: both must answer with the same status,
// the same error text (as problem+json detail and as google.rpc.Status
// message) and the same headers, and store the payload only when both
// succeed.
func TestFrontDoorsReadBodiesAlike(t *testing.T) {
	const size = 4096 // payload bytes
	cases := []struct {
		name   string
		enc    string
		body   func(t *testing.T, payload []byte) []byte
		max    func(n int64) int64 // max_body_bytes for a payload of n bytes
		budget int64
		status int    // 0: the door's success status
		detail string // in the error text of both
		header [2]string
	}{
		{name: "identity", body: func(_ *testing.T, p []byte) []byte { return p }},
		{name: "gzip", enc: "gzip", body: gz},
		{name: "x-gzip in capitals", enc: "X-GZIP", body: gz},
		{name: "two gzip members", enc: "gzip", body: func(t *testing.T, p []byte) []byte { return append(gz(t, p[:100]), gz(t, p[100:])...) }},
		{name: "gzip at the limit, larger than it on the wire", enc: "gzip",
			body: func(t *testing.T, p []byte) []byte { return gzipLevel(t, gzip.NoCompression, p) },
			max:  func(n int64) int64 { return n }},
		{name: "zstd", enc: "zstd", status: 415, detail: `unsupported Content-Encoding "zstd"`, header: [2]string{"Accept-Encoding", "gzip"},
			body: func(t *testing.T, p []byte) []byte {
				zw, _ := zstd.NewWriter(nil)
				defer zw.Close()
				return zw.EncodeAll(p, nil)
			}},
		{name: "bad encoding", enc: "br", status: 415, detail: `unsupported Content-Encoding "br"`, header: [2]string{"Accept-Encoding", "gzip"}, body: gz},
		{name: "gzip twice", enc: "gzip, gzip", status: 415, detail: `"gzip, gzip"`, body: func(t *testing.T, p []byte) []byte { return gz(t, gz(t, p)) }},
		{name: "not gzip", enc: "gzip", status: 400, detail: "not valid gzip (Content-Encoding: gzip): invalid header",
			body: func(_ *testing.T, p []byte) []byte { return p }},
		{name: "truncated gzip", enc: "gzip", status: 400, detail: "not valid gzip (Content-Encoding: gzip): unexpected EOF",
			body: func(t *testing.T, p []byte) []byte { z := gz(t, p); return z[:len(z)-12] }},
		{name: "gzip with trailing data", enc: "gzip", status: 400, detail: "trailing data after the gzip stream",
			body: func(t *testing.T, p []byte) []byte { return append(gz(t, p), "junk"...) }},
		{name: "empty gzip body", enc: "gzip", status: 400, detail: "request body is empty (Content-Encoding: gzip)",
			body: func(*testing.T, []byte) []byte { return nil }},
		{name: "oversize identity", status: 413, detail: "request body is larger than 4095 bytes",
			body: func(_ *testing.T, p []byte) []byte { return p },
			max:  func(n int64) int64 { return n - 1 }},
		{name: "oversize decompressed", enc: "gzip", status: 413, detail: "request body is larger than 4095 bytes after gzip decompression",
			body: gz,
			max:  func(n int64) int64 { return n - 1 }},
		{name: "oversize compressed", enc: "gzip", status: 413,
			detail: "gzip request body is larger than 8256 bytes on the wire (the limit is 4096 bytes decompressed)",
			body:   func(t *testing.T, p []byte) []byte { return stalledGzip(t, p, 16<<10) },
			max:    func(n int64) int64 { return n }},
		{name: "body budget spent", enc: "gzip", status: 429, budget: 1024, detail: "memory bound for request bodies", header: [2]string{"Retry-After", "1"}, body: gz},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var details []string
			for _, d := range doors {
				payload := d.payload(t, size)
				if len(payload) != size { // the limits in the details are of this size
					t.Fatalf("%s: payload %d bytes, want %d", d.name, len(payload), size)
				}
				cfg := doorConfig{max: 1 << 20}
				if c.max != nil {
					cfg.max = c.max(int64(len(payload)))
				}
				if c.budget > 0 {
					cfg.budget = reqbody.NewBudget(c.budget)
				}
				app, m := &appender{}, ingestmetrics.New(nil)
				req := httptest.NewRequest(http.MethodPost, d.path, bytes.NewReader(c.body(t, payload)))
				req.Header.Set("Content-Type", d.ct)
				if c.enc != "" {
					req.Header.Set("Content-Encoding", c.enc)
				}
				w := httptest.NewRecorder()
				d.handler(app, cfg, m).ServeHTTP(w, req)

				want := c.status
				if want == 0 {
					want = d.ok
				}
				if w.Code != want {
					t.Fatalf("%s: status %d, want %d: %q", d.name, w.Code, want, w.Body)
				}
				if got := testutil.ToFloat64(m.Requests.WithLabelValues(d.front, strconv.Itoa(want))); got != 1 {
					t.Errorf("%s: ingest_requests{code=%d} = %v", d.name, want, got)
				}
				if c.status == 0 {
					if len(app.records) != 1 {
						t.Fatalf("%s: %d records stored, want 1", d.name, len(app.records))
					}
					if d.name == "otlp-http" && !bytes.Equal(app.records[0], payload) {
						t.Errorf("%s: stored record differs from the payload", d.name)
					}
					if d.name == "events" && !bytes.Equal(app.records[0], payload) {
						t.Errorf("%s: stored event differs from the payload", d.name)
					}
					continue
				}
				if len(app.records) != 0 {
					t.Errorf("%s: a refused request stored %d records", d.name, len(app.records))
				}
				detail := d.detail(t, w)
				if !strings.Contains(detail, c.detail) {
					t.Errorf("%s: error %q does not contain %q", d.name, detail, c.detail)
				}
				if c.header[0] != "" && w.Header().Get(c.header[0]) != c.header[1] {
					t.Errorf("%s: %s %q, want %q", d.name, c.header[0], w.Header().Get(c.header[0]), c.header[1])
				}
				details = append(details, detail)
			}
			if len(details) == 2 && details[0] != details[1] {
				t.Errorf("the front doors name the problem differently:\n events    %q\n otlp-http %q", details[0], details[1])
			}
		})
	}
}

// TestFrontDoorsEmptyBody: an empty body is read alike by both doors (no
// error of the reader) and judged by what each protocol says of it: no
// event is a 400 for /api/v1/events, an empty ExportLogsServiceRequest is
// a valid OTLP request (200, nothing stored). Plain or gzip of nothing.
func TestFrontDoorsEmptyBody(t *testing.T) {
	want := map[string]int{"events": http.StatusBadRequest, "otlp-http": http.StatusOK}
	for _, enc := range []string{"", "gzip"} {
		for _, d := range doors {
			t.Run(d.name+"/"+enc, func(t *testing.T) {
				var body []byte
				if enc == "gzip" {
					body = gz(t, nil)
				}
				app := &appender{}
				req := httptest.NewRequest(http.MethodPost, d.path, bytes.NewReader(body))
				req.Header.Set("Content-Type", d.ct)
				if enc != "" {
					req.Header.Set("Content-Encoding", enc)
				}
				w := httptest.NewRecorder()
				d.handler(app, doorConfig{max: 1 << 20}, ingestmetrics.New(nil)).ServeHTTP(w, req)
				if w.Code != want[d.name] {
					t.Fatalf("status %d, want %d: %q", w.Code, want[d.name], w.Body)
				}
				if w.Code != http.StatusOK {
					if detail := d.detail(t, w); !strings.Contains(detail, "empty") {
						t.Errorf("error %q does not say the body is empty", detail)
					}
				}
				if len(app.records) != 0 {
					t.Errorf("%d records stored for an empty body", len(app.records))
				}
			})
		}
	}
}

// TestFrontDoorsAuthAlike: both HTTP front doors refuse a request without
// an accepted token before reading its body (401, WWW-Authenticate:
// Bearer, counted), and take one with it.
func TestFrontDoorsAuthAlike(t *testing.T) {
	for _, d := range doors {
		for _, c := range []struct {
			authz string
			code  int
		}{{"", 401}, {"Bearer wrong", 401}, {"Basic czNjcmV0", 401}, {"Bearer s3cret", d.ok}} {
			t.Run(d.name+"/"+c.authz, func(t *testing.T) {
				app, m := &appender{}, ingestmetrics.New(nil)
				req := httptest.NewRequest(http.MethodPost, d.path, bytes.NewReader(d.payload(t, 100)))
				req.Header.Set("Content-Type", d.ct)
				if c.authz != "" {
					req.Header.Set("Authorization", c.authz)
				}
				w := httptest.NewRecorder()
				d.handler(app, doorConfig{max: 1 << 20, tokens: []string{"s3cret"}}, m).ServeHTTP(w, req)
				if w.Code != c.code {
					t.Fatalf("status %d, want %d: %q", w.Code, c.code, w.Body)
				}
				if got := testutil.ToFloat64(m.Requests.WithLabelValues(d.front, strconv.Itoa(c.code))); got != 1 {
					t.Errorf("ingest_requests{code=%d} = %v", c.code, got)
				}
				if c.code != 401 {
					return
				}
				if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("WWW-Authenticate %q", got)
				}
				// Each door answers 401 in its own error format (problem+json,
				// google.rpc.Status), as it answers its other errors.
				if detail := d.detail(t, w); detail != auth.RejectMessage {
					t.Errorf("401 detail %q, want %q", detail, auth.RejectMessage)
				}
				if len(app.records) != 0 {
					t.Errorf("an unauthorized request stored %d records", len(app.records))
				}
			})
		}
	}
}
