package httpevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

// parseBody validates b (no surrounding whitespace) as one JSON value with
// a scanner of its own, and returns the events it holds, without
// surrounding whitespace, appended to dst: the elements of a top-level
// array, or b itself. It never builds maps and never copies an event.
func parseBody(dst [][]byte, b []byte) (events [][]byte, isArray bool, err error) {
	if bytes.HasPrefix(b, bom) {
		// RFC 8259 section 8.1: JSON text must not begin with a BOM; a
		// parser may ignore one, but a clear refusal beats a guess.
		return dst, false, errors.New("the request body begins with a UTF-8 byte order mark (BOM), which JSON does not allow (RFC 8259 section 8.1); send the JSON text without it")
	}
	if b[0] != '[' {
		end, err := validValue(b, 0, 0)
		if err != nil {
			return dst, false, inEvent(err, b, 0, 0)
		}
		if end != len(b) {
			end = skipSpace(b, end)
			return dst, false, synErr(end, "unexpected %s after the top-level value", describe(b, end))
		}
		return append(dst, b), false, nil
	}
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			end, err := validValue(b, i, 1)
			if err != nil {
				return dst, true, inEvent(err, b, len(dst), i)
			}
			dst = append(dst, b[i:end])
			i = skipSpace(b, end)
			if i >= len(b) {
				return dst, true, synErr(i, "unexpected end of input in the event array")
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ',' {
				return dst, true, synErr(i, "unexpected %s in the event array, want ',' or ']'", describe(b, i))
			}
			i = skipSpace(b, i+1)
		}
	}
	if i != len(b) {
		return dst, true, synErr(i, "unexpected %s after the top-level value", describe(b, i))
	}
	return dst, true, nil
}

// bom is the UTF-8 byte order mark.
var bom = []byte{0xEF, 0xBB, 0xBF}

// syntaxError is invalid JSON at a 0-based byte offset of the trimmed body.
type syntaxError struct {
	off int
	msg string
	enc bool // a string is not valid UTF-8 (or holds a lone surrogate escape); see locate
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.off, e.msg)
}

// encodingError is a syntaxError with enc set, placed in its event and
// attribute: JSON that is valid but for its text encoding is most likely a
// client's bad data in one field, so the answer names the field.
type encodingError struct {
	*syntaxError
	event int
	field string // the event's top-level attribute holding the string; "" if not known
}

func (e *encodingError) Error() string {
	if e.field == "" {
		return fmt.Sprintf("event[%d]: %s at offset %d", e.event, e.msg, e.off)
	}
	return fmt.Sprintf("event[%d]: %q: %s at offset %d", e.event, e.field, e.msg, e.off)
}

// inEvent turns an encoding error in the event (number n) that starts at
// b[start] into an encodingError; other errors are returned as they are.
func inEvent(err error, b []byte, n, start int) error {
	se, ok := err.(*syntaxError)
	if !ok || !se.enc {
		return err
	}
	return &encodingError{syntaxError: se, event: n, field: fieldAt(b, start, se.off)}
}

// fieldAt returns the name of the top-level attribute of the object at
// b[start] whose value holds the first error of b, at off; "" if the object
// is not one or the error is not in a value. Only error paths call it.
func fieldAt(b []byte, start, off int) string {
	if b[start] != '{' {
		return ""
	}
	i := skipSpace(b, start+1)
	for i < len(b) && b[i] == '"' {
		kend, err := validString(b, i)
		if err != nil {
			return "" // the error is in the key
		}
		name, _ := stringValue(b[i:kend])
		i = skipSpace(b, kend)
		if i >= len(b) || b[i] != ':' {
			return ""
		}
		vend, err := validValue(b, skipSpace(b, i+1), 1)
		if err != nil || off < vend {
			return name
		}
		i = skipSpace(b, vend)
		if i >= len(b) || b[i] != ',' {
			return ""
		}
		i = skipSpace(b, i+1)
	}
	return ""
}

func synErr(off int, format string, args ...any) error {
	return &syntaxError{off: off, msg: fmt.Sprintf(format, args...)}
}

func encErr(off int, format string, args ...any) error {
	return &syntaxError{off: off, msg: fmt.Sprintf(format, args...), enc: true}
}

func describe(b []byte, i int) string {
	if i >= len(b) {
		return "end of input"
	}
	if b[i] >= utf8.RuneSelf {
		// Not a character on its own: name the byte, not the Latin-1
		// character it would be.
		return fmt.Sprintf("byte 0x%02X", b[i])
	}
	return "character " + strconv.QuoteRuneToASCII(rune(b[i]))
}

// maxDepth bounds nesting, as encoding/json does.
const maxDepth = 10000

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// validValue checks the JSON value at b[i] and returns the index after it.
func validValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, synErr(i, "unexpected end of input, want a value")
	}
	switch c := b[i]; c {
	case '"':
		return validString(b, i)
	case '{':
		if depth >= maxDepth {
			return i, synErr(i, "nesting deeper than %d", maxDepth)
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return i, synErr(i, "unexpected %s, want an object key string", describe(b, i))
			}
			end, err := validString(b, i)
			if err != nil {
				return end, err
			}
			i = skipSpace(b, end)
			if i >= len(b) || b[i] != ':' {
				return i, synErr(i, "unexpected %s after an object key, want ':'", describe(b, i))
			}
			i, err = validValue(b, skipSpace(b, i+1), depth+1)
			if err != nil {
				return i, err
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, synErr(i, "unexpected end of input in an object")
			}
			if b[i] == '}' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return i, synErr(i, "unexpected %s in an object, want ',' or '}'", describe(b, i))
			}
			i = skipSpace(b, i+1)
		}
	case '[':
		if depth >= maxDepth {
			return i, synErr(i, "nesting deeper than %d", maxDepth)
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			i, err = validValue(b, i, depth+1)
			if err != nil {
				return i, err
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, synErr(i, "unexpected end of input in an array")
			}
			if b[i] == ']' {
				return i + 1, nil
			}
			if b[i] != ',' {
				return i, synErr(i, "unexpected %s in an array, want ',' or ']'", describe(b, i))
			}
			i = skipSpace(b, i+1)
		}
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	}
	if b[i] == '-' || (b[i] >= '0' && b[i] <= '9') {
		return validNumber(b, i)
	}
	return i, synErr(i, "unexpected %s, want a value", describe(b, i))
}

func literal(b []byte, i int, lit string) (int, error) {
	for k := 0; k < len(lit); k++ {
		if i+k >= len(b) || b[i+k] != lit[k] {
			return i + k, synErr(i+k, "unexpected %s in literal %s", describe(b, i+k), lit)
		}
	}
	return i + len(lit), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func validNumber(b []byte, i int) (int, error) {
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
		return i, synErr(i, "unexpected %s in a number", describe(b, i))
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return i, synErr(i, "unexpected %s after the decimal point", describe(b, i))
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
			return i, synErr(i, "unexpected %s in an exponent", describe(b, i))
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i, nil
}

// plainByte is true for bytes that may appear unescaped in a valid string
// and are not its end: everything but '"', '\\' and control characters.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainASCII is plainByte for ASCII only: validString checks the UTF-8 of
// the other bytes.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// hexVal decodes the 4 hex digits at b[i:i+4] (already checked).
func hexVal(b []byte, i int) rune {
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// validString checks the string that opens at b[i] == '"': JSON syntax,
// UTF-8, and \u escapes that are not lone UTF-16 surrogates (which decode to
// no character: encoding/json would store U+FFFD instead).
func validString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		for j < len(b) && plainASCII[b[j]] {
			j++
		}
		if j >= len(b) {
			return j, synErr(j, "unexpected end of input in a string")
		}
		if b[j] >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && size == 1 {
				return j, encErr(j, "invalid UTF-8 (byte 0x%02X) in a string", b[j])
			}
			j += size
			continue
		}
		switch b[j] {
		case '"':
			return j + 1, nil
		case '\\':
			if j+1 >= len(b) {
				return j + 1, synErr(j+1, "unexpected end of input in a string escape")
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				for k := 2; k < 6; k++ {
					if j+k >= len(b) || !isHex(b[j+k]) {
						return j + k, synErr(j+k, "unexpected %s in a \\u escape", describe(b, j+k))
					}
				}
				if r := hexVal(b, j+2); r >= 0xD800 && r <= 0xDFFF {
					// A surrogate: valid only as a high one followed by an
					// escaped low one.
					if r >= 0xDC00 || j+12 > len(b) || b[j+6] != '\\' || b[j+7] != 'u' ||
						!isHex(b[j+8]) || !isHex(b[j+9]) || !isHex(b[j+10]) || !isHex(b[j+11]) ||
						!(hexVal(b, j+8) >= 0xDC00 && hexVal(b, j+8) <= 0xDFFF) {
						return j, encErr(j, "lone UTF-16 surrogate %s in a string (not a character)", b[j:j+6])
					}
					j += 6
				}
				j += 6
			default:
				return j + 1, synErr(j+1, "invalid escape %s in a string", describe(b, j+1))
			}
		default:
			return j, synErr(j, "control character U+%04X in a string (escape it as \\u%04x)", b[j], b[j])
		}
	}
}

// skipString returns the index after the valid string that opens at b[i].
func skipString(b []byte, i int) int {
	j := i + 1
	for j < len(b) {
		if plainByte[b[j]] {
			j++
			continue
		}
		if b[j] == '\\' {
			j += 2
			continue
		}
		return j + 1
	}
	return j
}

// skipValue returns the index after the valid value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// eventInfo is what validation learns about one event.
type eventInfo struct {
	hasTime bool
}

// MaxIDBytes bounds an event's "id" (decoded, in bytes). OpenMeter keeps
// the id as a string for deduplication; longer ids are a client bug, not
// data to store.
const MaxIDBytes = 256

// required are the CloudEvents context attributes that must be non-empty strings.
var required = [...]string{"id", "source", "type", "subject", "specversion"}

const (
	fID = 1 << iota
	fSource
	fType
	fSubject
	fSpecversion
	fTime
	fData
)

// bitOf maps an attribute name to its bit (0 for other names).
func bitOf(name []byte) int {
	switch string(name) { // no allocation: the compiler compares in place
	case "id":
		return fID
	case "source":
		return fSource
	case "type":
		return fType
	case "subject":
		return fSubject
	case "specversion":
		return fSpecversion
	case "time":
		return fTime
	case "data":
		return fData
	}
	return 0
}

// rawString returns the contents of the valid JSON string v without its
// quotes, undecoded; escaped is true if it holds escapes. ok is false if v is
// not a string.
func rawString(v []byte) (inner []byte, escaped, ok bool) {
	if len(v) < 2 || v[0] != '"' {
		return nil, false, false
	}
	inner = v[1 : len(v)-1]
	return inner, bytes.IndexByte(inner, '\\') >= 0, true
}

// stringValue decodes the JSON string value v (valid JSON); ok is false if v
// is not a string.
func stringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// timeString is stringValue for the "time" check only: an unescaped
// string (every RFC 3339 time a client sends) is a view of v's bytes, not a
// copy, so a request with "time" allocates nothing for it. The view must
// not outlive the check: checkField only parses it and quotes a copy of it
// into an error message.
func timeString(v []byte) (string, bool) {
	if len(v) > 2 && v[0] == '"' && bytes.IndexByte(v[1:len(v)-1], '\\') < 0 {
		return unsafe.String(&v[1], len(v)-2), true
	}
	return stringValue(v)
}

// keyBit returns the bit of the attribute named by the valid JSON string k.
func keyBit(k []byte) int {
	inner := k[1 : len(k)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return bitOf(inner)
	}
	s, _ := stringValue(k)
	return bitOf([]byte(s))
}

// validateEvent checks one event (a value from valid JSON, no surrounding
// whitespace) and returns what the handler needs to store it.
func validateEvent(ev []byte) (eventInfo, error) {
	var info eventInfo
	if ev[0] != '{' {
		return info, errors.New("not a JSON object")
	}
	seen := 0
	i := skipSpace(ev, 1)
	for i < len(ev) && ev[i] == '"' {
		kend := skipString(ev, i)
		bit := keyBit(ev[i:kend])
		i = skipSpace(ev, kend)
		i = skipSpace(ev, i+1) // ':'
		vend := skipValue(ev, i)
		val := ev[i:vend]
		if bit != 0 {
			name := fieldName(bit)
			if seen&bit != 0 {
				return info, fmt.Errorf("%q appears more than once", name)
			}
			seen |= bit
			if err := checkField(bit, name, val); err != nil {
				return info, err
			}
		}
		i = skipSpace(ev, vend)
		if i < len(ev) && ev[i] == ',' {
			i = skipSpace(ev, i+1)
		}
	}
	for _, name := range required {
		if seen&bitOf([]byte(name)) == 0 {
			return info, fmt.Errorf("%q is required", name)
		}
	}
	info.hasTime = seen&fTime != 0
	return info, nil
}

func fieldName(bit int) string {
	switch bit {
	case fID:
		return "id"
	case fSource:
		return "source"
	case fType:
		return "type"
	case fSubject:
		return "subject"
	case fSpecversion:
		return "specversion"
	case fTime:
		return "time"
	}
	return "data"
}

func checkField(bit int, name string, val []byte) error {
	switch bit {
	case fData:
		if val[0] == '{' || string(val) == "null" {
			return nil
		}
		return fmt.Errorf("%q must be a JSON object or null, got %s", name, abbreviate(val))
	case fTime:
		s, ok := timeString(val)
		if !ok {
			return fmt.Errorf("%q must be a string, got %s", name, abbreviate(val))
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("%q is not RFC 3339: %s", name, strconv.Quote(abbreviateString(s)))
		}
		// time.Parse takes year 0000, RFC 3339 starts at 0001. A parsed
		// time begins with its 4-digit year.
		if s[:4] == "0000" {
			return fmt.Errorf("%q is not RFC 3339: year 0000 is outside 0001-9999: %s", name, strconv.Quote(abbreviateString(s)))
		}
		return nil
	}
	inner, escaped, ok := rawString(val)
	if !ok {
		return fmt.Errorf("%q must be a string, got %s", name, abbreviate(val))
	}
	if len(inner) == 0 {
		return fmt.Errorf("%q is required (got an empty string)", name)
	}
	if bit == fID {
		return checkID(val, inner, escaped)
	}
	if bit == fSpecversion && (escaped || string(inner) != "1.0") {
		if s, _ := stringValue(val); s != "1.0" {
			return fmt.Errorf("%q must be \"1.0\", got %s", name, strconv.Quote(abbreviateString(s)))
		}
	}
	return nil
}

// printableASCII is true for the ASCII bytes that are not control characters.
var printableASCII = func() (t [256]bool) {
	for c := 0x20; c < 0x7F; c++ {
		t[c] = true
	}
	return t
}()

// checkID checks the id string val (inner without quotes, escaped if it
// holds escapes): at most MaxIDBytes, not blank, no control characters.
func checkID(val, inner []byte, escaped bool) error {
	id := inner
	if escaped {
		s, _ := stringValue(val)
		id = []byte(s)
	}
	if len(id) > MaxIDBytes {
		return fmt.Errorf(`"id" is %d bytes long; at most %d are allowed`, len(id), MaxIDBytes)
	}
	// The common case fast: a raw string of valid JSON has no C0 control
	// characters, leaving DEL and C1 (U+0080-U+009F, UTF-8 0xC2 0x80-0x9F).
	if !escaped && bytes.IndexByte(id, 0x7F) < 0 && bytes.IndexByte(id, 0xC2) < 0 {
		if c := id[0]; c > ' ' && c < utf8.RuneSelf {
			return nil
		}
		if len(bytes.TrimSpace(id)) == 0 {
			return fmt.Errorf(`"id" is blank (only whitespace): %s`, strconv.Quote(abbreviateString(string(id))))
		}
		return nil
	}
	for k := 0; k < len(id); k++ {
		c := id[k]
		if printableASCII[c] {
			continue
		}
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(id[k:])
		}
		if unicode.IsControl(r) {
			return fmt.Errorf(`"id" contains the control character U+%04X at byte %d`, r, k)
		}
		k += size - 1
	}
	if len(bytes.TrimSpace(id)) == 0 {
		return fmt.Errorf(`"id" is blank (only whitespace): %s`, strconv.Quote(abbreviateString(string(id))))
	}
	return nil
}

const maxQuoted = 64

func abbreviate(v []byte) string {
	if len(v) > maxQuoted {
		return string(v[:maxQuoted]) + "..."
	}
	return string(v)
}

func abbreviateString(s string) string {
	if len(s) > maxQuoted {
		return s[:maxQuoted] + "..."
	}
	return s
}

// ValidateRecord checks that b is one event as POST /api/v1/events stores
// it: a single JSON object (no surrounding whitespace) that passes the
// front door's event rules and carries a time. Other writers of events
// records (bucketq import, producer/ceappend) call it so the queue holds
// nothing this front door would have refused.
func ValidateRecord(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty event")
	}
	evs, isArray, err := parseBody(nil, b)
	if err != nil {
		return err
	}
	if isArray {
		return errors.New("a JSON array, want one event object")
	}
	info, err := validateEvent(evs[0])
	if err != nil {
		return err
	}
	if !info.hasTime {
		return errors.New(`"time" is missing (stored events always carry one)`)
	}
	return nil
}
