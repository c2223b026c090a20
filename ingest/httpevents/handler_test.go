package httpevents

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/ingest/ingestmetrics"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
	"github.com/bucketq/bucketq/producer"
)

// recorder is an Appender that keeps copies of what it was given.
type recorder struct {
	mu      sync.Mutex
	err     error
	calls   int
	header  format.Header
	records [][]byte
}

func (r *recorder) Append(_ context.Context, h format.Header, recs [][]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return r.err
	}
	r.header = h
	for _, rec := range recs {
		r.records = append(r.records, bytes.Clone(rec))
	}
	return nil
}

var fixedNow = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 3600))

const fixedStamp = `"time":"2026-03-04T04:06:07.123456789Z",`

func ev(id string, extra ...string) string {
	fields := []string{`"id":"` + id + `"`, `"source":"src"`, `"type":"api-calls"`, `"subject":"cust-1"`, `"specversion":"1.0"`}
	fields = append(fields, extra...)
	return "{" + strings.Join(fields, ",") + "}"
}

// evWithout builds an event without the given attribute.
func evWithout(field string) string {
	all := map[string]string{"id": `"id":"e1"`, "source": `"source":"src"`, "type": `"type":"t"`, "subject": `"subject":"s"`, "specversion": `"specversion":"1.0"`}
	var fs []string
	for _, k := range []string{"id", "source", "type", "subject", "specversion"} {
		if k != field {
			fs = append(fs, all[k])
		}
	}
	return "{" + strings.Join(fs, ",") + "}"
}

type testServer struct {
	app *recorder
	m   *ingestmetrics.Metrics
	h   http.Handler
}

func newServer(cfg Config) *testServer {
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixedNow }
	}
	s := &testServer{app: &recorder{}, m: ingestmetrics.New(nil)}
	s.h = NewHandler(s.app, cfg, s.m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return s
}

func (s *testServer) do(method, ct, body string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "/api/v1/events", strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	s.h.ServeHTTP(w, req)
	return w
}

// checkProblem checks an RFC 9457 body and returns its detail.
func checkProblem(t *testing.T, w *httptest.ResponseRecorder, code int) string {
	t.Helper()
	if w.Code != code {
		t.Fatalf("status %d, want %d; body %s", w.Code, code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", w.Body, err)
	}
	if p.Type == "" || p.Title != http.StatusText(code) || p.Status != code || p.Detail == "" {
		t.Fatalf("problem %+v incomplete", p)
	}
	return p.Detail
}

const ctCE = ctSingle

func TestAccepts(t *testing.T) {
	one := ev("a", `"time":"2026-01-01T00:00:00Z"`, `"data":{"tokens":12}`)
	two := ev("b", `"time":"2026-01-01T00:00:00.5+02:00"`, `"data":null`)
	cases := []struct {
		name string
		ct   string
		body string
		want []string
	}{
		{"cloudevents single", ctCE, one, []string{one}},
		{"cloudevents single with charset", ctCE + "; charset=utf-8", one, []string{one}},
		{"batch", ctBatch, "[" + one + "," + two + "]", []string{one, two}},
		{"batch with charset and case", "Application/CloudEvents-Batch+JSON; charset=UTF-8", "[" + one + "]", []string{one}},
		{"json single", ctJSON, one, []string{one}},
		{"json array", ctJSON, "[" + one + "," + two + "]", []string{one, two}},
		{"whitespace around and inside kept as received", ctJSON, " \n[ \n" + strings.ReplaceAll(one, ",", " ,\n ") + " ,\t" + two + "\n]\n", []string{strings.ReplaceAll(one, ",", " ,\n ") + "", two}},
		{"data absent", ctCE, ev("c", `"time":"2026-01-01T00:00:00Z"`), []string{ev("c", `"time":"2026-01-01T00:00:00Z"`)}},
		{"unknown attributes and nested data kept", ctCE, ev("d", `"time":"2026-01-01T00:00:00Z"`, `"dataschema":"x"`, `"data":{"a":[1,{"b":"}]\"{"}],"c":null}`), []string{ev("d", `"time":"2026-01-01T00:00:00Z"`, `"dataschema":"x"`, `"data":{"a":[1,{"b":"}]\"{"}],"c":null}`)}},
		{"escaped key counts as the attribute", ctCE, `{"\u0069d":"e","source":"s","type":"t","subject":"u","specversion":"1.0","time":"2026-01-01T00:00:00Z"}`, []string{`{"\u0069d":"e","source":"s","type":"t","subject":"u","specversion":"1.0","time":"2026-01-01T00:00:00Z"}`}},
		{"escaped values", ctCE, ev(`e\"1`, `"time":"2026-01-01T00:00:00Z"`), []string{ev(`e\"1`, `"time":"2026-01-01T00:00:00Z"`)}},
		{"time inserted when absent", ctCE, ev("t"), []string{"{" + fixedStamp + ev("t")[1:]}},
		{"id of MaxIDBytes", ctCE, ev(strings.Repeat("i", MaxIDBytes), `"time":"2026-01-01T00:00:00Z"`), []string{ev(strings.Repeat("i", MaxIDBytes), `"time":"2026-01-01T00:00:00Z"`)}},
		{"id with inner and outer spaces", ctCE, ev(" a b ", `"time":"2026-01-01T00:00:00Z"`), []string{ev(" a b ", `"time":"2026-01-01T00:00:00Z"`)}},
		{"UTF-8 and surrogate pairs", ctCE, ev(`é-\u00e9-😀-\ud83d\ude00`, `"time":"2026-01-01T00:00:00Z"`, `"data":{"ü":"\uD83D\uDE00 ✓"}`), []string{ev(`é-\u00e9-😀-\ud83d\ude00`, `"time":"2026-01-01T00:00:00Z"`, `"data":{"ü":"\uD83D\uDE00 ✓"}`)}},
		{"years 0001 and 9999", ctBatch, "[" + ev("y1", `"time":"0001-01-01T00:00:00Z"`) + "," + ev("y2", `"time":"9999-12-31T23:59:59.999999999Z"`) + "]",
			[]string{ev("y1", `"time":"0001-01-01T00:00:00Z"`), ev("y2", `"time":"9999-12-31T23:59:59.999999999Z"`)}},
		{"time inserted only where absent", ctBatch, "[" + ev("t1") + "," + one + "," + ev("t2", `"data":{}`) + "]",
			[]string{"{" + fixedStamp + ev("t1")[1:], one, "{" + fixedStamp + ev("t2", `"data":{}`)[1:]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(Config{})
			w := s.do(http.MethodPost, tc.ct, tc.body)
			if w.Code != http.StatusNoContent {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if w.Body.Len() != 0 {
				t.Errorf("204 with body %q", w.Body)
			}
			if s.app.calls != 1 || s.app.header != format.EventsHeader {
				t.Fatalf("calls %d header %v", s.app.calls, s.app.header)
			}
			if len(s.app.records) != len(tc.want) {
				t.Fatalf("%d records, want %d", len(s.app.records), len(tc.want))
			}
			for i, want := range tc.want {
				if got := string(s.app.records[i]); got != want {
					t.Errorf("record %d\n got %s\nwant %s", i, got, want)
				}
				if !json.Valid(s.app.records[i]) {
					t.Errorf("record %d is not valid JSON", i)
				}
			}
			if n := val(s.m.Events.WithLabelValues(Front)); n != float64(len(tc.want)) {
				t.Errorf("IngestEvents = %v", n)
			}
			if n := val(s.m.Requests.WithLabelValues(Front, "204")); n != 1 {
				t.Errorf("IngestRequests{204} = %v", n)
			}
		})
	}
}

func TestRejects(t *testing.T) {
	good := ev("g", `"time":"2026-01-01T00:00:00Z"`)
	type tc struct {
		name   string
		method string
		ct     string
		body   string
		code   int
		detail string // substring of the problem detail
	}
	cases := []tc{
		{"GET", http.MethodGet, ctCE, good, 405, "GET"},
		{"PUT", http.MethodPut, ctCE, good, 405, "PUT"},
		{"no content type", "", "", good, 415, "Content-Type"},
		{"text/plain", "", "text/plain", good, 415, "text/plain"},
		{"form", "", "application/x-www-form-urlencoded", good, 415, "x-www-form-urlencoded"},
		{"bad media type syntax", "", "application/json; =x", good, 415, "Content-Type"},
		{"non utf-8 charset", "", ctJSON + "; charset=latin1", good, 415, "latin1"},
		{"empty body", "", ctJSON, "", 400, "empty"},
		{"blank body", "", ctJSON, " \n ", 400, "empty"},
		{"empty array", "", ctBatch, "[]", 400, "empty"},
		{"empty array with spaces", "", ctJSON, "[ \n ]", 400, "empty"},
		{"invalid JSON names the offset", "", ctJSON, `{"id":"a",,}`, 400, "offset 10"},
		{"truncated JSON", "", ctJSON, `[{"id":"a"`, 400, "offset 10"},
		{"trailing data", "", ctJSON, good + good, 400, "offset"},
		{"array with single-event type", "", ctCE, "[" + good + "]", 400, ctBatch},
		{"object with batch type", "", ctBatch, good, 400, "array"},
		{"element not an object", "", ctBatch, "[" + good + ",42]", 400, "event[1]: not a JSON object"},
		{"top-level string", "", ctJSON, `"x"`, 400, "event[0]: not a JSON object"},
		{"empty id", "", ctCE, strings.Replace(good, `"id":"g"`, `"id":""`, 1), 400, `event[0]: "id" is required`},
		{"numeric id", "", ctCE, strings.Replace(good, `"id":"g"`, `"id":7`, 1), 400, `event[0]: "id" must be a string`},
		{"null subject", "", ctCE, strings.Replace(good, `"subject":"cust-1"`, `"subject":null`, 1), 400, `"subject" must be a string`},
		{"specversion 0.3", "", ctCE, strings.Replace(good, `"1.0"`, `"0.3"`, 1), 400, `event[0]: "specversion" must be "1.0", got "0.3"`},
		{"specversion number", "", ctCE, strings.Replace(good, `"1.0"`, `1.0`, 1), 400, `"specversion" must be a string`},
		{"time not RFC 3339", "", ctCE, ev("x", `"time":"yesterday"`), 400, `event[0]: "time" is not RFC 3339: "yesterday"`},
		{"time without zone", "", ctCE, ev("x", `"time":"2026-01-01T00:00:00"`), 400, `"time" is not RFC 3339`},
		{"time as number", "", ctCE, ev("x", `"time":1700000000`), 400, `"time" must be a string`},
		{"data string", "", ctCE, ev("x", `"data":"abc"`), 400, `"data" must be a JSON object or null`},
		{"data array", "", ctCE, ev("x", `"data":[1]`), 400, `"data" must be a JSON object or null`},
		{"data number", "", ctCE, ev("x", `"data":3`), 400, `"data" must be a JSON object or null`},
		{"duplicate id", "", ctCE, ev("x", `"id":"y"`), 400, `"id" appears more than once`},
		// Valid JSON syntax carrying text that is no text: encoding/json
		// would store U+FFFD in its place.
		{"invalid UTF-8 in id", "", ctCE, ev("a\xffb"), 400, `event[0]: "id": invalid UTF-8 (byte 0xFF) in a string at offset`},
		{"invalid UTF-8 in data of the 2nd event", "", ctBatch, "[" + good + "," + ev("x", "\"data\":{\"k\":[\"\xc3\x28\"]}") + "]", 400, `event[1]: "data": invalid UTF-8 (byte 0xC3)`},
		{"UTF-8 encoded surrogate in source", "", ctCE, strings.Replace(good, `"src"`, "\"\xed\xa0\x80\"", 1), 400, `event[0]: "source": invalid UTF-8 (byte 0xED)`},
		{"invalid UTF-8 in an attribute name", "", ctCE, ev("x", "\"\xff\":1"), 400, `event[0]: invalid UTF-8 (byte 0xFF) in a string at offset`},
		{"lone high surrogate in id", "", ctCE, ev(`\ud800`), 400, `event[0]: "id": lone UTF-16 surrogate \ud800 in a string`},
		{"high surrogate then a non-surrogate", "", ctCE, ev(`\ud83d\u0041`), 400, `"id": lone UTF-16 surrogate \ud83d`},
		{"lone low surrogate in data", "", ctCE, ev("x", `"data":{"a":"\uDC00"}`), 400, `event[0]: "data": lone UTF-16 surrogate \uDC00`},
		{"blank id", "", ctCE, ev(" "), 400, `event[0]: "id" is blank`},
		{"id of tabs and newlines", "", ctCE, ev(`\t\n`), 400, `event[0]: "id" contains the control character U+0009`},
		{"id NUL", "", ctCE, ev(`\u0000`), 400, `event[0]: "id" contains the control character U+0000 at byte 0`},
		{"id with C1 control", "", ctCE, ev("a\u0085"), 400, `"id" contains the control character U+0085 at byte 1`},
		{"id of 900 KB", "", ctCE, ev(strings.Repeat("x", 900<<10)), 400, `event[0]: "id" is 921600 bytes long; at most 256 are allowed`},
		{"id one byte too long", "", ctCE, ev(strings.Repeat("é", MaxIDBytes/2) + "x"), 400, `"id" is 257 bytes long`},
		{"escaped id too long", "", ctCE, ev(strings.Repeat(`\u00e9`, MaxIDBytes/2+1)), 400, `"id" is 258 bytes long`},
		{"time escaped and not RFC 3339", "", ctCE, ev("x", `"time":"2026-01-01T00:00:00\u0020"`), 400, `event[0]: "time" is not RFC 3339: "2026-01-01T00:00:00 "`},
		{"time empty", "", ctCE, ev("x", `"time":""`), 400, `event[0]: "time" is not RFC 3339: ""`},
		{"time long, quoted abbreviated", "", ctCE, ev("x", `"time":"`+strings.Repeat("9", 100)+`"`), 400, `"time" is not RFC 3339: "` + strings.Repeat("9", 64) + `..."`},
		{"time year 0000", "", ctCE, ev("x", `"time":"0000-01-01T00:00:00Z"`), 400, `event[0]: "time" is not RFC 3339: year 0000 is outside 0001-9999`},
		{"raw control character", "", ctCE, ev("x", "\"data\":{\"a\":\"\x01\"}"), 400, `control character U+0001 in a string (escape it as \u0001)`},
		{"byte order mark", "", ctCE, "\xef\xbb\xbf" + good, 400, "byte order mark (BOM)"},
		{"stray non-ASCII byte named as a byte", "", ctCE, "\xef" + good, 400, "unexpected byte 0xEF, want a value"},
		{"bad event deep in a batch", "", ctBatch, "[" + good + "," + good + "," + good + "," + evWithout("subject") + "]", 400, `event[3]: "subject" is required`},
	}
	for _, f := range []string{"id", "source", "type", "subject", "specversion"} {
		cases = append(cases, tc{"missing " + f, "", ctJSON, "[" + evWithout(f) + "]", 400, fmt.Sprintf("event[0]: %q is required", f)})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newServer(Config{})
			method := c.method
			if method == "" {
				method = http.MethodPost
			}
			w := s.do(method, c.ct, c.body)
			detail := checkProblem(t, w, c.code)
			if !strings.Contains(detail, c.detail) {
				t.Errorf("detail %q does not contain %q", detail, abbreviateString(c.detail))
			}
			if strings.Contains(detail, "character character") {
				t.Errorf("detail %q repeats a word", detail)
			}
			if c.code == 405 && w.Header().Get("Allow") != http.MethodPost {
				t.Errorf("405 without Allow: POST")
			}
			if s.app.calls != 0 {
				t.Errorf("rejected request reached the producer (%d calls)", s.app.calls)
			}
			if n := val(s.m.Requests.WithLabelValues(Front, fmt.Sprint(c.code))); n != 1 {
				t.Errorf("IngestRequests{%d} = %v", c.code, n)
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	body := "[" + ev("a", `"time":"2026-01-01T00:00:00Z"`) + "]"
	cases := []struct {
		limit int64
		code  int
	}{
		{int64(len(body)), 204},
		{int64(len(body)) - 1, 413},
		{10, 413},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.limit), func(t *testing.T) {
			s := newServer(Config{MaxBodyBytes: c.limit})
			w := s.do(http.MethodPost, ctJSON, body)
			if c.code == 413 {
				checkProblem(t, w, 413)
				if s.app.calls != 0 {
					t.Error("oversized request reached the producer")
				}
			} else if w.Code != c.code {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
		})
	}
	// The default is 8 MiB.
	s := newServer(Config{})
	big := `{"id":"a","source":"s","type":"t","subject":"u","specversion":"1.0","data":{"pad":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}}`
	checkProblem(t, s.do(http.MethodPost, ctCE, big), 413)
}

func TestAppendErrors(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		code       int
		retryAfter string
	}{
		{"backpressure", fmt.Errorf("wrapped: %w", producer.ErrBackpressure), 429, "1"},
		{"closed", producer.ErrClosed, 503, "5"},
		{"durability failure", errors.New("batch not committed within 2m"), 503, "1"},
		{"client gone", context.Canceled, 503, "1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newServer(Config{})
			s.app.err = c.err
			w := s.do(http.MethodPost, ctCE, ev("a"))
			checkProblem(t, w, c.code)
			if got := w.Header().Get("Retry-After"); got != c.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, c.retryAfter)
			}
			if s.app.calls != 1 {
				t.Errorf("calls %d", s.app.calls)
			}
			if n := val(s.m.Events.WithLabelValues(Front)); n != 0 {
				t.Errorf("IngestEvents = %v for a failed request", n)
			}
		})
	}
}

func TestBearerTokens(t *testing.T) {
	body := ev("a")
	cases := []struct {
		name   string
		tokens []string
		auth   string
		ok     bool
	}{
		{"no tokens configured, no header", nil, "", true},
		{"no tokens configured, any header", nil, "Bearer whatever", true},
		{"missing header", []string{"s3cret"}, "", false},
		{"wrong token", []string{"s3cret"}, "Bearer s3cre", false},
		{"longer token", []string{"s3cret"}, "Bearer s3cret2", false},
		{"wrong scheme", []string{"s3cret"}, "Basic s3cret", false},
		{"scheme only", []string{"s3cret"}, "Bearer", false},
		{"empty token", []string{"s3cret"}, "Bearer ", false},
		{"right token", []string{"s3cret"}, "Bearer s3cret", true},
		{"scheme is case-insensitive", []string{"s3cret"}, "bearer s3cret", true},
		{"second of two tokens", []string{"one", "two"}, "Bearer two", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newServer(Config{Tokens: c.tokens})
			var hdr []string
			if c.auth != "" {
				hdr = []string{"Authorization", c.auth}
			}
			w := s.do(http.MethodPost, ctCE, body, hdr...)
			if c.ok {
				if w.Code != 204 {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
				return
			}
			checkProblem(t, w, 401)
			if w.Header().Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
			}
			if s.app.calls != 0 {
				t.Error("unauthorized request reached the producer")
			}
		})
	}
}

// TestWithRealProducer sends events through the handler into a producer on
// a filesystem bucket and an in-memory manifest, and checks that once the
// handler said 204, the events are in a committed batch, byte for byte.
func TestWithRealProducer(t *testing.T) {
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	q := manifest.NewQueue(memstore.New(), "ingest/manifest", manifest.Options{})
	m := ingestmetrics.New(nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := producer.New(bkt, q, producer.Config{FlushInterval: 10 * time.Millisecond, Compression: "zstd"}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	srv := httptest.NewServer(NewHandler(p, Config{Tokens: []string{"tok"}, Now: func() time.Time { return fixedNow }}, m, log))
	defer srv.Close()

	withTime := ev("w1", `"time":"2026-01-01T00:00:00Z"`, `"data":{"n":1}`)
	withSpaces := "{ \"id\" : \"w2\",\n \"source\":\"src\", \"type\":\"t\", \"subject\":\"s\", \"specversion\":\"1.0\", \"time\":\"2026-01-01T00:00:01Z\" }"
	noTime := ev("w3", `"data":{"n":3}`)
	body := "[" + withTime + ",\n  " + withSpaces + " , " + noTime + "]"
	want := []string{withTime, withSpaces, "{" + fixedStamp + noTime[1:]}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/events", strings.NewReader(body))
	req.Header.Set("Content-Type", ctBatch)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// No waiting: 204 means committed.
	man, err := q.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range man.Entries {
		if len(e.Metadata) != 1 || !bytes.Equal(e.Metadata[0].Payload, format.EventsHeader.Bytes()) {
			t.Errorf("entry %d metadata %+v, want one events item", e.Sequence, e.Metadata)
		}
		rc, err := bkt.Get(context.Background(), e.Location)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		b, err := format.DecodeBatch(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Records {
			got = append(got, string(r))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("committed %d events, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d\n got %s\nwant %s", i, got[i], want[i])
		}
	}

	// A rejected request leaves nothing behind.
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/api/v1/events", strings.NewReader("["+ev("x1")+","+evWithout("type")+"]"))
	req.Header.Set("Content-Type", ctBatch)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	time.Sleep(50 * time.Millisecond) // longer than the flush interval
	man2, _ := q.Read(context.Background())
	if len(man2.Entries) != len(man.Entries) {
		t.Errorf("rejected request added %d manifest entries", len(man2.Entries)-len(man.Entries))
	}
}

func val(c prometheus.Metric) float64 {
	var pb dto.Metric
	if err := c.Write(&pb); err != nil {
		panic(err)
	}
	if pb.Counter != nil {
		return pb.GetCounter().GetValue()
	}
	return pb.GetGauge().GetValue()
}

type discard struct{}

func (discard) Append(context.Context, format.Header, [][]byte) error { return nil }

// BenchmarkHandler500 measures a request of 500 ~250-byte events, half of
// them without "time", against an Appender that discards.
func BenchmarkHandler500(b *testing.B) {
	body := benchBody()
	h := NewHandler(discard{}, Config{}, ingestmetrics.New(nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	postParallel(b, h, body, "")
}

// postParallel posts body (a 500-event batch, with Content-Encoding enc
// unless empty) from parallel goroutines until b.N requests are done, each
// needing a 204, and reports events/s.
func postParallel(b *testing.B, h http.Handler, body []byte, enc string) {
	b.Helper()
	b.RunParallel(func(pb *testing.PB) {
		w := &nopWriter{h: http.Header{}}
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/events", bytes.NewReader(body))
			req.Header.Set("Content-Type", ctBatch)
			if enc != "" {
				req.Header.Set("Content-Encoding", enc)
			}
			clear(w.h)
			w.code = 0
			h.ServeHTTP(w, req)
			if w.code != http.StatusNoContent {
				b.Fatalf("status %d", w.code)
			}
		}
	})
	b.ReportMetric(float64(b.N)*500/b.Elapsed().Seconds(), "events/s")
}

type nopWriter struct {
	h    http.Header
	code int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(code int)        { w.code = code }

// SetReadDeadline lets reqbody's rate guard work as on a real connection
// (http.ResponseController finds it), so the benchmarks measure that path.
func (w *nopWriter) SetReadDeadline(time.Time) error { return nil }

// BenchmarkHandlerProducer500 is BenchmarkHandler500 against a real producer
// (filesystem bucket, in-memory manifest, zstd), with many requests in
// flight as a loaded server has.
func BenchmarkHandlerProducer500(b *testing.B) {
	body := benchBody()
	bkt, err := filesystem.NewBucket(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	m := ingestmetrics.New(nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := producer.New(bkt, manifest.NewQueue(memstore.New(), "ingest/manifest", manifest.Options{}),
		producer.Config{FlushInterval: 50 * time.Millisecond, Compression: "zstd"}, nil, log)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	h := NewHandler(p, Config{}, m, log)
	b.SetBytes(int64(len(body)))
	b.SetParallelism(32)
	b.ResetTimer()
	postParallel(b, h, body, "")
}

// benchBody is 500 ~250-byte events, half of them without "time".
func benchBody() []byte {
	var sb strings.Builder
	sb.WriteString("[")
	for i := range 500 {
		if i > 0 {
			sb.WriteString(",")
		}
		tm := ""
		if i%2 == 0 {
			tm = `,"time":"2026-01-01T00:00:00.123Z"`
		}
		fmt.Fprintf(&sb, `{"specversion":"1.0","id":"5c10fade-1c9e-4d6c-8275-c52c36731d3d-%05d","source":"my-gateway","type":"api-request","subject":"customer-%d"%s,"data":{"method":"GET","route":"/v1/things/{id}","duration_ms":%d,"tokens":123}}`, i, i%97, tm, i*7)
	}
	sb.WriteString("]")
	return []byte(sb.String())
}

// TestDamagedManifestIs503NamingIt: with a damaged manifest (here a zero-byte
// object) the request is refused at once with a 503 whose detail says the
// manifest is damaged and needs an operator, not a generic storage failure.
func TestDamagedManifestIs503NamingIt(t *testing.T) {
	bkt, err := filesystem.NewBucket(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	store.Put("ingest/manifest", []byte{})
	q := manifest.NewQueue(store, "ingest/manifest", manifest.Options{})
	m := ingestmetrics.New(nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := producer.New(bkt, q, producer.Config{}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	srv := httptest.NewServer(NewHandler(p, Config{}, m, log))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/api/v1/events", "application/cloudevents+json", strings.NewReader(ev("d1")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "manifest is damaged") ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if cur, _, _ := store.Read(context.Background(), "ingest/manifest"); len(cur) != 0 {
		t.Fatalf("the damaged manifest was overwritten (%d bytes)", len(cur))
	}
}

// BenchmarkHandler1 measures what OpenMeter SDKs send: one ~250-byte event
// per request (application/cloudevents+json), against an Appender that
// discards, so allocs/op and ns/op are the front door's own per-request
// cost (issue 10: CPU per request at 64 connections × 1 event).
func BenchmarkHandler1(b *testing.B) {
	body := []byte(`{"specversion":"1.0","id":"5c10fade-1c9e-4d6c-8275-c52c36731d3d-00001","source":"my-gateway","type":"api-request","subject":"customer-1","time":"2026-01-01T00:00:00.123Z","data":{"method":"GET","route":"/v1/things/{id}","duration_ms":7,"tokens":123}}`)
	h := NewHandler(discard{}, Config{}, ingestmetrics.New(nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	w := &nopWriter{h: http.Header{}}
	rd := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/events", rd)
	req.Header.Set("Content-Type", ctSingle)
	b.ResetTimer()
	for b.Loop() {
		rd.Reset(body)
		req.Body = io.NopCloser(rd)
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
}
