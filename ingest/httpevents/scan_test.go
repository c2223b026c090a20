package httpevents

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func TestParseBodySyntaxErrors(t *testing.T) {
	cases := []struct {
		body string
		off  int
	}{
		{`{"id":"a",,}`, 10},
		{`[{"id":"a"`, 10},
		{`[{"id":"a"}`, 11},
		{`[{"id":"a"} {}]`, 12},
		{`{"a":tru}`, 8},
		{`{"a":01}`, 6},
		{`{"a":1.}`, 7},
		{`{"a":-}`, 6},
		{`{"a":1e}`, 7},
		{`{"a":"\x"}`, 7},
		{`{"a":"\u12g4"}`, 10},
		{"{\"a\":\"\x01\"}", 6},
		{`{"a":"abc`, 9},
		{`{"a" 1}`, 5},
		{`{a:1}`, 1},
		{`{} x`, 3},
		{`[1,]`, 3},
		{`[1 2]`, 3},
		{`}`, 0},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			if json.Valid([]byte(c.body)) {
				t.Fatal("test case is valid JSON")
			}
			_, _, err := parseBody(nil, []byte(c.body))
			se, ok := err.(*syntaxError)
			if !ok {
				t.Fatalf("err = %v, want a syntax error", err)
			}
			if se.off != c.off {
				t.Errorf("offset %d, want %d (%v)", se.off, c.off, err)
			}
		})
	}
}

// hasLoneSurrogate reports whether the valid JSON b has a \u escape of a
// UTF-16 surrogate that is not a high one followed by an escaped low one.
// In valid JSON every backslash is in a string, so a flat scan suffices.
func hasLoneSurrogate(b []byte) bool {
	isSurr := func(i int, lo, hi rune) bool {
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return false
		}
		v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
		return err == nil && rune(v) >= lo && rune(v) <= hi
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		switch {
		case isSurr(i, 0xD800, 0xDBFF):
			if !isSurr(i+6, 0xDC00, 0xDFFF) {
				return true
			}
			i += 11
		case isSurr(i, 0xDC00, 0xDFFF):
			return true
		default:
			i++ // skip the escaped character
		}
	}
	return false
}

func TestParseBodyDepthLimit(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	if _, _, err := parseBody(nil, []byte(deep)); err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Fatalf("err = %v", err)
	}
	ok := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	if _, _, err := parseBody(nil, []byte(ok)); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseAndValidate checks the hand-written scanner against
// encoding/json: the same inputs are valid (when they are also valid UTF-8
// without lone surrogate escapes, which encoding/json lets through as
// U+FFFD), arrays split into the same elements, and an event that passes
// validation has, per encoding/json, every required attribute as a
// non-empty string, specversion "1.0", an RFC 3339 time if any (year
// 0001-9999), object-or-null data, and an id of at most MaxIDBytes, not
// blank, without control characters.
func FuzzParseAndValidate(f *testing.F) {
	seeds := []string{
		`[{"id":"a","source":"s","type":"t","subject":"u","specversion":"1.0"}]`,
		`{"id":"a","source":"s","type":"t","subject":"u","specversion":"1.0","time":"2026-01-01T00:00:00Z","data":{"x":[1,2,{"y":null}]}}`,
		`{"\u0069d":"a","source":"s","type":"t","subject":"u","specversion":"1.0","data":null}`,
		`[ {"id":"a\"b","source":"s","type":"t","subject":"u","specversion":"1.0"} , 1, "x", [], {} ]`,
		`{"id":"a","id":"b"}`,
		`{"ID":"a","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`[1e5, -0.5E-3, true, false, null, "\ud83d\ude00"]`,
		`{"a":"` + "\xff\xfe" + `"}`,
		"\xef\xbb\xbf" + `{"id":"a","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`{"id":"` + "\xff" + `","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`{"id":"a","source":"s","type":"t","subject":"u","specversion":"1.0","data":{"k":"` + "\xc3\x28" + `"}}`,
		`{"id":"\ud800","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`{"id":"\udc00\ud800","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`{"id":"\ud83d\ude00","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`["\ud83d\u0041", "\ud83d"]`,
		`{"id":" ","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`{"id":"\u0000","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`{"id":"a\u0085b","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`{"id":"` + strings.Repeat("x", MaxIDBytes+1) + `","source":"s","type":"t","subject":"u","specversion":"1.0"}`,
		`{"id":"a","source":"s","type":"t","subject":"u","specversion":"1.0","time":"0000-01-01T00:00:00Z"}`,
		`{"id":"a","source":"s","type":"t","subject":"u","specversion":"1.0","time":"0001-01-01T00:30:00+01:00"}`,
		"{\"a\":\"\x01\"}",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		b := bytes.TrimSpace(in)
		if len(b) == 0 {
			return
		}
		events, isArray, err := parseBody(nil, b)
		valid := json.Valid(b) && utf8.Valid(b) && !hasLoneSurrogate(b) && !bytes.HasPrefix(b, bom)
		if (err == nil) != valid {
			t.Fatalf("parseBody err %v, json.Valid %v, utf8.Valid %v", err, json.Valid(b), utf8.Valid(b))
		}
		if err != nil {
			return
		}
		if isArray {
			var raws []json.RawMessage
			if err := json.Unmarshal(b, &raws); err != nil {
				t.Fatal(err)
			}
			if len(raws) != len(events) {
				t.Fatalf("%d elements, encoding/json %d", len(events), len(raws))
			}
			for i := range raws {
				if !bytes.Equal(raws[i], events[i]) {
					t.Fatalf("element %d %q, encoding/json %q", i, events[i], raws[i])
				}
			}
		} else if len(events) != 1 || !bytes.Equal(events[0], b) {
			t.Fatalf("single value split into %q", events)
		}
		for _, ev := range events {
			_, verr := validateEvent(ev)
			var ref map[string]json.RawMessage
			refErr := json.Unmarshal(ev, &ref)
			if refErr != nil {
				if verr == nil {
					t.Fatalf("%q passed validation but is not an object: %v", ev, refErr)
				}
				continue
			}
			refOK := true
			for _, k := range required {
				var s string
				if json.Unmarshal(ref[k], &s) != nil || s == "" {
					refOK = false
				}
			}
			var sv string
			if json.Unmarshal(ref["specversion"], &sv) != nil || sv != "1.0" {
				refOK = false
			}
			if raw, ok := ref["time"]; ok {
				var s string
				if json.Unmarshal(raw, &s) != nil {
					refOK = false
				} else if tm, err := time.Parse(time.RFC3339Nano, s); err != nil || tm.Year() < 1 {
					refOK = false
				}
			}
			var id string
			if json.Unmarshal(ref["id"], &id) != nil || len(id) > MaxIDBytes || strings.TrimSpace(id) == "" ||
				strings.IndexFunc(id, unicode.IsControl) >= 0 {
				refOK = false
			}
			if raw, ok := ref["data"]; ok && raw[0] != '{' && string(raw) != "null" {
				refOK = false
			}
			if verr == nil && !refOK {
				t.Fatalf("%q passed validation, encoding/json disagrees", ev)
			}
			if verr != nil && refOK && !strings.Contains(verr.Error(), "more than once") {
				t.Fatalf("%q rejected (%v), encoding/json finds it valid", ev, verr)
			}
		}
	})
}

// BenchmarkParseValidate500 measures the scanner alone (parseBody and
// validateEvent) on BenchmarkHandler500's body, without the HTTP plumbing
// whose noise hides small changes to the scanner.
func BenchmarkParseValidate500(b *testing.B) {
	body := benchBody()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var events [][]byte
	for b.Loop() {
		var err error
		events, _, err = parseBody(events[:0], body)
		if err != nil {
			b.Fatal(err)
		}
		for _, ev := range events {
			if _, err := validateEvent(ev); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestMediaModeFastPathAgrees: the exact-match fast path of mediaMode
// answers as mime.ParseMediaType's path does for the same types, and a
// near miss (case, parameters, spaces) still takes the parsing path.
func TestMediaModeFastPathAgrees(t *testing.T) {
	for _, ct := range []string{ctSingle, ctBatch, ctJSON,
		"Application/CloudEvents+JSON", ctBatch + "; charset=utf-8", ctJSON + " ", ctJSON + ";charset=latin1",
		"application/cloudevents+json;", "text/plain", ""} {
		got, gerr := mediaMode(ct)
		want, werr := mediaModeParsed(ct)
		if got != want || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
			t.Errorf("%q: fast %v %v, parsed %v %v", ct, got, gerr, want, werr)
		}
	}
}
