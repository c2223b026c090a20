package openmetertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
	"unsafe"
)

// How a request body becomes events, fast: one pass over the bytes checks
// the JSON syntax of everything (as strictly as encoding/json: RFC 8259
// grammar, no control characters in strings, valid escapes, nesting at most
// 10000 deep) and, in each event, picks out the members OpenMeter checks.
// No maps are built and nothing is copied: an Event's Raw and Data are
// slices of the body, which the server owns, and its unescaped strings
// alias it. The rules are the ones a
// decode of every event into a map applies (later duplicate keys win, as in
// encoding/json; escaped keys and strings are decoded); scan_test.go checks
// the two agree.

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// syntaxError is a JSON syntax error at a byte offset of the body.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("offset %d: %s", e.off, e.msg) }

// decodeBody validates a whole request body (already trimmed of outer white
// space) against the rules and returns its events. single/batch say which
// shape the Content-Type allows (neither: either shape, application/json).
// Every error is a 400: the whole request is rejected.
func decodeBody(body []byte, single, batch bool) ([]Event, error) {
	if len(body) > 0 && body[0] == '[' {
		if single {
			return nil, fmt.Errorf("application/cloudevents+json takes one event, got an array")
		}
		evs := make([]Event, 0, countHint(len(body)))
		i := skipWS(body, 1)
		if i < len(body) && body[i] == ']' {
			i++
		} else {
			for n := 0; ; n++ {
				ev, end, err := scanEvent(body, i, 2)
				if err != nil {
					var se *syntaxError
					if errors.As(err, &se) {
						return nil, fmt.Errorf("invalid JSON batch: %w", err)
					}
					return nil, fmt.Errorf("event[%d]: %w", n, err)
				}
				evs = append(evs, ev)
				i = skipWS(body, end)
				if i < len(body) && body[i] == ']' {
					i++
					break
				}
				if i >= len(body) || body[i] != ',' {
					return nil, fmt.Errorf("invalid JSON batch: %w", &syntaxError{i, "want ',' or ']' after an event"})
				}
				i = skipWS(body, i+1)
			}
		}
		if i != len(body) {
			return nil, fmt.Errorf("invalid JSON batch: %w", &syntaxError{i, "data after the array"})
		}
		return evs, nil
	}
	if batch {
		return nil, fmt.Errorf("application/cloudevents-batch+json takes an array of events")
	}
	ev, err := scanOne(body)
	if err != nil {
		var se *syntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("invalid JSON event: %w", err)
		}
		return nil, fmt.Errorf("event[0]: %w", err)
	}
	return []Event{ev}, nil
}

// scanOne decodes b (trimmed) as exactly one event.
func scanOne(b []byte) (Event, error) {
	ev, end, err := scanEvent(b, 0, 1)
	if err != nil {
		return Event{}, err
	}
	if end != len(b) {
		return Event{}, &syntaxError{end, "data after the event"}
	}
	return ev, nil
}

// countHint guesses the number of events in a body of n bytes (~250 each).
func countHint(n int) int { return min(n/200+1, 1<<16) }

// scanEvent checks the JSON value at b[i:] and then OpenMeter's rules for
// it as an event (at nesting depth: 1 alone, 2 in a batch); it returns the event and the index just past the value.
// A *syntaxError means the JSON itself is broken. Raw and Data alias b.
func scanEvent(b []byte, i, depth int) (Event, int, error) {
	if i >= len(b) || b[i] != '{' {
		end, err := scanValue(b, i, depth)
		if err != nil {
			return Event{}, 0, err
		}
		return Event{}, end, fmt.Errorf("not a JSON object")
	}
	// The last value seen of each member OpenMeter checks (nil: absent).
	var id, source, typ, subject, specversion, tm, dct, data []byte
	start := i
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return Event{}, 0, &syntaxError{i, "want a member name"}
			}
			kend, esc, err := scanString(b, i)
			if err != nil {
				return Event{}, 0, err
			}
			key := b[i+1 : kend-1]
			if esc {
				var k string
				if err := json.Unmarshal(b[i:kend], &k); err != nil {
					return Event{}, 0, &syntaxError{i, err.Error()}
				}
				key = []byte(k)
			}
			i = skipWS(b, kend)
			if i >= len(b) || b[i] != ':' {
				return Event{}, 0, &syntaxError{i, "want ':' after a member name"}
			}
			i = skipWS(b, i+1)
			vend, err := scanValue(b, i, depth+1)
			if err != nil {
				return Event{}, 0, err
			}
			v := b[i:vend:vend]
			switch string(key) {
			case "id":
				id = v
			case "source":
				source = v
			case "type":
				typ = v
			case "subject":
				subject = v
			case "specversion":
				specversion = v
			case "time":
				tm = v
			case "datacontenttype":
				dct = v
			case "data":
				data = v
			}
			i = skipWS(b, vend)
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			if i >= len(b) || b[i] != ',' {
				return Event{}, 0, &syntaxError{i, "want ',' or '}' after a member"}
			}
			i = skipWS(b, i+1)
		}
	}
	ev, err := checkEvent(b[start:i:i], id, source, typ, subject, specversion, tm, dct, data)
	return ev, i, err
}

// checkEvent applies OpenMeter's rules to the members of one event.
func checkEvent(raw, id, source, typ, subject, specversion, tm, dct, data []byte) (Event, error) {
	ev := Event{Raw: raw}
	var err error
	for _, f := range []struct {
		name string
		v    []byte
		dst  *string
	}{{"id", id, &ev.ID}, {"source", source, &ev.Source}, {"type", typ, &ev.Type}, {"subject", subject, &ev.Subject}, {"specversion", specversion, &ev.SpecVersion}} {
		if *f.dst, err = str(f.name, f.v, true); err != nil {
			return Event{}, err
		}
	}
	if ev.SpecVersion != "1.0" {
		return Event{}, fmt.Errorf("specversion %q, want \"1.0\"", ev.SpecVersion)
	}
	if ev.Time, err = str("time", tm, false); err != nil {
		return Event{}, err
	}
	if ev.Time != "" {
		if _, err := time.Parse(time.RFC3339Nano, ev.Time); err != nil {
			return Event{}, fmt.Errorf("time %q is not RFC 3339", ev.Time)
		}
	}
	d, err := str("datacontenttype", dct, false)
	if err != nil {
		return Event{}, err
	}
	if dct != nil && !isNull(dct) && d != "application/json" {
		return Event{}, fmt.Errorf("datacontenttype %q, only application/json is allowed", d)
	}
	switch {
	case data == nil || isNull(data):
	case data[0] == '{':
		ev.Data = data
	default:
		return Event{}, fmt.Errorf("data must be a JSON object or null")
	}
	return ev, nil
}

// str decodes the string member name with value v (nil when absent), a
// valid JSON value. An absent or null member is "" (an error if required).
func str(name string, v []byte, required bool) (string, error) {
	if v == nil || isNull(v) {
		if required {
			return "", fmt.Errorf("%s is required", name)
		}
		return "", nil
	}
	if v[0] != '"' {
		return "", fmt.Errorf("%s must be a string", name)
	}
	var s string
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		s = alias(inner)
	} else if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s must be a string", name)
	}
	if required && s == "" {
		return "", fmt.Errorf("%s must not be empty", name)
	}
	return s, nil
}

// alias is b as a string without a copy. Safe here because every byte
// slice scanned is owned by the server (a request body) or a private copy
// (Validate) and is never written after it was read.
func alias(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func isNull(v []byte) bool { return string(v) == "null" }

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanValue checks the JSON value starting at b[i] (no leading white space)
// at nesting depth and returns the index just past it.
func scanValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, &syntaxError{i, "unexpected end of JSON"}
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := scanString(b, i)
		return end, err
	case c == '{' || c == '[':
		if depth > maxDepth {
			return 0, &syntaxError{i, "exceeded max depth"}
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == closing {
			return i + 1, nil
		}
		for {
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return 0, &syntaxError{i, "want a member name"}
				}
				end, _, err := scanString(b, i)
				if err != nil {
					return 0, err
				}
				i = skipWS(b, end)
				if i >= len(b) || b[i] != ':' {
					return 0, &syntaxError{i, "want ':' after a member name"}
				}
				i = skipWS(b, i+1)
			}
			end, err := scanValue(b, i, depth+1)
			if err != nil {
				return 0, err
			}
			i = skipWS(b, end)
			if i < len(b) && b[i] == closing {
				return i + 1, nil
			}
			if i >= len(b) || b[i] != ',' {
				return 0, &syntaxError{i, fmt.Sprintf("want ',' or '%c'", closing)}
			}
			i = skipWS(b, i+1)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	default:
		return 0, &syntaxError{i, fmt.Sprintf("invalid character %q looking for a value", c)}
	}
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	if !bytes.HasPrefix(b[i:], []byte(lit)) {
		return 0, &syntaxError{i, "invalid literal, want " + lit}
	}
	return i + len(lit), nil
}

// scanString checks the string starting at b[i] ('"') and returns the index
// just past it and whether it holds an escape.
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, nil
		case c == '\\':
			escaped = true
			j++
			if j >= len(b) {
				break
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) || !isHex(b[j+1]) || !isHex(b[j+2]) || !isHex(b[j+3]) || !isHex(b[j+4]) {
					return 0, false, &syntaxError{j, `invalid \u escape`}
				}
				j += 4
			default:
				return 0, false, &syntaxError{j, fmt.Sprintf("invalid escape '\\%c' in string", b[j])}
			}
		case c < 0x20:
			return 0, false, &syntaxError{j, "control character in string"}
		}
	}
	return 0, false, &syntaxError{len(b), "unterminated string"}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scanNumber checks the number starting at b[i] (RFC 8259 grammar).
func scanNumber(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && isDigit(b[i]):
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return 0, &syntaxError{i, "invalid number"}
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return 0, &syntaxError{i, "invalid number: digit wanted after '.'"}
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return 0, &syntaxError{i, "invalid number: digit wanted in exponent"}
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
		default:
			return 0, &syntaxError{start, fmt.Sprintf("invalid character %q in number", b[i])}
		}
	}
	return i, nil
}
