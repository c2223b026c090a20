package otlpconv

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
	"cel.dev/cel-go/ext"
)

var (
	attrMap = cel.MapType(cel.StringType, cel.DynType)
	common  = []cel.EnvOption{
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Math(),
		ext.Encoders(),
		cel.Variable("resource", attrMap),
		cel.Variable("scope", attrMap),
		cel.Variable("attributes", attrMap),
		cel.Variable("time", cel.TimestampType),
		cel.Variable("ingestion_time", cel.TimestampType),
		cel.Variable("location", cel.StringType),
		cel.Variable("record_index", cel.IntType),
		cel.Variable("item_index", cel.IntType),
	}
	logCELVars = []cel.EnvOption{
		cel.Variable("body", cel.DynType),
		cel.Variable("severity_text", cel.StringType),
		cel.Variable("severity_number", cel.IntType),
		cel.Variable("observed_time", cel.TimestampType),
		cel.Variable("event_name", cel.StringType),
		cel.Variable("trace_id", cel.StringType),
		cel.Variable("span_id", cel.StringType),
		cel.Variable("flags", cel.IntType),
	}
	metricCELVars = []cel.EnvOption{
		cel.Variable("name", cel.StringType),
		cel.Variable("description", cel.StringType),
		cel.Variable("unit", cel.StringType),
		cel.Variable("kind", cel.StringType),
		cel.Variable("temporality", cel.StringType),
		cel.Variable("monotonic", cel.BoolType),
		cel.Variable("value", cel.DoubleType),
		cel.Variable("count", cel.IntType),
		cel.Variable("sum", cel.DoubleType),
		cel.Variable("start_time", cel.TimestampType),
		cel.Variable("end_time", cel.TimestampType),
		cel.Variable("point", attrMap),
		cel.Variable("flags", cel.IntType),
	}
	spanCELVars = []cel.EnvOption{
		cel.Variable("name", cel.StringType),
		cel.Variable("kind", cel.StringType),
		cel.Variable("trace_id", cel.StringType),
		cel.Variable("span_id", cel.StringType),
		cel.Variable("parent_span_id", cel.StringType),
		cel.Variable("trace_state", cel.StringType),
		cel.Variable("start_time", cel.TimestampType),
		cel.Variable("end_time", cel.TimestampType),
		cel.Variable("duration", cel.DurationType),
		cel.Variable("duration_ms", cel.DoubleType),
		cel.Variable("status_code", cel.StringType),
		cel.Variable("status_message", cel.StringType),
		cel.Variable("flags", cel.IntType),
	}
)

func newEnv(signal string) (*cel.Env, error) {
	opts := append([]cel.EnvOption(nil), common...)
	switch signal {
	case "logs":
		opts = append(opts, logCELVars...)
	case "metrics":
		opts = append(opts, metricCELVars...)
	case "traces":
		opts = append(opts, spanCELVars...)
	}
	return cel.NewEnv(opts...)
}

// want is the result kind an expression must produce.
type want int

const (
	wantAny want = iota
	wantString
	wantBool
	wantTime
)

func (w want) String() string {
	return [...]string{"any value", "string", "bool", "timestamp or RFC 3339 string"}[w]
}

// program is one compiled expression with where it came from.
type program struct {
	field string // e.g. "logs.events[0].subject"
	expr  string
	want  want
	prg   cel.Program
	// lit is the value of an expression that is a literal ('"otel.log"'):
	// it is not evaluated per item.
	lit ref.Val
	// isTimeVar: the expression is the `time` variable (the default).
	isTimeVar bool
}

func compile(env *cel.Env, field, expr string, w want) (*program, error) {
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("otlpconv: %s: expression `%s`: %v", field, expr, iss.Err())
	}
	if !outputFits(ast.OutputType(), w) {
		return nil, fmt.Errorf("otlpconv: %s: expression `%s` has type %s, want %s", field, expr, ast.OutputType(), w)
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("otlpconv: %s: expression `%s`: %v", field, expr, err)
	}
	p := &program{field: field, expr: expr, want: w, prg: prg, isTimeVar: strings.TrimSpace(expr) == "time"}
	if e := ast.NativeRep().Expr(); e.Kind() == celast.LiteralKind {
		p.lit = e.AsLiteral()
	}
	return p, nil
}

// outputFits rejects at compile time expressions whose static type can never
// give the wanted kind; dyn and optional results are checked at run time.
func outputFits(t *cel.Type, w want) bool {
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
	case wantString:
		return k == types.StringKind
	case wantBool:
		return k == types.BoolKind
	case wantTime:
		return k == types.TimestampKind || k == types.StringKind
	}
	return true
}

// errMissing marks an evaluation that failed on an absent map key or an
// empty optional: data fields are omitted then, other fields fail.
var errMissing = errors.New("absent")

func (p *program) eval(act any) (ref.Val, error) {
	if p.lit != nil {
		return p.lit, nil
	}
	v, _, err := p.prg.Eval(act)
	if err == nil && types.IsError(v) {
		err = v.(*types.Err)
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "no such key") || strings.HasPrefix(err.Error(), "no such attribute") {
			return nil, fmt.Errorf("%s: %w (%v)", p.field, errMissing, err)
		}
		return nil, fmt.Errorf("%s: expression `%s`: %v", p.field, p.expr, err)
	}
	if o, ok := v.(*types.Optional); ok {
		if !o.HasValue() {
			return nil, fmt.Errorf("%s: %w (optional.none())", p.field, errMissing)
		}
		v = o.GetValue()
	}
	return v, nil
}

func (p *program) evalString(act any) (string, error) {
	v, err := p.eval(act)
	if err != nil {
		return "", err
	}
	s, ok := v.(types.String)
	if !ok {
		return "", fmt.Errorf("%s: expression `%s` gave %s, want string", p.field, p.expr, v.Type().TypeName())
	}
	return string(s), nil
}

func (p *program) evalBool(act any) (bool, error) {
	v, err := p.eval(act)
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%s: expression `%s` gave %s, want bool", p.field, p.expr, v.Type().TypeName())
	}
	return bool(b), nil
}

func (p *program) evalTime(act any) (time.Time, error) {
	v, err := p.eval(act)
	if err != nil {
		return time.Time{}, err
	}
	switch t := v.(type) {
	case types.Timestamp:
		return t.Time, nil
	case types.String:
		ts, perr := time.Parse(time.RFC3339Nano, string(t))
		if perr != nil {
			return time.Time{}, fmt.Errorf("%s: expression `%s` gave %q, not an RFC 3339 time", p.field, p.expr, string(t))
		}
		return ts, nil
	}
	return time.Time{}, fmt.Errorf("%s: expression `%s` gave %s, want timestamp or RFC 3339 string", p.field, p.expr, v.Type().TypeName())
}

// toJSON turns a CEL value into a value encoding/json writes. path names
// the field in errors.
func toJSON(v ref.Val, path string) (any, error) {
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
		return checkFloat(float64(t), path)
	case types.String:
		return string(t), nil
	case types.Bytes:
		return []byte(t), nil // base64 in JSON
	case types.Timestamp:
		return formatTime(t.Time), nil
	case types.Duration:
		return t.Duration.String(), nil
	case *types.Optional:
		if !t.HasValue() {
			return nil, nil
		}
		return toJSON(t.GetValue(), path)
	case *types.Err:
		return nil, fmt.Errorf("%s: %v", path, t)
	}
	if l, ok := v.(traits.Lister); ok {
		n, _ := l.Size().(types.Int)
		out := make([]any, 0, int(n))
		for i := types.Int(0); i < n; i++ {
			e, err := toJSON(l.Get(i), fmt.Sprintf("%s[%d]", path, i))
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
			e, err := toJSON(m.Get(k), path+"."+string(ks))
			if err != nil {
				return nil, err
			}
			out[string(ks)] = e
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: value of type %s cannot be written as JSON", path, v.Type().TypeName())
}

func checkFloat(f float64, path string) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("%s: %v is not representable in JSON", path, f)
	}
	return f, nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
