package otlpconv

import (
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"

	"github.com/bucketq/bucketq/internal/celx"
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

// The result kinds of expressions (celx.Want).
const (
	wantAny    = celx.Any
	wantString = celx.String
	wantBool   = celx.Bool
	wantTime   = celx.Time
)

// program is one compiled expression (celx.Program) with where it came from.
type program struct {
	*celx.Program
	// isTimeVar: the expression is the `time` variable (the default).
	isTimeVar bool
}

func compile(env *cel.Env, field, expr string, w celx.Want) (*program, error) {
	p, err := celx.Compile(env, field, expr, w)
	if err != nil {
		return nil, fmt.Errorf("otlpconv: %w", err)
	}
	return &program{Program: p, isTimeVar: strings.TrimSpace(expr) == "time"}, nil
}

// errMissing marks an evaluation that failed on an absent map key or an
// empty optional: data fields are omitted then, other fields fail.
var errMissing = celx.ErrAbsent

var toJSON = celx.ToJSON
