package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Format is the layout of an object's rows.
type Format string

// Formats. FormatAuto picks one per object: CSV for a name ending in .csv
// (before any .gz/.zst), else by the first byte that is not white space:
// '[' a JSON array, '{' NDJSON.
const (
	FormatAuto   Format = "auto"
	FormatNDJSON Format = "ndjson"
	FormatCSV    Format = "csv"
	FormatJSON   Format = "json" // one JSON array of objects
)

// ParseFormat checks a format name ("" is FormatAuto).
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "":
		return FormatAuto, nil
	case FormatAuto, FormatNDJSON, FormatCSV, FormatJSON:
		return f, nil
	case "jsonl":
		return FormatNDJSON, nil
	}
	return "", fmt.Errorf("unknown format %q (want auto, ndjson, csv or json)", s)
}

// DefaultMaxRowBytes bounds one row (an NDJSON line, a CSV record, a JSON
// array element): memory stays bounded whatever an object holds.
const DefaultMaxRowBytes = 1 << 20

// Row is one row of an object. Its slices are valid until the next call
// to Next.
type Row struct {
	// N is the row number, from 1: the line for NDJSON (blank lines are
	// counted, not returned), the record after the header for CSV, the
	// element for a JSON array.
	N int64
	// Raw is the row's text: the JSON object, or the CSV record encoded
	// again as one CSV line (without the header). Event ids derived for
	// the row hash it; dead letters keep it.
	Raw []byte
	// Object is the JSON object of an NDJSON or JSON-array row, nil for CSV.
	Object []byte
	// Header and Fields are the CSV columns and this record's values.
	Header, Fields []string
	// unchecked: Object starts with '{' but is not yet known to be valid
	// JSON (an NDJSON line). Event checks it, after the fast path, which
	// accepts only rows it has proved valid: that saves a second full
	// scan of every row the fast path takes.
	unchecked bool
}

// RowError is a bad row: the reader skips it and can go on.
type RowError struct {
	Row int64
	Raw []byte // what could be read of it (at most a bounded prefix)
	Err error
}

func (e *RowError) Error() string { return fmt.Sprintf("row %d: %v", e.Row, e.Err) }
func (e *RowError) Unwrap() error { return e.Err }

// StreamError is damage the reader cannot read past (a truncated or
// corrupt compressed stream, broken JSON array syntax): the rest of the
// object is lost. Row is the row the reader was at.
type StreamError struct {
	Row int64
	Err error
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("unreadable from row %d on: %v", e.Row, e.Err)
}
func (e *StreamError) Unwrap() error { return e.Err }

// RowReader reads an object's rows. Next returns io.EOF at the end, a
// *RowError for a bad row (call Next again for the next one), or a
// *StreamError after which the object cannot be read on.
type RowReader interface {
	Next() (Row, error)
}

// Compression of an object, found from its first bytes.
const (
	compNone = "none"
	compGzip = "gzip"
	compZstd = "zstd"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// maxZstdWindow bounds the memory of a zstd decoder (the window it keeps).
const maxZstdWindow = 32 << 20

// Decompress returns the decompressed stream of r and the compression it
// found from the magic bytes (gzip, zstd, or none). A name that says .gz
// or .zst over bytes that are not is an error, not a silent guess.
func Decompress(name string, r io.Reader) (io.ReadCloser, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", err
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, compGzip, err
		}
		return zr, compGzip, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, compZstd, err
		}
		return zr.IOReadCloser(), compZstd, nil
	}
	lower := strings.ToLower(name)
	if len(head) > 0 && (strings.HasSuffix(lower, ".gz") || strings.HasSuffix(lower, ".gzip")) {
		return nil, "", errors.New("the name says gzip but the object does not start with the gzip magic bytes")
	}
	if len(head) > 0 && (strings.HasSuffix(lower, ".zst") || strings.HasSuffix(lower, ".zstd")) {
		return nil, "", errors.New("the name says zstd but the object does not start with the zstd magic bytes")
	}
	return io.NopCloser(br), compNone, nil
}

// baseName is the object's name without compression suffixes, lower case.
func baseName(name string) string {
	n := strings.ToLower(path.Base(name))
	for _, s := range []string{".gz", ".gzip", ".zst", ".zstd"} {
		n = strings.TrimSuffix(n, s)
	}
	return n
}

// NewRowReader returns the reader of format f (FormatAuto: chosen from the
// name and the first bytes) over the decompressed stream r.
func NewRowReader(name string, f Format, r io.Reader, maxRow int) (RowReader, Format, error) {
	if maxRow <= 0 {
		maxRow = DefaultMaxRowBytes
	}
	br := bufio.NewReaderSize(r, 64<<10)
	if f == FormatAuto {
		switch b := baseName(name); {
		case strings.HasSuffix(b, ".csv"):
			f = FormatCSV
		case strings.HasSuffix(b, ".ndjson") || strings.HasSuffix(b, ".jsonl"):
			f = FormatNDJSON
		default:
			c, err := firstByte(br)
			switch {
			case errors.Is(err, io.EOF):
				f = FormatNDJSON // empty: no rows in any format
			case err != nil:
				return nil, f, &StreamError{Row: 1, Err: err}
			case c == '[':
				f = FormatJSON
			case c == '{':
				f = FormatNDJSON
			default:
				return nil, f, fmt.Errorf("cannot tell the format: the first byte is %q, want '[' (JSON array) or '{' (NDJSON); name CSV objects *.csv or pass --format", c)
			}
		}
	}
	switch f {
	case FormatNDJSON:
		return newNDJSON(br, maxRow), f, nil
	case FormatCSV:
		return newCSV(br, maxRow), f, nil
	case FormatJSON:
		return newJSONArray(br, maxRow), f, nil
	}
	return nil, f, fmt.Errorf("unknown format %q", f)
}

// firstByte is the first byte after white space and a UTF-8 BOM, unread.
func firstByte(br *bufio.Reader) (byte, error) {
	for i := 0; ; i++ {
		b, err := br.Peek(i + 1)
		if err != nil {
			return 0, err
		}
		c := b[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			continue
		}
		if i == 0 && bytes.HasPrefix(b, bom[:1]) {
			if full, err := br.Peek(3); err == nil && bytes.Equal(full, bom) {
				i += 2
				continue
			}
		}
		return c, nil
	}
}

var bom = []byte{0xef, 0xbb, 0xbf}

// ---- NDJSON ----

type ndjson struct {
	br      *bufio.Reader
	line    int64
	maxRow  int
	pending []byte // a line longer than the bufio buffer, being assembled
}

func newNDJSON(br *bufio.Reader, maxRow int) *ndjson {
	return &ndjson{br: br, maxRow: maxRow}
}

func (r *ndjson) Next() (Row, error) {
	for {
		line, tooLong, err := r.readLine()
		if err != nil {
			return Row{}, err
		}
		r.line++
		if tooLong {
			return Row{}, &RowError{Row: r.line, Raw: line, Err: fmt.Errorf("line longer than %d bytes (max row size)", r.maxRow)}
		}
		if r.line == 1 {
			line = bytes.TrimPrefix(line, bom)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if line[0] != '{' {
			return Row{}, &RowError{Row: r.line, Raw: line, Err: notJSONObject(line)}
		}
		// Whether the rest is valid JSON is checked by Event (Row.unchecked):
		// a line that is not is the same import_row dead letter, with this
		// same error, either way.
		return Row{N: r.line, Raw: line, Object: line, unchecked: true}, nil
	}
}

// readLine returns the next line without its newline; a line over maxRow
// is returned cut to maxRow with tooLong set, the rest of it skipped. At
// the end of the stream it returns io.EOF; a read error is a *StreamError.
func (r *ndjson) readLine() (line []byte, tooLong bool, err error) {
	r.pending = r.pending[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		if !tooLong {
			if len(r.pending)+len(chunk) > r.maxRow+1 { // +1: the newline
				tooLong = true
				r.pending = append(r.pending, chunk[:max(0, min(len(chunk), r.maxRow-len(r.pending)))]...)
			} else {
				r.pending = append(r.pending, chunk...)
			}
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(r.pending, []byte{'\n'}), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(r.pending) == 0 && !tooLong {
				return nil, false, io.EOF
			}
			return r.pending, tooLong, nil
		default:
			return nil, false, &StreamError{Row: r.line + 1, Err: err}
		}
	}
}

// notJSONObject is the error of an NDJSON line that is not a JSON object.
func notJSONObject(line []byte) error {
	return fmt.Errorf("not a JSON object: %s", jsonProblem(line))
}

// jsonProblem says briefly why line is not a JSON object.
func jsonProblem(b []byte) string {
	var v any
	err := json.Unmarshal(b, &v)
	switch {
	case err != nil:
		return err.Error()
	case v == nil:
		return "null"
	}
	return fmt.Sprintf("a JSON %T", v)
}

// ---- row-size guard ----

// guard fails a read once more than limit bytes were read since reset: a
// CSV record or JSON element that never ends cannot take all memory.
type guard struct {
	r     io.Reader
	n     int
	limit int
}

var errRowTooLong = errors.New("row too long")

func (g *guard) Read(p []byte) (int, error) {
	if g.n > g.limit {
		return 0, errRowTooLong
	}
	n, err := g.r.Read(p)
	g.n += n
	return n, err
}

// guardSlack is what a reader may buffer ahead beyond one row.
const guardSlack = 64 << 10

// ---- CSV ----

type csvReader struct {
	g      *guard
	cr     *csv.Reader
	header []string
	row    int64
	maxRow int
	buf    bytes.Buffer
	done   bool
}

func newCSV(br *bufio.Reader, maxRow int) *csvReader {
	// A leading BOM would be part of the first column's name.
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, bom) {
		br.Discard(3)
	}
	g := &guard{r: br, limit: maxRow + guardSlack}
	cr := csv.NewReader(g)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return &csvReader{g: g, cr: cr, maxRow: maxRow}
}

func (r *csvReader) read() ([]string, error) {
	r.g.n = 0
	rec, err := r.cr.Read()
	if errors.Is(err, errRowTooLong) {
		return nil, &StreamError{Row: r.row + 1, Err: fmt.Errorf("a CSV record longer than %d bytes (an unterminated quote?)", r.maxRow)}
	}
	return rec, err
}

func (r *csvReader) Next() (Row, error) {
	if r.done {
		return Row{}, io.EOF
	}
	if r.header == nil {
		h, err := r.read()
		if errors.Is(err, io.EOF) {
			r.done = true
			return Row{}, io.EOF // empty object: no header, no rows
		}
		if err != nil {
			r.done = true
			var se *StreamError
			if errors.As(err, &se) {
				return Row{}, err
			}
			return Row{}, &StreamError{Row: 0, Err: fmt.Errorf("header row: %v", err)}
		}
		seen := map[string]bool{}
		for i, name := range h {
			name = strings.TrimSpace(name)
			if name == "" {
				r.done = true
				return Row{}, &StreamError{Row: 0, Err: fmt.Errorf("header row: column %d has no name", i+1)}
			}
			if seen[name] {
				r.done = true
				return Row{}, &StreamError{Row: 0, Err: fmt.Errorf("header row: column %q appears twice", name)}
			}
			seen[name] = true
			r.header = append(r.header, name)
		}
	}
	rec, err := r.read()
	if errors.Is(err, io.EOF) {
		r.done = true
		return Row{}, io.EOF
	}
	r.row++
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return Row{}, &RowError{Row: r.row, Raw: r.encode(rec), Err: fmt.Errorf("CSV line %d: %v", pe.Line, pe.Err)}
		}
		r.done = true
		var se *StreamError
		if errors.As(err, &se) {
			return Row{}, err
		}
		return Row{}, &StreamError{Row: r.row, Err: err}
	}
	raw := r.encode(rec)
	if len(rec) != len(r.header) {
		line, _ := r.cr.FieldPos(0)
		return Row{}, &RowError{Row: r.row, Raw: raw, Err: fmt.Errorf("CSV line %d has %d fields, the header %d", line, len(rec), len(r.header))}
	}
	return Row{N: r.row, Raw: raw, Header: r.header, Fields: rec}, nil
}

// encode is rec as one CSV line without its line end.
func (r *csvReader) encode(rec []string) []byte {
	r.buf.Reset()
	w := csv.NewWriter(&r.buf)
	_ = w.Write(rec)
	w.Flush()
	return bytes.TrimRight(r.buf.Bytes(), "\r\n")
}

// ---- JSON array ----

type jsonArray struct {
	g       *guard
	dec     *json.Decoder
	row     int64
	maxRow  int
	started bool
	done    bool
	raw     json.RawMessage
}

func newJSONArray(br *bufio.Reader, maxRow int) *jsonArray {
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, bom) {
		br.Discard(3)
	}
	g := &guard{r: br, limit: maxRow + guardSlack}
	return &jsonArray{g: g, dec: json.NewDecoder(g), maxRow: maxRow}
}

func (r *jsonArray) fail(err error) error {
	r.done = true
	if errors.Is(err, errRowTooLong) {
		err = fmt.Errorf("an array element longer than %d bytes", r.maxRow)
	} else if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &StreamError{Row: r.row + 1, Err: err}
}

func (r *jsonArray) Next() (Row, error) {
	if r.done {
		return Row{}, io.EOF
	}
	if !r.started {
		r.g.n = 0
		tok, err := r.dec.Token()
		if errors.Is(err, io.EOF) {
			r.done = true
			return Row{}, io.EOF // empty object
		}
		if err != nil {
			return Row{}, r.fail(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			r.done = true
			return Row{}, &StreamError{Row: 1, Err: fmt.Errorf("not a JSON array: starts with %v", tok)}
		}
		r.started = true
	}
	r.g.n = 0
	if !r.dec.More() {
		if _, err := r.dec.Token(); err != nil { // ']'
			return Row{}, r.fail(err)
		}
		r.done = true
		if _, err := r.dec.Token(); !errors.Is(err, io.EOF) {
			return Row{}, &StreamError{Row: r.row + 1, Err: errors.New("data after the end of the JSON array")}
		}
		return Row{}, io.EOF
	}
	r.raw = r.raw[:0]
	if err := r.dec.Decode(&r.raw); err != nil {
		return Row{}, r.fail(err)
	}
	r.row++
	if len(r.raw) == 0 || r.raw[0] != '{' {
		return Row{}, &RowError{Row: r.row, Raw: r.raw, Err: fmt.Errorf("array element is not a JSON object: %s", jsonProblem(r.raw))}
	}
	return Row{N: r.row, Raw: r.raw, Object: r.raw}, nil
}
