package httpevents

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketq/bucketq/ingest/ingestmetrics"
)

func gzipLevel(t testing.TB, level int, body string) string {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(zw, body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func gz(t testing.TB, body string) string { return gzipLevel(t, gzip.DefaultCompression, body) }

// TestGzipAccepted sends each body gzip-compressed and plain to fresh
// handlers and checks that both are answered 204 and store the same
// records, which are the events as they were before compression.
func TestGzipAccepted(t *testing.T) {
	one := ev("a", `"time":"2026-01-01T00:00:00Z"`, `"data":{"tokens":12}`)
	two := ev("b", `"time":"2026-01-01T00:00:00.5+02:00"`, `"data":null`)
	noTime := ev("c", `"data":{"n":3}`)
	batch := " [" + one + ",\n " + two + " , " + noTime + "]\n"
	cases := []struct {
		name string
		ct   string
		enc  string // Content-Encoding header; "" = none
		body string // uncompressed
		comp func(t testing.TB, body string) string
		want []string
	}{
		{"gzip single", ctCE, "gzip", one, gz, []string{one}},
		{"gzip batch", ctBatch, "gzip", batch, gz, []string{one, two, "{" + fixedStamp + noTime[1:]}},
		{"gzip application/json array", ctJSON, "gzip", batch, gz, []string{one, two, "{" + fixedStamp + noTime[1:]}},
		{"gzip application/json single", ctJSON, "gzip", one, gz, []string{one}},
		{"x-gzip", ctBatch, "x-gzip", batch, gz, []string{one, two, "{" + fixedStamp + noTime[1:]}},
		{"GZIP in capitals with spaces", ctCE, " GZip ", one, gz, []string{one}},
		{"gzip without compression", ctBatch, "gzip", batch, func(t testing.TB, b string) string { return gzipLevel(t, gzip.NoCompression, b) }, []string{one, two, "{" + fixedStamp + noTime[1:]}},
		{"gzip best compression", ctBatch, "gzip", batch, func(t testing.TB, b string) string { return gzipLevel(t, gzip.BestCompression, b) }, []string{one, two, "{" + fixedStamp + noTime[1:]}},
		{"two gzip members (concatenated streams)", ctBatch, "gzip", batch, func(t testing.TB, b string) string {
			return gz(t, b[:len(b)/2]) + gz(t, b[len(b)/2:])
		}, []string{one, two, "{" + fixedStamp + noTime[1:]}},
		{"identity", ctBatch, "identity", batch, nil, []string{one, two, "{" + fixedStamp + noTime[1:]}},
		{"identity and gzip listed", ctBatch, "identity, gzip", batch, gz, []string{one, two, "{" + fixedStamp + noTime[1:]}},
		{"empty header value", ctCE, "", one, nil, []string{one}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sent := c.body
			if c.comp != nil {
				sent = c.comp(t, c.body)
				if sent == c.body {
					t.Fatal("compression changed nothing")
				}
			}
			s := newServer(Config{})
			w := s.do(http.MethodPost, c.ct, sent, "Content-Encoding", c.enc)
			if w.Code != http.StatusNoContent {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			plain := newServer(Config{})
			if w := plain.do(http.MethodPost, c.ct, c.body); w.Code != http.StatusNoContent {
				t.Fatalf("uncompressed: status %d: %s", w.Code, w.Body)
			}
			if len(s.app.records) != len(c.want) || len(plain.app.records) != len(c.want) {
				t.Fatalf("%d records (uncompressed %d), want %d", len(s.app.records), len(plain.app.records), len(c.want))
			}
			for i, want := range c.want {
				if got := string(s.app.records[i]); got != want {
					t.Errorf("record %d\n got %s\nwant %s", i, got, want)
				}
				if !bytes.Equal(s.app.records[i], plain.app.records[i]) {
					t.Errorf("record %d differs from the uncompressed request's\n got %s\nplain %s", i, s.app.records[i], plain.app.records[i])
				}
			}
			if n := val(s.m.Events.WithLabelValues(Front)); n != float64(len(c.want)) {
				t.Errorf("IngestEvents = %v", n)
			}
		})
	}
}

// TestGzipRejected checks the answers to unsupported encodings and bad gzip
// bodies: a problem+json naming the cause, nothing handed to the producer.
func TestGzipRejected(t *testing.T) {
	good := ev("g", `"time":"2026-01-01T00:00:00Z"`)
	zgood := gz(t, good)
	badCRC := []byte(zgood)
	badCRC[len(badCRC)-8] ^= 0xff // CRC-32 in the trailer
	badSize := []byte(zgood)
	binary.LittleEndian.PutUint32(badSize[len(badSize)-4:], uint32(len(good)+1)) // ISIZE in the trailer
	badMethod := []byte(zgood)
	badMethod[2] = 7 // compression method: not deflate
	badDeflate := []byte(zgood)
	badDeflate[10] |= 0x06 // first block type 11: reserved
	cases := []struct {
		name   string
		enc    string
		body   string
		code   int
		detail []string // substrings of the problem detail
	}{
		{"br", "br", zgood, 415, []string{"Content-Encoding", `"br"`, "gzip", "x-gzip", "identity"}},
		{"deflate", "deflate", zgood, 415, []string{"Content-Encoding", `"deflate"`, "gzip"}},
		{"zstd", "zstd", zgood, 415, []string{"Content-Encoding", `"zstd"`, "gzip"}},
		{"compress", "compress", zgood, 415, []string{"Content-Encoding", `"compress"`}},
		{"gzip then br", "gzip, br", zgood, 415, []string{"Content-Encoding", `"gzip, br"`}},
		{"gzip twice", "gzip, gzip", gz(t, zgood), 415, []string{"Content-Encoding", `"gzip, gzip"`}},
		{"not gzip at all", "gzip", good, 400, []string{"not valid gzip", "Content-Encoding: gzip"}},
		{"truncated stream", "gzip", zgood[:len(zgood)-12], 400, []string{"not valid gzip", "unexpected EOF"}},
		{"truncated header", "gzip", zgood[:5], 400, []string{"not valid gzip"}},
		{"trailer missing", "gzip", zgood[:len(zgood)-8], 400, []string{"not valid gzip"}},
		{"bad checksum", "gzip", string(badCRC), 400, []string{"not valid gzip", "checksum"}},
		{"bad size in trailer", "gzip", string(badSize), 400, []string{"not valid gzip"}},
		{"not deflate", "gzip", string(badMethod), 400, []string{"not valid gzip", "header"}},
		{"corrupt deflate data", "gzip", string(badDeflate), 400, []string{"not valid gzip", "corrupt"}},
		{"trailing junk after the stream", "gzip", zgood + "junk after the gzip member", 400, []string{"not valid gzip", "trailing data after the gzip stream"}},
		{"one byte after the stream", "gzip", zgood + "x", 400, []string{"not valid gzip", "trailing data after the gzip stream"}},
		{"a NUL after the stream", "gzip", zgood + "\x00", 400, []string{"trailing data after the gzip stream"}},
		{"half a magic after the stream", "gzip", zgood + "\x1f", 400, []string{"trailing data after the gzip stream"}},
		{"junk after two members", "gzip", zgood + zgood + "junk", 400, []string{"trailing data after the gzip stream"}},
		{"truncated second member", "gzip", zgood + zgood[:5], 400, []string{"not valid gzip", "unexpected EOF"}},
		{"empty gzip body", "gzip", "", 400, []string{"empty"}},
		{"gzip of nothing", "gzip", gz(t, ""), 400, []string{"empty"}},
		{"gzip of blanks", "x-gzip", gz(t, " \n\t "), 400, []string{"empty"}},
		{"gzip of invalid JSON names the decompressed offset", "gzip", gz(t, `{"id":"a",,}`), 400, []string{"offset 10"}},
		{"gzip of an invalid event", "gzip", gz(t, "["+good+","+evWithout("type")+"]"), 400, []string{`event[1]: "type" is required`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newServer(Config{})
			w := s.do(http.MethodPost, ctJSON, c.body, "Content-Encoding", c.enc)
			detail := checkProblem(t, w, c.code)
			for _, sub := range c.detail {
				if !strings.Contains(detail, sub) {
					t.Errorf("detail %q does not contain %q", detail, sub)
				}
			}
			if strings.Contains(detail, "gzip): gzip:") {
				t.Errorf("detail %q repeats its prefix", detail)
			}
			if c.code == 415 {
				if got := w.Header().Get("Accept-Encoding"); got != "gzip" {
					t.Errorf("415 with Accept-Encoding %q, want gzip", got)
				}
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

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestGzipLimit checks that max_body_bytes bounds the decompressed body: a
// body at the limit passes however it was compressed, one byte more is
// refused, and a tiny body that inflates far beyond the limit is refused
// after reading only a small part of it, with nothing stored.
func TestGzipLimit(t *testing.T) {
	body := "[" + ev("a", `"time":"2026-01-01T00:00:00Z"`) + "]"
	n := int64(len(body))
	t.Run("at the limit, stored uncompressed (gzip larger than the limit)", func(t *testing.T) {
		z := gzipLevel(t, gzip.NoCompression, body)
		if int64(len(z)) <= n {
			t.Fatalf("gzip body %d bytes, want more than %d", len(z), n)
		}
		s := newServer(Config{MaxBodyBytes: n})
		if w := s.do(http.MethodPost, ctJSON, z, "Content-Encoding", "gzip"); w.Code != http.StatusNoContent {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if len(s.app.records) != 1 {
			t.Fatalf("%d records", len(s.app.records))
		}
	})
	t.Run("one byte over the limit", func(t *testing.T) {
		s := newServer(Config{MaxBodyBytes: n - 1})
		detail := checkProblem(t, s.do(http.MethodPost, ctJSON, gz(t, body), "Content-Encoding", "gzip"), 413)
		if want := fmt.Sprintf("larger than %d bytes after gzip decompression", n-1); !strings.Contains(detail, want) {
			t.Errorf("detail %q does not contain %q", detail, want)
		}
		if s.app.calls != 0 {
			t.Error("oversized request reached the producer")
		}
	})
	t.Run("zip bomb", func(t *testing.T) {
		const limit = 1 << 20
		// 64 MiB of padding inside an otherwise valid event: about 80 KiB
		// compressed, far below the limit on the wire.
		var zbuf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&zbuf, gzip.BestSpeed)
		io.WriteString(zw, `{"id":"a","source":"s","type":"t","subject":"u","specversion":"1.0","data":{"pad":"`)
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for range 64 {
			zw.Write(chunk)
		}
		io.WriteString(zw, `"}}`)
		zw.Close()
		if zbuf.Len() >= limit/4 {
			t.Fatalf("bomb is %d bytes compressed, want it tiny", zbuf.Len())
		}
		s := newServer(Config{MaxBodyBytes: limit})
		cr := &countingReader{r: bytes.NewReader(zbuf.Bytes())}
		req := httptest.NewRequest(http.MethodPost, "/api/v1/events", cr)
		req.Header.Set("Content-Type", ctCE)
		req.Header.Set("Content-Encoding", "gzip")
		w := httptest.NewRecorder()
		s.h.ServeHTTP(w, req)
		detail := checkProblem(t, w, 413)
		if want := fmt.Sprintf("larger than %d bytes after gzip decompression", limit); !strings.Contains(detail, want) {
			t.Errorf("detail %q does not contain %q", detail, want)
		}
		if s.app.calls != 0 {
			t.Error("oversized request reached the producer")
		}
		// Decompression stopped near the limit: most of the compressed
		// body was never read.
		if got := cr.n.Load(); got > int64(zbuf.Len())/2 {
			t.Errorf("read %d of %d compressed bytes; decompression should stop at the limit", got, zbuf.Len())
		}
	})
	t.Run("body that never inflates", func(t *testing.T) {
		// A gzip member of nothing but empty deflate blocks: no output for
		// as long as the client cares to send. The wire bound stops it.
		var zbuf bytes.Buffer
		zw := gzip.NewWriter(&zbuf)
		for zbuf.Len() < 64<<10 {
			zw.Flush() // an empty stored block
		}
		zw.Close()
		s := newServer(Config{MaxBodyBytes: 100})
		detail := checkProblem(t, s.do(http.MethodPost, ctJSON, zbuf.String(), "Content-Encoding", "gzip"), 413)
		if !strings.Contains(detail, "on the wire") || !strings.Contains(detail, "100 bytes decompressed") {
			t.Errorf("detail %q does not name the wire bound and the limit", detail)
		}
		if s.app.calls != 0 {
			t.Error("oversized request reached the producer")
		}
	})
}

// TestGzipReaderReuse sends gzip, corrupt gzip and plain requests at one
// handler from several goroutines: pooled readers must carry nothing from
// one request into another.
func TestGzipReaderReuse(t *testing.T) {
	s := newServer(Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	var zs [4][25]string
	for g := range 4 {
		for i := range 25 {
			zs[g][i] = gz(t, ev(fmt.Sprintf("g%d-%d", g, i), `"time":"2026-01-01T00:00:00Z"`))
		}
	}
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				id := fmt.Sprintf("g%d-%d", g, i)
				event := ev(id, `"time":"2026-01-01T00:00:00Z"`)
				z := zs[g][i]
				var w *httptest.ResponseRecorder
				want := http.StatusNoContent
				switch i % 3 {
				case 0:
					w = s.do(http.MethodPost, ctCE, z, "Content-Encoding", "gzip")
				case 1:
					w, want = s.do(http.MethodPost, ctCE, z[:len(z)-3], "Content-Encoding", "gzip"), http.StatusBadRequest
				case 2:
					w = s.do(http.MethodPost, ctCE, event)
				}
				if w.Code != want {
					errs <- fmt.Errorf("%s: status %d, want %d: %s", id, w.Code, want, w.Body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s.app.mu.Lock()
	defer s.app.mu.Unlock()
	got := map[string]bool{}
	for _, r := range s.app.records {
		got[string(r)] = true
	}
	for g := range 4 {
		for i := range 25 {
			event := ev(fmt.Sprintf("g%d-%d", g, i), `"time":"2026-01-01T00:00:00Z"`)
			if got[event] != (i%3 != 1) {
				t.Errorf("event %s stored = %v", event, got[event])
			}
		}
	}
	if want := 4 * (25 - 8); len(s.app.records) != want {
		t.Errorf("%d records, want %d", len(s.app.records), want)
	}
}

// FuzzGzipBody sends fuzzed bytes as a gzip body (must not panic; only 204,
// 400 or 413) and their gzip compression (must be answered and stored
// exactly as the same bytes sent uncompressed).
func FuzzGzipBody(f *testing.F) {
	f.Add([]byte(ev("a", `"time":"2026-01-01T00:00:00Z"`)))
	f.Add([]byte("[" + ev("a") + "," + ev("b") + "]"))
	f.Add([]byte(gz(f, ev("a"))))
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 4096
		send := func(body []byte, enc string) (int, [][]byte) {
			app := &recorder{}
			h := NewHandler(app, Config{MaxBodyBytes: limit, Now: func() time.Time { return fixedNow }}, ingestmetrics.New(nil), log)
			req := httptest.NewRequest(http.MethodPost, "/api/v1/events", bytes.NewReader(body))
			req.Header.Set("Content-Type", ctJSON)
			if enc != "" {
				req.Header.Set("Content-Encoding", enc)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			return w.Code, app.records
		}
		switch code, _ := send(in, "gzip"); code {
		case 204, 400, 413:
		default:
			t.Fatalf("raw bytes as gzip: status %d", code)
		}
		var zbuf bytes.Buffer
		zw := gzip.NewWriter(&zbuf)
		zw.Write(in)
		zw.Close()
		zcode, zrecs := send(zbuf.Bytes(), "gzip")
		pcode, precs := send(in, "")
		if zcode != pcode {
			t.Fatalf("gzip status %d, uncompressed %d", zcode, pcode)
		}
		if zcode == 204 {
			if len(zrecs) != len(precs) {
				t.Fatalf("gzip stored %d records, uncompressed %d", len(zrecs), len(precs))
			}
			for i := range zrecs {
				if !bytes.Equal(zrecs[i], precs[i]) {
					t.Fatalf("record %d: gzip %q, uncompressed %q", i, zrecs[i], precs[i])
				}
			}
		}
	})
}

// BenchmarkHandler500Gzip is BenchmarkHandler500 with the body gzip-compressed.
func BenchmarkHandler500Gzip(b *testing.B) {
	body := []byte(gz(b, string(benchBody())))
	h := NewHandler(discard{}, Config{}, ingestmetrics.New(nil), slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.SetBytes(int64(len(benchBody())))
	b.ReportAllocs()
	b.ResetTimer()
	postParallel(b, h, body, "gzip")
}
