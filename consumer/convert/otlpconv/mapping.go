package otlpconv

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/bucketq/bucketq/internal/celx"
	"sort"
	"strconv"
	"time"

	"cel.dev/cel-go/cel"
)

// compiledMapping is a Mapping with its expressions compiled. A nil program
// means "inherit" (rules) or "built-in" (id: derived id).
type compiledMapping struct {
	id, typ, source, subject, time *program
	data                           []dataField // sorted by key
	hasData                        bool        // Data was configured (else built-in default data)
}

type dataField struct {
	key string
	p   *program
}

type compiledRule struct {
	match  *program
	merged compiledMapping // the rule's fields over the signal's
}

// compiledSignal is the whole mapping of one signal, compiled once.
type compiledSignal struct {
	signal string
	filter *program
	base   compiledMapping
	rules  []compiledRule
}

func compileSignal(signal string, cfg Signal, defaultType string) (*compiledSignal, error) {
	env, err := newEnv(signal)
	if err != nil {
		return nil, fmt.Errorf("otlpconv: %s: CEL environment: %w", signal, err)
	}
	cs := &compiledSignal{signal: signal}
	if cfg.Filter != "" {
		if cs.filter, err = compile(env, signal+".filter", cfg.Filter, wantBool); err != nil {
			return nil, err
		}
	}
	if cs.base, err = compileMapping(env, signal, defaults(cfg.Mapping, defaultType)); err != nil {
		return nil, err
	}
	for i, r := range cfg.Events {
		field := fmt.Sprintf("%s.events[%d]", signal, i)
		if r.Match == "" {
			return nil, fmt.Errorf("otlpconv: %s.match: empty; every rule needs a match expression", field)
		}
		var cr compiledRule
		if cr.match, err = compile(env, field+".match", r.Match, wantBool); err != nil {
			return nil, err
		}
		m, err := compileMapping(env, field, r.Mapping)
		if err != nil {
			return nil, err
		}
		cr.merged = m.over(cs.base)
		cs.rules = append(cs.rules, cr)
	}
	return cs, nil
}

func compileMapping(env *cel.Env, field string, m Mapping) (compiledMapping, error) {
	var cm compiledMapping
	var err error
	for _, f := range []struct {
		name string
		expr string
		want celx.Want
		dst  **program
	}{
		{"id", m.ID, wantString, &cm.id},
		{"type", m.Type, wantString, &cm.typ},
		{"source", m.Source, wantString, &cm.source},
		{"subject", m.Subject, wantString, &cm.subject},
		{"time", m.Time, wantTime, &cm.time},
	} {
		if f.expr == "" {
			continue
		}
		if *f.dst, err = compile(env, field+"."+f.name, f.expr, f.want); err != nil {
			return cm, err
		}
	}
	if m.Data != nil {
		cm.hasData = true
		keys := make([]string, 0, len(m.Data))
		for k := range m.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if m.Data[k] == "" {
				return cm, fmt.Errorf("otlpconv: %s.data.%s: empty expression", field, k)
			}
			p, err := compile(env, field+".data."+k, m.Data[k], wantAny)
			if err != nil {
				return cm, err
			}
			cm.data = append(cm.data, dataField{key: k, p: p})
		}
	}
	return cm, nil
}

// event appends the event of the current item to w.buf. ok is false when
// the filter dropped it. Evaluation order (and so which error is reported
// first): filter, rules, id, type, source, subject, time, data.
func (w *walker) event(idx int, t time.Time, defaultData func([]field) []field) (bool, error) {
	cs, act := w.cs, &w.act
	if cs.filter != nil {
		keep, err := cs.filter.EvalBool(act)
		if err != nil {
			return false, err
		}
		if !keep {
			return false, nil
		}
	}
	m := &cs.base
	for i := range cs.rules {
		r := &cs.rules[i]
		hit, err := r.match.EvalBool(act)
		if err != nil && !errors.Is(err, errMissing) {
			return false, err
		}
		if hit {
			m = &r.merged
			break
		}
	}
	var id string
	var err error
	if m.id != nil {
		if id, err = nonEmpty(m.id, act); err != nil {
			return false, err
		}
	}
	typ, err := nonEmpty(m.typ, act)
	if err != nil {
		return false, err
	}
	source, err := nonEmpty(m.source, act)
	if err != nil {
		return false, err
	}
	subject, err := nonEmpty(m.subject, act)
	if err != nil {
		return false, err
	}
	evTime := t // the built-in `time` expression is the item's time
	if !m.time.isTimeVar {
		if evTime, err = m.time.EvalTime(act); err != nil {
			return false, err
		}
		if evTime.IsZero() || evTime.UnixNano() == 0 {
			evTime = t
		}
	}

	b := append(w.buf, `{"specversion":"1.0","id":`...)
	if m.id != nil {
		b = appendString(b, id)
	} else {
		if w.idPrefix == nil {
			w.idPrefix = appendIDPrefix(append(make([]byte, 0, len(idNamespace)+sha256.Size*2+1), idNamespace[:]...), w.rec.Data)
		}
		w.name = strconv.AppendInt(append(w.name[:0], w.idPrefix...), int64(idx), 10)
		b = appendUUIDv5(b, w.name)
	}
	b = append(b, `,"source":`...)
	b = appendString(b, source)
	b = append(b, `,"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"subject":`...)
	b = appendString(b, subject)
	b = append(b, `,"time":`...)
	b = appendTime(b, evTime)
	noData := len(b)
	b = append(b, `,"datacontenttype":"application/json","data":`...)
	if !m.hasData {
		w.data = defaultData(w.data[:0])
		b = appendFields(b, w.data)
		clear(w.data) // drop references to this item's values
	} else {
		b = append(b, '{')
		n := 0
		for _, f := range m.data {
			v, err := f.p.Eval(act)
			if errors.Is(err, errMissing) {
				continue // absent attribute: the field is omitted
			}
			if err != nil {
				w.buf = b
				return false, err
			}
			j, err := toJSON(v, "data."+f.key)
			if err != nil {
				w.buf = b
				return false, err
			}
			if n > 0 {
				b = append(b, ',')
			}
			n++
			b = appendString(b, f.key)
			b = append(b, ':')
			b = appendValue(b, j)
		}
		if n == 0 {
			b = b[:noData] // no data: neither data nor datacontenttype
		} else {
			b = append(b, '}')
		}
	}
	w.buf = append(b, '}')
	return true, nil
}

// over fills the rule's unset fields from base.
func (m compiledMapping) over(base compiledMapping) compiledMapping {
	if m.id == nil {
		m.id = base.id
	}
	if m.typ == nil {
		m.typ = base.typ
	}
	if m.source == nil {
		m.source = base.source
	}
	if m.subject == nil {
		m.subject = base.subject
	}
	if m.time == nil {
		m.time = base.time
	}
	if !m.hasData {
		m.data, m.hasData = base.data, base.hasData
	}
	return m
}

func nonEmpty(p *program, act *activation) (string, error) {
	s, err := p.EvalString(act)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("%s: expression `%s` gave an empty string; a CloudEvent needs a %s", p.Field, p.Expr, p.Field[lastDot(p.Field)+1:])
	}
	return s, nil
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

// idNamespace is the UUIDv5 namespace of derived event ids: the UUIDv5 of
// "bucketq.otlp" in the DNS namespace.
var idNamespace = func() [16]byte {
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	return uuidV5Bytes(dns, []byte("bucketq.otlp"))
}()

// EventID returns the derived id of item itemIndex (counted from 0 over the
// whole OTLP request, in message order) of the record whose stored bytes
// are record: the UUIDv5 (RFC 9562) of "<sha256 of record, lower-case
// hex>/<item index>" in the bucketq.otlp namespace. The id depends on the
// record's content only, not on where it is queued: the same request
// stored twice (a client retrying an export whose first attempt was in
// fact stored) gives the same ids, as does every redelivery or replay.
func EventID(record []byte, itemIndex int) string {
	return uuidV5(idName(record, itemIndex))
}

func idName(record []byte, itemIndex int) string {
	return string(strconv.AppendInt(appendIDPrefix(nil, record), int64(itemIndex), 10))
}

// appendIDPrefix appends "<sha256 of record, lower-case hex>/", the part of
// the id name shared by every item of the record (hashed once per record).
func appendIDPrefix(dst, record []byte) []byte {
	sum := sha256.Sum256(record)
	dst = hex.AppendEncode(dst, sum[:])
	return append(dst, '/')
}

func uuidV5(name string) string {
	return string(appendUUID(nil, uuidV5Bytes(idNamespace, []byte(name))))
}

// appendUUIDv5 appends the quoted derived id; nsName is the id namespace
// followed by the name.
func appendUUIDv5(dst, nsName []byte) []byte {
	dst = append(dst, '"')
	dst = appendUUID(dst, uuidV5Sum(nsName))
	return append(dst, '"')
}

func appendUUID(dst []byte, u [16]byte) []byte {
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}

func uuidV5Bytes(ns [16]byte, name []byte) [16]byte {
	return uuidV5Sum(append(ns[:len(ns):len(ns)], name...))
}

// uuidV5Sum is the UUIDv5 of the namespace and name already concatenated.
func uuidV5Sum(nsName []byte) [16]byte {
	sum := sha1.Sum(nsName)
	var u [16]byte
	copy(u[:], sum[:16])
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u
}
