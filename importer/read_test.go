package importer

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// readAll lists the Next results: a row's number and text, "!N" for a bad row
// N, "X" for a stream error.
func readAll(t testing.TB, name string, f Format, data []byte, maxRow int) []string {
	rc, _, err := Decompress(name, bytes.NewReader(data))
	if err != nil {
		return []string{"open: " + err.Error()}
	}
	defer rc.Close()
	rr, _, err := NewRowReader(name, f, rc, maxRow)
	if err != nil {
		return []string{"format: " + err.Error()}
	}
	var out []string
	for i := 0; i < 10000; i++ {
		row, err := rr.Next()
		var re *RowError
		var se *StreamError
		switch {
		case errors.Is(err, io.EOF):
			return out
		case errors.As(err, &re):
			out = append(out, "!"+itoa(re.Row))
		case errors.As(err, &se):
			return append(out, "X"+itoa(se.Row))
		case err != nil:
			t.Fatalf("unexpected error type %T: %v", err, err)
		default:
			out = append(out, itoa(row.N)+":"+string(row.Raw))
		}
	}
	t.Fatal("reader never ended")
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func zst(s string) []byte {
	w, _ := zstd.NewWriter(nil)
	return w.EncodeAll([]byte(s), nil)
}

func TestRowReaders(t *testing.T) {
	nd := "{\"a\":1}\n\n  {\"b\":2}\r\nnot json\n[1]\n{\"c\":3}"
	var many strings.Builder
	many.WriteString("{\"a\":1}\n")
	for i := 0; i < 20000; i++ {
		many.WriteString("{\"n\":" + itoa(int64(i*7919%100003)) + "}\n")
	}
	truncated := gz(many.String())
	truncated = truncated[:len(truncated)/2]
	for _, tc := range []struct {
		name   string
		object string
		format Format
		data   []byte
		want   string
	}{
		{"ndjson", "x.ndjson", FormatAuto, []byte(nd), `1:{"a":1} 3:{"b":2} !4 !5 6:{"c":3}`},
		{"ndjson gzip", "x.ndjson.gz", FormatAuto, gz(nd), `1:{"a":1} 3:{"b":2} !4 !5 6:{"c":3}`},
		{"ndjson zstd sniffed", "x.zst", FormatAuto, zst(nd), `1:{"a":1} 3:{"b":2} !4 !5 6:{"c":3}`},
		{"ndjson bom", "x.jsonl", FormatAuto, []byte("\xef\xbb\xbf{\"a\":1}\n"), `1:{"a":1}`},
		{"ndjson long line", "x.ndjson", FormatAuto, []byte("{\"a\":\"" + strings.Repeat("x", 100) + "\"}\n{\"b\":2}\n"), `!1 2:{"b":2}`},
		{"empty", "x.json", FormatAuto, nil, ``},
		{"csv header only", "u.csv", FormatAuto, []byte("id,n\n"), ``},
		{"csv header only, no newline", "u.csv.gz", FormatAuto, gz("id,n"), ``},
		{"csv ragged rows", "u.csv", FormatAuto, []byte("a,b,c\n1,2,3\n1,2\n1,2,3,4\n,,\n"), `1:1,2,3 !2 !3 4:,,`},
		{"json array never closes", "a.json", FormatJSON, []byte(`[{"a":1},{"b":2},`), `1:{"a":1} 2:{"b":2} X3`},
		{"json empty array", "a.json", FormatJSON, []byte(`[]`), ``},
		{"empty gzip", "x.csv.gz", FormatAuto, gz(""), ``},
		{"csv", "u.csv", FormatAuto, []byte("id,n\n1,2\n3\n\"4\",5\n"), `1:1,2 !2 3:4,5`},
		{"csv bad quote", "u.csv", FormatAuto, []byte("id,n\n1,x\"y\n5,6\n"), `!1 2:5,6`},
		{"csv crlf and quotes", "u.CSV.gz", FormatAuto, gz("a,b\r\n\"x,1\",\"l1\nl2\"\r\n"), `1:"x,1","l1` + "\n" + `l2"`},
		{"csv duplicate header", "u.csv", FormatAuto, []byte("a,a\n1,2\n"), `X0`},
		{"csv unterminated quote", "u.csv", FormatAuto, []byte("a\n\"" + strings.Repeat("y\n", 80000)), `X1`},
		{"json array", "a.json", FormatAuto, []byte(` [{"a":1}, 2, {"b":[1]}] `), `1:{"a":1} !2 3:{"b":[1]}`},
		{"json array broken", "a.json", FormatAuto, []byte(`[{"a":1}, {"b":}]`), `1:{"a":1} X2`},
		{"json array truncated", "a.json", FormatJSON, []byte(`[{"a":1}, {"b"`), `1:{"a":1} X2`},
		{"json not array", "a.json", FormatJSON, []byte(`{"a":1}`), `X1`},
		{"truncated gzip", "t.ndjson.gz", FormatAuto, truncated, "..."},
		{"gz name, plain bytes", "t.ndjson.gz", FormatAuto, []byte("{}\n"), "open: the name says gzip but the object does not start with the gzip magic bytes"},
		{"unknown", "t.txt", FormatAuto, []byte("hello"), "format: cannot tell the format: the first byte is 'h', want '[' (JSON array) or '{' (NDJSON); name CSV objects *.csv or pass --format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(readAll(t, tc.object, tc.format, tc.data, 64), " ")
			if tc.want == "..." {
				if !strings.HasPrefix(got, `1:{"a":1}`) || !strings.Contains(got, " X") {
					t.Fatalf("got %.200q, want rows then a stream error", got)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// The fuzz targets check the readers' contract on any input: no panic,
// rows numbered upwards, each row's text within the bound, and an end.
func fuzzReader(f *testing.F, name string, format Format, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxRow = 256
		rr, _, err := NewRowReader(name, format, bytes.NewReader(data), maxRow)
		if err != nil {
			t.Fatal(err)
		}
		last := int64(-1)
		for i := 0; ; i++ {
			if i > len(data)+2 {
				t.Fatalf("more results (%d) than input bytes", i)
			}
			row, err := rr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			var re *RowError
			var se *StreamError
			n := row.N
			switch {
			case errors.As(err, &re):
				n = re.Row
				if len(re.Raw) > maxRow+guardSlack {
					t.Fatalf("bad row text of %d bytes", len(re.Raw))
				}
			case errors.As(err, &se):
				return
			case err != nil:
				t.Fatalf("error of type %T: %v", err, err)
			default:
				if len(row.Raw) > 2*maxRow+guardSlack {
					t.Fatalf("row of %d bytes over the bound", len(row.Raw))
				}
				if row.Object == nil && len(row.Fields) != len(row.Header) {
					t.Fatalf("row with %d fields, header %d", len(row.Fields), len(row.Header))
				}
			}
			if n <= last {
				t.Fatalf("row %d after row %d", n, last)
			}
			last = n
		}
	})
}

func FuzzNDJSONReader(f *testing.F) {
	fuzzReader(f, "x.ndjson", FormatNDJSON, "{\"a\":1}\n\n{\"b\":2}\nnope\n", "\xef\xbb\xbf{}\n", strings.Repeat("x", 300)+"\n{}")
}

func FuzzCSVReader(f *testing.F) {
	fuzzReader(f, "x.csv", FormatCSV, "a,b\n1,2\n3\n\"x\",\"y\"\n", "a,a\n", "a\n\"unterminated\n", "a,b\r\n1,x\"y\r\n")
}

func FuzzJSONArrayReader(f *testing.F) {
	fuzzReader(f, "x.json", FormatJSON, `[{"a":1},2,{"b":[1]}]`, `[`, `[{"a":1}] x`, `{}`)
}

// endless yields n bytes: prefix, then fill repeated, never a newline.
type endless struct {
	prefix []byte
	fill   byte
	n      int64
}

func (e *endless) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && e.n > 0 {
		if len(e.prefix) > 0 {
			p[k] = e.prefix[0]
			e.prefix = e.prefix[1:]
		} else {
			p[k] = e.fill
		}
		k++
		e.n--
	}
	return k, nil
}

// TestRowReadersRefuseHugeRowsInBoundedMemory: a 256 MiB row (one line,
// one CSV field, one array element, no end) is refused with an error
// naming the row and the limit, and is never held in memory: the readers
// allocate little more than the limit while reading it.
func TestRowReadersRefuseHugeRowsInBoundedMemory(t *testing.T) {
	const huge = 256 << 20
	for _, tc := range []struct {
		name, object string
		prefix       string
	}{
		{"ndjson line", "x.ndjson", `{"a":"`},
		{"csv field", "x.csv", "a\n"},
		{"json array element", "x.json", `[{"a":"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			rr, _, err := NewRowReader(tc.object, FormatAuto, &endless{prefix: []byte(tc.prefix), fill: 'x', n: huge}, DefaultMaxRowBytes)
			if err != nil {
				t.Fatal(err)
			}
			var errs []string
			for {
				_, err := rr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err == nil {
					t.Fatal("a row of 256 MiB was returned")
				}
				errs = append(errs, err.Error())
				var se *StreamError
				if errors.As(err, &se) {
					break
				}
			}
			runtime.ReadMemStats(&after)
			if len(errs) == 0 || !strings.Contains(errs[0], "1") || !strings.Contains(strings.Join(errs, "; "), "1048576") {
				t.Fatalf("errors %q: want row 1 refused, naming the limit 1048576", errs)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16*DefaultMaxRowBytes {
				t.Fatalf("reading a %d-byte row allocated %d bytes: it was buffered", huge, alloc)
			}
			t.Logf("%s: %q; allocated %d KiB", tc.name, errs, (after.TotalAlloc-before.TotalAlloc)>>10)
		})
	}
}

// TestNDJSONBrokenObjectIsARowError: an NDJSON line that starts with '{'
// but is not valid JSON is read as a row (its JSON is checked after the
// fast path declines it), and Event refuses it with the error the reader
// gives a line that is not an object at all, so it is the same import_row
// dead letter as when the reader checked it.
func TestNDJSONBrokenObjectIsARowError(t *testing.T) {
	for _, line := range []string{`{"specversion":"1.0","id":"broken`, `{"a":}`, `{"a":1} x`, `{"a":"\x"}`} {
		rr, _, err := NewRowReader("x.ndjson", FormatAuto, strings.NewReader(line+"\n"), DefaultMaxRowBytes)
		if err != nil {
			t.Fatal(err)
		}
		row, err := rr.Next()
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		_, err = Event(nil, row, Vars{Object: "x.ndjson"})
		if err == nil || err.Error() != notJSONObject([]byte(line)).Error() || !strings.HasPrefix(err.Error(), "not a JSON object: ") {
			t.Errorf("%q: Event error %v, want %v", line, err, notJSONObject([]byte(line)))
		}
	}
}
