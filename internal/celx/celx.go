// Package celx compiles and evaluates the CEL expressions of bucketq's
// mapping configs (the OTLP `conversion:` of consumer/convert/otlpconv and
// the `import.mapping` of importer): one place for the result kinds an
// expression must give, the errors that name the config field and the
// expression, absent keys, and turning CEL values into JSON values.
package celx

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// Want is the result kind an expression must produce.
type Want int

const (
	Any Want = iota
	String
	Bool
	Time // a timestamp or an RFC 3339 string
)

func (w Want) String() string {
	return [...]string{"any value", "string", "bool", "timestamp or RFC 3339 string"}[w]
}

// Program is one compiled expression with where it came from.
type Program struct {
	Field string // the config field, e.g. "logs.events[0].subject"
	Expr  string
	Want  Want
	prg   cel.Program
	// lit is the value of an expression that is a literal ('"otel.log"'):
	// it is not evaluated per item.
	lit ref.Val
	// AbsentNamesExpr: errors of absent keys name the expression too.
	AbsentNamesExpr bool
}

// Compile compiles expr in env; errors read "FIELD: expression `EXPR`: ...".
func Compile(env *cel.Env, field, expr string, w Want) (*Program, error) {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("%s: expression `%s`: %v", field, expr, iss.Err())
	}
	if !outputFits(ast.OutputType(), w) {
		return nil, fmt.Errorf("%s: expression `%s` has type %s, want %s", field, expr, ast.OutputType(), w)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("%s: expression `%s`: %v", field, expr, err)
	}
	p := &Program{Field: field, Expr: expr, Want: w, prg: prg}
	if e := ast.NativeRep().Expr(); e.Kind() == celast.LiteralKind {
		p.lit = e.AsLiteral()
	}
	return p, nil
}

// outputFits rejects at compile time expressions whose static type can never
// give the wanted kind; dyn and optional results are checked at run time.
func outputFits(t *cel.Type, w Want) bool {
	k := t.Kind()
	if k == types.DynKind || k == types.AnyKind || k == types.ErrorKind {
		return true
	}
	if k == types.OpaqueKind && t.TypeName() == "optional_type" {
		if ps := t.Parameters(); len(ps) == 1 {
			return outputFits(ps[0], w)
		}
		return true
	}
	switch w {
	case String:
		return k == types.StringKind
	case Bool:
		return k == types.BoolKind
	case Time:
		return k == types.TimestampKind || k == types.StringKind
	}
	return true
}

// ErrAbsent marks an evaluation that failed on an absent map key or an
// empty optional: data fields are omitted then, other fields fail.
var ErrAbsent = errors.New("absent")

// Eval evaluates p over the activation act (a map of variables).
func (p *Program) Eval(act any) (ref.Val, error) {
	if p.lit != nil {
		return p.lit, nil
	}
	v, _, err := p.prg.Eval(act)
	if err == nil && types.IsError(v) {
		err = v.(*types.Err)
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "no such key") || strings.HasPrefix(err.Error(), "no such attribute") {
			return nil, fmt.Errorf("%s: %w (%v)", p.where(), ErrAbsent, err)
		}
		return nil, fmt.Errorf("%s: expression `%s`: %v", p.Field, p.Expr, err)
	}
	if o, ok := v.(*types.Optional); ok {
		if !o.HasValue() {
			return nil, fmt.Errorf("%s: %w (optional.none())", p.where(), ErrAbsent)
		}
		v = o.GetValue()
	}
	return v, nil
}

func (p *Program) where() string {
	if p.AbsentNamesExpr {
		return fmt.Sprintf("%s: expression `%s`", p.Field, p.Expr)
	}
	return p.Field
}

// EvalString evaluates p and wants a string.
func (p *Program) EvalString(act any) (string, error) {
	v, err := p.Eval(act)
	if err != nil {
		return "", err
	}
	s, ok := v.(types.String)
	if !ok {
		return "", fmt.Errorf("%s: expression `%s` gave %s, want string", p.Field, p.Expr, v.Type().TypeName())
	}
	return string(s), nil
}

// EvalBool evaluates p and wants a bool.
func (p *Program) EvalBool(act any) (bool, error) {
	v, err := p.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%s: expression `%s` gave %s, want bool", p.Field, p.Expr, v.Type().TypeName())
	}
	return bool(b), nil
}

// EvalTime evaluates p and wants a timestamp or an RFC 3339 string.
func (p *Program) EvalTime(act any) (time.Time, error) {
	v, err := p.Eval(act)
	if err != nil {
		return time.Time{}, err
	}
	switch t := v.(type) {
	case types.Timestamp:
		return t.Time, nil
	case types.String:
		ts, perr := time.Parse(time.RFC3339Nano, string(t))
		if perr != nil {
			return time.Time{}, fmt.Errorf("%s: expression `%s` gave %q, not an RFC 3339 time", p.Field, p.Expr, string(t))
		}
		return ts, nil
	}
	return time.Time{}, fmt.Errorf("%s: expression `%s` gave %s, want timestamp or RFC 3339 string", p.Field, p.Expr, v.Type().TypeName())
}

// ToJSON turns a CEL value into a value encoding/json writes. path names
// the field in errors.
func ToJSON(v ref.Val, path string) (any, error) {
	switch t := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(t), nil
	case types.Int:
		return int64(t), nil
	case types.Uint:
		return uint64(t), nil
	case types.Double:
		return CheckFloat(float64(t), path)
	case types.String:
		return string(t), nil
	case types.Bytes:
		return []byte(t), nil // base64 in JSON
	case types.Timestamp:
		return FormatTime(t.Time), nil
	case types.Duration:
		return t.Duration.String(), nil
	case *types.Optional:
		if !t.HasValue() {
			return nil, nil
		}
		return ToJSON(t.GetValue(), path)
	case *types.Err:
		return nil, fmt.Errorf("%s: %v", path, t)
	}
	if l, ok := v.(traits.Lister); ok {
		n, _ := l.Size().(types.Int)
		out := make([]any, 0, int(n))
		for i := types.Int(0); i < n; i++ {
			e, err := ToJSON(l.Get(i), fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	if m, ok := v.(traits.Mapper); ok {
		out := map[string]any{}
		for it := m.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			ks, isStr := k.(types.String)
			if !isStr {
				return nil, fmt.Errorf("%s: map key %v is %s, JSON keys must be strings", path, k, k.Type().TypeName())
			}
			e, err := ToJSON(m.Get(k), path+"."+string(ks))
			if err != nil {
				return nil, err
			}
			out[string(ks)] = e
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: value of type %s cannot be written as JSON", path, v.Type().TypeName())
}

// CheckFloat refuses NaN and infinities, which JSON cannot hold.
func CheckFloat(f float64, path string) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%s: %v is not representable in JSON", path, f)
	}
	return f, nil
}

// FormatTime is t as an RFC 3339 UTC string with nanoseconds if any.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
