package reqbody

import (
	"bytes"
	"compress/gzip"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func gzipOf(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readBody runs ReadBody on a request with the given body and
// Content-Encoding values.
func readBody(body []byte, max int64, budget *Budget, enc ...string) ([]byte, error) {
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	for _, e := range enc {
		req.Header.Add("Content-Encoding", e)
	}
	rd := New(httptest.NewRecorder(), req, budget, Limits{})
	defer rd.Release()
	var dst bytes.Buffer
	err := rd.ReadBody(&dst, max)
	return dst.Bytes(), err
}

func TestParseEncoding(t *testing.T) {
	for _, c := range []struct {
		vals []string
		want Encoding
		bad  bool
	}{
		{nil, Identity, false},
		{[]string{""}, Identity, false},
		{[]string{"identity"}, Identity, false},
		{[]string{"gzip"}, Gzip, false},
		{[]string{" X-Gzip "}, Gzip, false},
		{[]string{"identity, gzip"}, Gzip, false},
		{[]string{"identity", "gzip"}, Gzip, false},
		{[]string{"gzip", "gzip"}, Identity, true},
		{[]string{"gzip, br"}, Identity, true},
		{[]string{"zstd"}, Identity, true},
		{[]string{"deflate"}, Identity, true},
	} {
		hdr := http.Header{}
		for _, v := range c.vals {
			hdr.Add("Content-Encoding", v)
		}
		got, err := ParseEncoding(hdr)
		var ee *EncodingError
		if c.bad != errors.As(err, &ee) || got != c.want {
			t.Errorf("%q: %v, %v; want %v, error %v", c.vals, got, err, c.want, c.bad)
		}
	}
}

// TestReadBodyErrors checks the error type of each failure and its answer.
func TestReadBodyErrors(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100)
	z := gzipOf(t, data)
	for _, c := range []struct {
		name   string
		body   []byte
		enc    string
		max    int64
		budget int64
		status int
		as     any
	}{
		{"identity at the limit", data, "", 1000, 0, 0, nil},
		{"gzip at the limit", z, "gzip", 1000, 0, 0, nil},
		{"identity over", data, "", 999, 0, 413, new(*TooLargeError)},
		{"gzip over decoded", z, "gzip", 999, 0, 413, new(*TooLargeError)},
		{"unsupported", data, "zstd", 1000, 0, 415, new(*EncodingError)},
		{"truncated gzip", z[:len(z)-4], "gzip", 1000, 0, 400, new(*DecodeError)},
		{"empty gzip", nil, "gzip", 1000, 0, 400, new(*DecodeError)},
		{"budget", data, "", 1000, 100, 429, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b *Budget
			if c.budget > 0 {
				b = NewBudget(c.budget)
			}
			got, err := readBody(c.body, c.max, b, c.enc)
			if c.status == 0 {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("err %v, %d bytes", err, len(got))
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if c.as != nil && !errors.As(err, c.as) {
				t.Errorf("error %T %v, want %T", err, err, c.as)
			}
			if f := Answer(err); f.Status != c.status {
				t.Errorf("Answer %d, want %d", f.Status, c.status)
			}
			if b.Used() != 0 {
				t.Errorf("budget used %d after Release", b.Used())
			}
		})
	}
}

// FuzzReadBody: any bytes as a gzip body give the body or one of
// ReadBody's errors, never a panic or more than max bytes; the gzip of any
// bytes decodes to them exactly (or is over the limit).
func FuzzReadBody(f *testing.F) {
	f.Add([]byte("hello"))
	f.Add(gzipOf(f, []byte("hello")))
	f.Add(append(gzipOf(f, []byte("a")), gzipOf(f, []byte("b"))...))
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"))
	const max = 4096
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := readBody(in, max, nil, "gzip")
		if len(got) > max+1 {
			t.Fatalf("read %d bytes, limit %d", len(got), max)
		}
		if err != nil {
			var (
				big *TooLargeError
				dec *DecodeError
				rd  *ReadError
			)
			if !errors.As(err, &big) && !errors.As(err, &dec) && !errors.As(err, &rd) {
				t.Fatalf("unexpected error %T: %v", err, err)
			}
			if s := Answer(err).Status; s != 400 && s != 413 {
				t.Fatalf("status %d for %v", s, err)
			}
		}
		got, err = readBody(gzipOf(t, in), max, nil, "gzip")
		switch {
		case len(in) > max:
			var big *TooLargeError
			if !errors.As(err, &big) {
				t.Fatalf("%d bytes over the limit: %v", len(in), err)
			}
		case err != nil:
			t.Fatalf("gzip of %d bytes: %v", len(in), err)
		case !bytes.Equal(got, in):
			t.Fatalf("decoded %q, want %q", got, in)
		}
		if plain, err := readBody(in, max, nil); len(in) <= max && (err != nil || !bytes.Equal(plain, in)) {
			t.Fatalf("identity: %v", err)
		}
	})
}
