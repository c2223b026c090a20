package importer

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"
)

// sameAsSDK checks that Event (fast path first) gives exactly what the
// SDK path alone gives: the same record bytes, or the same error text. It
// reports whether the fast path itself took the row.
func sameAsSDK(t *testing.T, m *Mapper, row Row, v Vars) (fastTook bool) {
	t.Helper()
	fastRec, fastErr := buildEvent(m, row, v, true)
	sdkRec, sdkErr := buildEvent(m, row, v, false)
	switch {
	case (fastErr == nil) != (sdkErr == nil):
		t.Fatalf("row %q: fast path err %v, SDK path err %v", row.Raw, fastErr, sdkErr)
	case fastErr != nil && errLines(fastErr) != errLines(sdkErr):
		t.Fatalf("row %q: fast path err %q, SDK path err %q", row.Raw, fastErr, sdkErr)
	case !bytes.Equal(fastRec, sdkRec):
		t.Fatalf("row %q:\nfast path %s\nSDK path  %s", row.Raw, fastRec, sdkRec)
	}
	// The same with what the fast path remembers of earlier rows (another
	// row's source, then this one's): the second call skips the work the
	// first one proved.
	if v.seen == nil {
		v.seen = &seen{source: "//x/y"}
		for range 2 {
			rec, err := buildEvent(m, row, v, true)
			if (err == nil) != (sdkErr == nil) || err != nil && errLines(err) != errLines(sdkErr) || !bytes.Equal(rec, sdkRec) {
				t.Fatalf("row %q, with seen %+v: %s, %v; SDK path %s, %v", row.Raw, *v.seen, rec, err, sdkRec, sdkErr)
			}
		}
	}
	if row.Object != nil {
		_, took := fastCloudEvent(row, v)
		// Event checks an unchecked row (an NDJSON line) for valid JSON
		// only when the fast path declines it.
		if took && !json.Valid(row.Object) {
			t.Fatalf("row %q: the fast path took a row that is not valid JSON", row.Object)
		}
		if !row.unchecked && row.Object[0] == '{' {
			row.unchecked = true
			sameAsSDK(t, m, row, v)
		}
		return took
	}
	return false
}

// errLines is err's words, sorted: the SDK's validation error lists the
// failing attributes in map order, which varies between calls.
func errLines(err error) string {
	l := strings.Fields(err.Error())
	sort.Strings(l)
	return strings.Join(l, " ")
}

var fastCERows = []struct {
	row  string
	fast bool // the fast path takes it (else the SDK path decides)
}{
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","time":"2026-11-01T10:00:00Z","data":{"n":1}}`, true},
	{`{"specversion":"1.0","source":"s","type":"t","subject":"c","data":{"n":1}}`, true}, // derived id, object time
	{` { "data" : {"n": [1, {"x":"}"}]} , "subject":"c","type":"t","source":"//x/y","specversion":"1.0","time":"2026-11-01T12:00:00.5+02:00"} `, true},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","datacontenttype":"application/json","data":{}}`, true},
	{"{\"specversion\":\"1.0\",\"id\":\"a1\",\"source\":\"s\",\"type\":\"t\",\"subject\":\"c\",\"data\":{\"h\": \"<a&b>\\u2028\u2028\", \"e\":\"\\\"\\n\"}}", true},
	// Declined by the fast path: the SDK path decides (accept or error).
	{`{"specversion":"1.0","id":" a1","source":"s","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"a\u00e91","source":"s","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","data":{},"ext1":"x"}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","data":{},"Bad_Ext":"x"}`, false},
	{`{"specversion":"0.3","id":"a1","source":"s","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"2.0","id":"a1","source":"s","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"","source":"s","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","data":[1]}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","data":"x"}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c"}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","time":"yesterday","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"%zz","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"HTTP://X/a b","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","id":"a2","source":"s","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","datacontenttype":"text/plain","data":{}}`, false},
	{`{"specversion":"1.0","id":1,"source":"s","type":"t","subject":"c","data":{}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","data":{"n":}}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","data":{"n":1}} x`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","data":{"n":1}`, false},
	{`{"x":{"specversion":"1.0"},"id":"a1"}`, false},
	{`{"specversion":"1.0","id":"a1","source":"s","type":"t","subject":"c","data":{"s":"\xff"}}`, false},
	{`{"specversion":"1.0","id":"a<1","source":"s","type":"t","subject":"c","data":{}}`, false},
}

func TestFastPathMatchesSDK(t *testing.T) {
	m, err := Compile(Mapping{Type: `"t"`, Subject: `row.customer`})
	if err != nil {
		t.Fatal(err)
	}
	v := Vars{Object: "usage/x.ndjson", ObjectTime: objTime}
	for i, tc := range fastCERows {
		row := Row{N: int64(i + 1), Raw: []byte(tc.row), Object: []byte(tc.row)}
		if took := sameAsSDK(t, m, row, v); took != tc.fast {
			t.Errorf("row %d %s: fast path took it = %v, want %v", i, tc.row, took, tc.fast)
		}
	}
}

func TestFastMappedMatchesSDK(t *testing.T) {
	header := []string{"customer", "tokens", "model", "ts", "src", "id"}
	maps := []Mapping{
		{Type: `"llm-tokens"`, Source: `"billing-export"`, Subject: `row.customer`, Time: `row.ts`,
			Data: map[string]string{"tokens": `int(row.tokens)`, "model": `row.model`}},
		{Type: `"t"`, Source: `row.src`, Subject: `row.customer`, ID: `row.id`, Time: `row.ts`},
		{Type: `row.model`, Subject: `row.customer`, Data: map[string]string{"x": `{"a": [1, 2.5, "<&>"], "b": null}`}},
	}
	rows := [][]string{
		{"customer-1", "12", "big", "2026-11-01T10:00:00.123Z", "s", "id-1"},
		{"c 2", "12", "big", "2026-11-01T10:00:00+05:30", "//host/p?q=1", "id-2"},
		{" c3", "1", "m", "2026-11-01T10:00:00Z", "s", "id"},   // SDK trims the subject
		{"c4 ", "1", "m", "2026-11-01T10:00:00Z", "s", " id "}, // and the id
		{"", "1", "m", "2026-11-01T10:00:00Z", "s", "id"},
		{"c5", "x", "m", "2026-11-01T10:00:00Z", "s", "id"},
		{"c6", "1", "", "2026-11-01T10:00:00Z", "", ""},
		{"c7", "1", "m", "nope", "s", "id"},
		{"c8", "1", "m\"q", "2026-11-01T10:00:00Z", "a b", "i\\d"},
		{"cé", "1", "ü", "2026-11-01T10:00:00Z", "%zz", "id\x01"},
		{"c9", "1", "m", "0001-01-01T00:00:00Z", "HTTP://X/", "id"},
		{"c10", "1", "m", "2026-11-01T10:00:00Z", "s", strings.Repeat("i", 300)},
	}
	for mi, mp := range maps {
		m, err := Compile(mp)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range rows {
			row := Row{N: int64(i + 1), Raw: []byte(strings.Join(f, ",")), Header: header, Fields: f}
			t.Run("", func(t *testing.T) {
				sameAsSDK(t, m, row, Vars{Object: "o.csv", ObjectTime: objTime})
			})
			_ = mi
		}
	}
}

func FuzzFastPath(f *testing.F) {
	for _, tc := range fastCERows {
		f.Add(tc.row, "c", "s", "2026-11-01T10:00:00Z")
	}
	f.Add("", " c", "//a/b", "2026-11-01T10:00:00+01:00")
	m, err := Compile(Mapping{Type: `"t"`, Source: `row.src`, Subject: `row.customer`, Time: `row.ts`,
		Data: map[string]string{"c": `row.customer`}})
	if err != nil {
		f.Fatal(err)
	}
	v := Vars{Object: "o", ObjectTime: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	f.Fuzz(func(t *testing.T, obj, customer, src, ts string) {
		if obj != "" {
			sameAsSDK(t, m, Row{N: 1, Raw: []byte(obj), Object: []byte(obj)}, v)
		}
		f := []string{customer, src, ts}
		sameAsSDK(t, m, Row{N: 2, Raw: []byte(customer + src + ts), Header: []string{"customer", "src", "ts"}, Fields: f}, v)
	})
}
