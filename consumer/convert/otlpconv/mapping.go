package otlpconv

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
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
	match *program
	m     compiledMapping
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
		if cr.m, err = compileMapping(env, field, r.Mapping); err != nil {
			return nil, err
		}
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
		want want
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

// item is what the converters hand to the mapping for one log record, data
// point or span.
type item struct {
	act         *activation
	pos         string    // "resource 0 scope 1 log record 2", for errors
	idName      string    // name of the derived UUIDv5
	defaultTime time.Time // used when time is the built-in variable
	defaultData func() (map[string]any, error)
}

// cloudEvent is the structured-mode JSON CloudEvent (spec 1.0).
type cloudEvent struct {
	SpecVersion     string         `json:"specversion"`
	ID              string         `json:"id"`
	Source          string         `json:"source"`
	Type            string         `json:"type"`
	Subject         string         `json:"subject"`
	Time            string         `json:"time,omitempty"`
	DataContentType string         `json:"datacontenttype,omitempty"`
	Data            map[string]any `json:"data,omitempty"`
}

// event maps one item. ok is false when the filter dropped it.
func (cs *compiledSignal) event(it *item) (json.RawMessage, bool, error) {
	if cs.filter != nil {
		keep, err := cs.filter.evalBool(it.act)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", it.pos, err)
		}
		if !keep {
			return nil, false, nil
		}
	}
	m := cs.base
	for _, r := range cs.rules {
		hit, err := r.match.evalBool(it.act)
		if err != nil && !errors.Is(err, errMissing) {
			return nil, false, fmt.Errorf("%s: %w", it.pos, err)
		}
		if hit {
			m = r.m.over(cs.base)
			break
		}
	}
	ev, err := m.build(it)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", it.pos, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, false, fmt.Errorf("%s: encode event: %w", it.pos, err)
	}
	return json.RawMessage(bytes.TrimRight(buf.Bytes(), "\n")), true, nil
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

func (m compiledMapping) build(it *item) (*cloudEvent, error) {
	ev := &cloudEvent{SpecVersion: "1.0"}
	var err error
	if m.id != nil {
		if ev.ID, err = nonEmpty(m.id, it); err != nil {
			return nil, err
		}
	} else {
		ev.ID = uuidV5(it.idName)
	}
	if ev.Type, err = nonEmpty(m.typ, it); err != nil {
		return nil, err
	}
	if ev.Source, err = nonEmpty(m.source, it); err != nil {
		return nil, err
	}
	if ev.Subject, err = nonEmpty(m.subject, it); err != nil {
		return nil, err
	}
	t, err := m.time.evalTime(it.act)
	if err != nil {
		return nil, err
	}
	if t.IsZero() || t.UnixNano() == 0 {
		t = it.defaultTime
	}
	ev.Time = formatTime(t)

	if !m.hasData {
		if ev.Data, err = it.defaultData(); err != nil {
			return nil, err
		}
		if err := checkNative(ev.Data, "data"); err != nil {
			return nil, err
		}
	} else {
		ev.Data = make(map[string]any, len(m.data))
		for _, f := range m.data {
			v, err := f.p.eval(it.act)
			if errors.Is(err, errMissing) {
				continue // absent attribute: the field is omitted
			}
			if err != nil {
				return nil, err
			}
			j, err := toJSON(v, "data."+f.key)
			if err != nil {
				return nil, err
			}
			ev.Data[f.key] = j
		}
	}
	if len(ev.Data) > 0 {
		ev.DataContentType = "application/json"
	}
	return ev, nil
}

func nonEmpty(p *program, it *item) (string, error) {
	s, err := p.evalString(it.act)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("%s: expression `%s` gave an empty string; a CloudEvent needs a %s", p.field, p.expr, p.field[lastDot(p.field)+1:])
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
	return uuidV5Bytes(dns, "bucketq.otlp")
}()

// EventID returns the derived id of item itemIndex (counted from 0 over the
// whole OTLP request, in message order) of record recordIndex of the batch
// at location: the UUIDv5 (RFC 9562) of "<location>#<record>/<item>" in the
// bucketq.otlp namespace. The same queue position always gives the same id.
func EventID(location string, recordIndex, itemIndex int) string {
	return uuidV5(idName(location, recordIndex, itemIndex))
}

func idName(location string, recordIndex, itemIndex int) string {
	return location + "#" + strconv.Itoa(recordIndex) + "/" + strconv.Itoa(itemIndex)
}

func uuidV5(name string) string {
	u := uuidV5Bytes(idNamespace, name)
	const hexd = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexd[b>>4], hexd[b&0xf])
	}
	return string(out)
}

func uuidV5Bytes(ns [16]byte, name string) [16]byte {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u
}
