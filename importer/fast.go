package importer

import (
	"bytes"
	"encoding/json"
	"net/url"
	"time"

	"github.com/bucketq/bucketq/ingest/httpevents"
)

// The fast path builds a row's record without the CloudEvents SDK round
// trip (event.Event, Validate, jsoniter marshal), which was ~77 % of the
// import's CPU (BENCHMARKS.md §9). It is deliberately conservative: it
// only accepts rows for which the record it writes is, byte for byte, what
// the SDK path writes, and declines (returns ok=false) on anything else —
// escapes or non-ASCII in attributes, leading/trailing spaces (the SDK
// trims), a source the SDK would re-spell, extensions, an unusual
// datacontenttype, a record the front door's rules refuse. A declined row
// goes through the SDK path, so what is accepted and every error message
// stay exactly those of the SDK (TestFastPathMatchesSDK, FuzzFastPath).

// plain reports whether s is written unchanged by the SDK (and by the
// encoding/json.Marshal around it in ceappend.Encode, which HTML-escapes)
// and is not trimmed by it: printable ASCII, none of '"', '\\', '<', '>',
// '&', no space at either end, not empty.
func plain(s []byte) bool {
	if len(s) == 0 || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// plainSource: plain, and url.Parse(s).String() == s (the SDK stores the
// parsed URL and writes its String()). The rows of an object mostly share
// one source: with sn, the last source accepted is not parsed again.
func plainSource(sn *seen, s string) bool {
	if sn != nil && sn.source != "" && sn.source == s {
		return true
	}
	if !plain([]byte(s)) {
		return false
	}
	u, err := url.Parse(s)
	ok := err == nil && u.String() == s
	if ok && sn != nil {
		sn.source = s
	}
	return ok
}

// fastRecord writes the record in the SDK's order (event.WriteJson for
// spec 1.0 without extensions). dct is written only if non-empty.
func fastRecord(dst []byte, id, source, typ, subject, dct string, t time.Time, data []byte) []byte {
	dst = append(dst, `{"specversion":"1.0","id":"`...)
	dst = append(dst, id...)
	dst = append(dst, `","source":"`...)
	dst = append(dst, source...)
	dst = append(dst, `","type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, `","subject":"`...)
	dst = append(dst, subject...)
	dst = append(dst, '"')
	if dct != "" {
		dst = append(dst, `,"datacontenttype":"`...)
		dst = append(dst, dct...)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"time":"`...)
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// fastMapped is the fast path of Mapper.event; data is the value to
// encode as the event's data (the SDK encodes it with encoding/json).
func fastMapped(sn *seen, id, source, typ, subject string, t time.Time, data any) ([]byte, bool) {
	if t.IsZero() || !plain([]byte(id)) || !plain([]byte(typ)) || !plain([]byte(subject)) || !plainSource(sn, source) {
		return nil, false
	}
	d, err := json.Marshal(data)
	if err != nil || len(d) == 0 || d[0] != '{' {
		return nil, false
	}
	rec := fastRecord(make([]byte, 0, 128+len(id)+len(source)+len(typ)+len(subject)+len(d)),
		id, source, typ, subject, "application/json", t, d)
	if httpevents.ValidateRecord(rec) != nil {
		return nil, false
	}
	return rec, true
}

// fastCloudEvent is the fast path of a CloudEvents row: a flat object of
// only specversion "1.0", id, source, type, subject, time,
// datacontenttype "application/json" and an object data, each at most
// once. A missing id is derived and a missing time is v.ObjectTime, as on
// the SDK path.
func fastCloudEvent(row Row, v Vars) ([]byte, bool) {
	b := row.Object
	var vals [len(ceAttrs)][]byte
	var seen [len(ceAttrs)]bool
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i = skipWS(b, i+1)
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		k, j, ok := plainString(b, i)
		if !ok {
			return nil, false
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipWS(b, i+1)
		slot := -1
		for j, name := range ceAttrs {
			if string(k) == name {
				slot = j
			}
		}
		if slot < 0 {
			return nil, false // an extension or unknown attribute: the SDK decides
		}
		if seen[slot] {
			return nil, false
		}
		seen[slot] = true
		if ceAttrs[slot] == "data" {
			if i >= len(b) || b[i] != '{' {
				return nil, false
			}
			j, ok := skipJSON(b, i)
			if !ok {
				return nil, false
			}
			vals[slot] = canonicalData(b[i:j])
			i = j
		} else {
			if i >= len(b) || b[i] != '"' {
				return nil, false
			}
			s, j, ok := plainString(b, i)
			if !ok || !plain(s) {
				return nil, false
			}
			vals[slot] = s
			i = j
		}
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			i++
			break
		}
		return nil, false
	}
	spec, id, source, typ, subject, tim, dct, data := vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6], vals[7]
	if skipWS(b, i) != len(b) || string(spec) != "1.0" || data == nil || subject == nil || source == nil || typ == nil {
		return nil, false
	}
	if dct != nil && string(dct) != "application/json" {
		return nil, false
	}
	t := v.ObjectTime
	if tim != nil {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, string(tim)); err != nil {
			return nil, false
		}
	}
	ids := string(id)
	if id == nil {
		ids = DerivedID(v.Object, row.N, row.Raw)
	}
	if t.IsZero() || !plainSource(v.seen, string(source)) {
		return nil, false
	}
	rec := fastRecord(make([]byte, 0, len(b)+64), ids, string(source), string(typ), string(subject), string(dct), t, data)
	if httpevents.ValidateRecord(rec) != nil {
		return nil, false
	}
	return rec, true
}

// ceAttrs are the attributes of a fast-path CloudEvents row, in the
// order of vals in fastCloudEvent.
var ceAttrs = [...]string{"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at b[i] == '"' and returns its
// contents; ok is false if it has an escape or is unterminated.
func plainString(b []byte, i int) (s []byte, end int, ok bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			return b[i+1 : j], j + 1, true
		case '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// skipJSON skips the object or array at b[i] by bracket depth, strings
// aware; its syntax is checked afterwards by ValidateRecord on the record.
func skipJSON(b []byte, i int) (int, bool) {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			for j++; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					j++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1, true
			}
		}
	}
	return 0, false
}

// canonicalData is data as ceappend.Encode writes it: encoding/json.Marshal
// compacts the SDK's output and HTML-escapes its strings (<, >, &, U+2028,
// U+2029). Most data needs neither, and is returned as it is.
func canonicalData(d []byte) []byte {
	clean := true
	for _, c := range d {
		switch c {
		case ' ', '\t', '\n', '\r', '<', '>', '&', 0xe2:
			clean = false
		}
	}
	if clean {
		return d
	}
	var c, h bytes.Buffer
	if json.Compact(&c, d) != nil {
		return d // invalid: ValidateRecord refuses the record, the SDK decides
	}
	json.HTMLEscape(&h, c.Bytes())
	return h.Bytes()
}
