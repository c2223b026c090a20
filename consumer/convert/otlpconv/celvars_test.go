package otlpconv

import (
	"testing"

	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TestEveryDeclaredVariableResolves: the CEL variables are declared in
// cel.go and resolved by the activation in convert.go; a name declared but
// not resolved would compile and then fail every item at run time. Every
// declared variable of each signal must resolve.
func TestEveryDeclaredVariableResolves(t *testing.T) {
	outer := &outerVars{}
	for signal, vars := range map[string]itemVars{
		"logs": &logVars{lr: &logspb.LogRecord{}},
		"metrics": &metricVars{m: &metricspb.Metric{}, p: &point{
			number: &metricspb.NumberDataPoint{}}},
		"traces": &spanVars{sp: &tracepb.Span{}},
	} {
		env, err := newEnv(signal)
		if err != nil {
			t.Fatal(err)
		}
		act := &activation{outer: outer, vars: vars}
		n := 0
		for _, d := range env.Variables() {
			n++
			if _, ok := act.ResolveName(d.Name()); !ok {
				t.Errorf("%s: variable %q is declared but does not resolve", signal, d.Name())
			}
		}
		if n < 15 {
			t.Fatalf("%s: only %d variables declared", signal, n)
		}
		if _, ok := act.ResolveName("no_such_variable"); ok {
			t.Fatalf("%s: an undeclared name resolves", signal)
		}
	}
}
