package otlpconv

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The events are written by appending to one buffer instead of building
// maps and running encoding/json over them. The output is byte for byte
// what json.Encoder with SetEscapeHTML(false) writes for the same values
// (map keys sorted, the same string escapes and float format);
// TestJSONWriterMatchesEncodingJSON holds it to that. One difference, on
// purpose: a NaN or infinite float, which encoding/json refuses, is
// written as null (mapped data fields reject such values before they get
// here, see toJSON).

// appendString appends s as a JSON string, escaped as encoding/json does
// without HTML escaping.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return appendStringSlow(dst, s)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func appendStringSlow(dst []byte, src string) []byte {
	const hexd = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(src); {
		if b := src[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, src[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexd[b>>4], hexd[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(src[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, src[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, src[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexd[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, src[start:]...)
	return append(dst, '"')
}

// appendFloat writes f as encoding/json does; NaN and ±Inf as null.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// int64s are unsigned counts written as int64 (as the `point` variable
// holds them); float64s are written as a JSON array of numbers. Both
// write [] when empty.
type (
	int64s   []uint64
	float64s []float64
)

// appendValue appends v, one of the values attrs, anyValue, toJSON and the
// default data produce.
func appendValue(dst []byte, v any) []byte {
	switch t := v.(type) {
	case nil:
		return append(dst, "null"...)
	case string:
		return appendString(dst, t)
	case bool:
		return strconv.AppendBool(dst, t)
	case int64:
		return strconv.AppendInt(dst, t, 10)
	case uint64:
		return strconv.AppendUint(dst, t, 10)
	case float64:
		return appendFloat(dst, t)
	case []byte:
		if t == nil {
			return append(dst, "null"...)
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, t)
		return append(dst, '"')
	case []any:
		if t == nil {
			return append(dst, "null"...)
		}
		dst = append(dst, '[')
		for i, e := range t {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		if t == nil {
			return append(dst, "null"...)
		}
		return appendMap(dst, t)
	case int64s:
		dst = append(dst, '[')
		for i, e := range t {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, int64(e), 10)
		}
		return append(dst, ']')
	case float64s:
		dst = append(dst, '[')
		for i, e := range t {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendFloat(dst, e)
		}
		return append(dst, ']')
	}
	// Not produced by this package; kept correct rather than fast.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return append(dst, "null"...)
	}
	return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// appendMap writes m with its keys sorted, as encoding/json does.
func appendMap(dst []byte, m map[string]any) []byte {
	var small [16]string
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, strings.Compare)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendValue(dst, m[k])
	}
	return append(dst, '}')
}

// field is one field of the built-in default data, typed so that building
// it allocates nothing.
type field struct {
	key  string
	kind fieldKind
	s    string
	n    int64 // int, or a time in ns since the epoch
	f    float64
	b    bool
	raw  []byte // hex ids
	v    any
}

type fieldKind uint8

const (
	fAny fieldKind = iota
	fString
	fInt
	fFloat
	fBool
	fTimeNs // RFC 3339 of time.Unix(0, n)
	fHex    // lower-case hex of raw
)

func (f *field) appendTo(dst []byte) []byte {
	switch f.kind {
	case fString:
		return appendString(dst, f.s)
	case fInt:
		return strconv.AppendInt(dst, f.n, 10)
	case fFloat:
		return appendFloat(dst, f.f)
	case fBool:
		return strconv.AppendBool(dst, f.b)
	case fTimeNs:
		return appendTime(dst, time.Unix(0, f.n))
	case fHex:
		const hexd = "0123456789abcdef"
		dst = append(dst, '"')
		for _, c := range f.raw {
			dst = append(dst, hexd[c>>4], hexd[c&0xf])
		}
		return append(dst, '"')
	}
	return appendValue(dst, f.v)
}

// appendFields writes fs as a JSON object with its keys sorted (fs is
// sorted in place; keys are unique).
func appendFields(dst []byte, fs []field) []byte {
	slices.SortFunc(fs, func(a, b field) int { return strings.Compare(a.key, b.key) })
	dst = append(dst, '{')
	for i := range fs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, fs[i].key)
		dst = append(dst, ':')
		dst = fs[i].appendTo(dst)
	}
	return append(dst, '}')
}
