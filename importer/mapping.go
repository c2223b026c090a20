package importer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/bucketq/bucketq/internal/celx"
	"github.com/bucketq/bucketq/producer/ceappend"
)

// Mapping turns rows that are not CloudEvents into CloudEvents: each field
// is a CEL expression (the same language and style as the OTLP
// `conversion:` config) over these variables:
//
//	row          map(string, dyn)  the row: CSV columns by header name (all
//	                               strings), or the JSON object's fields
//	                               (numbers are int when integral, else double)
//	object       string            the source object's name
//	row_number   int               the row number (see Row.N)
//	object_time  timestamp         the source object's last-modified time
//
// CSV values are strings: write int(row.tokens) or double(row.cost) to
// send numbers (a value that does not parse makes the row a dead letter
// naming the expression). Empty fields take their defaults.
type Mapping struct {
	ID      string `yaml:"id,omitempty"`      // string; default: derived (DerivedID)
	Type    string `yaml:"type,omitempty"`    // string, required
	Source  string `yaml:"source,omitempty"`  // string; default DefaultSource
	Subject string `yaml:"subject,omitempty"` // string, required, must not be empty
	Time    string `yaml:"time,omitempty"`    // timestamp or RFC 3339 string; default `object_time`
	// Data maps each data field to an expression (any JSON value); a field
	// whose expression reads an absent key or gives optional.none() is
	// left out. Nil: data is the whole row.
	Data map[string]string `yaml:"data,omitempty"`
}

// Defaults of Mapping.
const (
	DefaultSource = `"bucketq-import"`
	DefaultTime   = `object_time`
)

// Vars are a row's values of the mapping's variables.
type Vars struct {
	Object     string
	Row        int64
	ObjectTime time.Time

	// seen, if set, remembers work the fast path may skip for the next
	// rows: one per object, used by one goroutine at a time.
	seen *seen
}

// seen is what the fast path proved about earlier rows of an object.
type seen struct {
	source string // the last source plainSource accepted
}

type dataField struct {
	name string
	p    *program
}

// Mapper is a compiled Mapping.
type Mapper struct {
	id, typ, source, subject, tim *program
	data                          []dataField // nil: the whole row
}

func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.OptionalTypes(), ext.Strings(), ext.Math(), ext.Encoders(),
		cel.Variable("row", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("object", cel.StringType),
		cel.Variable("row_number", cel.IntType),
		cel.Variable("object_time", cel.TimestampType),
	)
}

// Compile compiles m; errors name the field (as "import.mapping.FIELD")
// and the expression.
func Compile(m Mapping) (*Mapper, error) {
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(m.Type) == "" {
		return nil, errors.New("import.mapping.type: required (a CEL expression, e.g. '\"api-calls\"' or 'row.event_type')")
	}
	if strings.TrimSpace(m.Subject) == "" {
		return nil, errors.New("import.mapping.subject: required (a CEL expression, e.g. 'row.customer_id')")
	}
	if m.Source == "" {
		m.Source = DefaultSource
	}
	if m.Time == "" {
		m.Time = DefaultTime
	}
	c := &Mapper{}
	for _, f := range []struct {
		dst  **program
		name string
		expr string
		w    celx.Want
	}{
		{&c.typ, "type", m.Type, celx.String},
		{&c.source, "source", m.Source, celx.String},
		{&c.subject, "subject", m.Subject, celx.String},
		{&c.tim, "time", m.Time, celx.Time},
		{&c.id, "id", m.ID, celx.String},
	} {
		if f.expr == "" {
			continue
		}
		if *f.dst, err = compile(env, "import.mapping."+f.name, f.expr, f.w); err != nil {
			return nil, err
		}
	}
	if m.Data != nil {
		names := make([]string, 0, len(m.Data))
		for k := range m.Data {
			names = append(names, k)
		}
		sort.Strings(names)
		c.data = []dataField{}
		for _, k := range names {
			p, err := compile(env, "import.mapping.data."+k, m.Data[k], celx.Any)
			if err != nil {
				return nil, err
			}
			c.data = append(c.data, dataField{k, p})
		}
	}
	return c, nil
}

func compile(env *cel.Env, field, expr string, w celx.Want) (*program, error) {
	p, err := celx.Compile(env, field, expr, w)
	if err != nil {
		return nil, err
	}
	p.AbsentNamesExpr = true
	return p, nil
}

// program is one compiled expression of a Mapping.
type program = celx.Program

// idNamespace is the UUIDv5 namespace of derived import ids: the UUIDv5 of
// "bucketq.import" in the DNS namespace.
var idNamespace = uuid.NewSHA1(uuid.NameSpaceDNS, []byte("bucketq.import"))

// DerivedID is the id of a row that has none (RFC 0006, "Imported rows"):
// the UUIDv5, in the bucketq.import namespace, of
// "<object name>\n<row number>\n<sha256 of the row's text, lower-case hex>".
// It depends on where the row is (object and row number) and on what it
// holds, never on when or how often it is imported: importing an object
// again, resuming after a crash or re-uploading the same bytes gives the
// same ids, so the metering API deduplicates; a row whose content changed
// gets a new id.
func DerivedID(object string, row int64, raw []byte) string {
	sum := sha256.Sum256(raw)
	name := make([]byte, 0, len(object)+90)
	name = append(name, object...)
	name = append(name, '\n')
	name = strconv.AppendInt(name, row, 10)
	name = append(name, '\n')
	name = hex.AppendEncode(name, sum[:])
	return uuid.NewSHA1(idNamespace, name).String()
}

// specversionKey finds CloudEvents rows cheaply: a JSON object with a
// top-level "specversion" is taken as a CloudEvent.
var specversionKey = []byte(`"specversion"`)

// Event builds the record of one row: a CloudEvents row (an object with
// "specversion") as it is, given a derived id if it has none and
// object_time if it has no time; any other row through m (nil: such rows
// are errors). The record is what the CloudEvents SDK path gives
// (validated by the SDK and by the rules of POST /api/v1/events,
// ceappend.Encode): rows the fast path (fast.go) can prove it writes
// identically skip the SDK round trip; all others, and every error, take
// the SDK path.
func Event(m *Mapper, row Row, v Vars) ([]byte, error) { return buildEvent(m, row, v, true) }

// buildEvent is Event; fast false is the SDK path alone (the reference of
// the differential tests).
func buildEvent(m *Mapper, row Row, v Vars, fast bool) ([]byte, error) {
	if row.Object != nil && bytes.Contains(row.Object, specversionKey) && fast {
		if rec, ok := fastCloudEvent(row, v); ok {
			return rec, nil // the fast path takes only rows it proved to be valid JSON
		}
	}
	if row.unchecked && !json.Valid(row.Object) {
		return nil, notJSONObject(row.Object)
	}
	if row.Object != nil && bytes.Contains(row.Object, specversionKey) {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(row.Object, &top); err != nil {
			return nil, err
		}
		if _, ok := top["specversion"]; ok {
			return cloudEventRow(row, top, v)
		}
	}
	if m == nil {
		return nil, errors.New(`not a CloudEvent (no "specversion") and no import.mapping is configured to map it`)
	}
	cols, err := rowValue(row)
	if err != nil {
		return nil, err
	}
	return m.event(cols, row, v, fast)
}

func cloudEventRow(row Row, top map[string]json.RawMessage, v Vars) ([]byte, error) {
	var e event.Event
	if err := json.Unmarshal(row.Object, &e); err != nil {
		return nil, fmt.Errorf("CloudEvent: %v", err)
	}
	if _, ok := top["id"]; !ok {
		e.SetID(DerivedID(v.Object, row.N, row.Raw))
	}
	if e.Time().IsZero() {
		e.SetTime(v.ObjectTime)
	}
	return ceappend.Encode(e)
}

// rowValue is the row as the CEL variable `row`.
func rowValue(row Row) (map[string]any, error) {
	if row.Object == nil {
		m := make(map[string]any, len(row.Header))
		for i, h := range row.Header {
			m[h] = row.Fields[i]
		}
		return m, nil
	}
	dec := json.NewDecoder(bytes.NewReader(row.Object))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return numbers(m).(map[string]any), nil
}

// numbers turns json.Numbers into int64 (integral and in range) or float64.
func numbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case map[string]any:
		for k, e := range t {
			t[k] = numbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = numbers(e)
		}
	}
	return v
}

func (m *Mapper) event(cols map[string]any, row Row, v Vars, fast bool) ([]byte, error) {
	act := map[string]any{"row": cols, "object": v.Object, "row_number": row.N, "object_time": v.ObjectTime}
	var typ, source, subject, id string
	var err error
	for _, f := range []struct {
		p   *program
		dst *string
	}{{m.typ, &typ}, {m.source, &source}, {m.subject, &subject}, {m.id, &id}} {
		if f.p == nil {
			id = DerivedID(v.Object, row.N, row.Raw)
			continue
		}
		if *f.dst, err = f.p.EvalString(act); err != nil {
			return nil, err
		}
	}
	t, err := m.tim.EvalTime(act)
	if err != nil {
		return nil, err
	}
	var data any = cols
	if m.data != nil {
		d := make(map[string]any, len(m.data))
		for _, f := range m.data {
			val, err := f.p.Eval(act)
			if errors.Is(err, celx.ErrAbsent) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if d[f.name], err = celx.ToJSON(val, f.p.Field); err != nil {
				return nil, err
			}
		}
		data = d
	}
	if fast {
		if rec, ok := fastMapped(v.seen, id, source, typ, subject, t, data); ok {
			return rec, nil
		}
	}
	return sdkMapped(id, source, typ, subject, t, data)
}

// sdkMapped builds the record of a mapped row through the CloudEvents SDK:
// the reference for fastMapped and the path of every row it declines.
func sdkMapped(id, source, typ, subject string, t time.Time, data any) ([]byte, error) {
	e := event.New()
	e.SetType(typ)
	e.SetSource(source)
	e.SetSubject(subject)
	e.SetID(id)
	e.SetTime(t)
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		return nil, fmt.Errorf("data: %v", err)
	}
	return ceappend.Encode(e)
}
