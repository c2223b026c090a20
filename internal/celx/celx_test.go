package celx

import (
	"errors"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
)

func TestCompileAndEvalErrorsNameFieldAndExpression(t *testing.T) {
	env, err := cel.NewEnv(cel.OptionalTypes(), cel.Variable("row", cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(env, "m.type", "1", String); err == nil || err.Error() != "m.type: expression `1` has type int, want string" {
		t.Fatalf("Compile type mismatch: %v", err)
	}
	if _, err := Compile(env, "m.x", "row.", Any); err == nil || !strings.HasPrefix(err.Error(), "m.x: expression `row.`: ") {
		t.Fatalf("Compile syntax error: %v", err)
	}
	act := map[string]any{"row": map[string]any{"a": "2026-11-01T00:00:00Z", "n": int64(3)}}
	for _, tc := range []struct {
		expr     string
		withExpr bool
		want     string
		absent   bool
	}{
		{"row.b", false, "m.f: absent (no such key: b)", true},
		{"row.b", true, "m.f: expression `row.b`: absent (no such key: b)", true},
		{"row.?b", true, "m.f: expression `row.?b`: absent (optional.none())", true},
		{"row.n / 0", false, "m.f: expression `row.n / 0`: division by zero", false},
	} {
		p, err := Compile(env, "m.f", tc.expr, Any)
		if err != nil {
			t.Fatal(err)
		}
		p.AbsentNamesExpr = tc.withExpr
		_, err = p.Eval(act)
		if err == nil || err.Error() != tc.want || errors.Is(err, ErrAbsent) != tc.absent {
			t.Errorf("Eval(%s) = %v, want %q (absent %v)", tc.expr, err, tc.want, tc.absent)
		}
	}
	p, _ := Compile(env, "m.t", "row.n", Time)
	if _, err := p.EvalTime(act); err == nil || err.Error() != "m.t: expression `row.n` gave int, want timestamp or RFC 3339 string" {
		t.Errorf("EvalTime: %v", err)
	}
	p, _ = Compile(env, "m.t", "row.a", Time)
	if ts, err := p.EvalTime(act); err != nil || FormatTime(ts) != "2026-11-01T00:00:00Z" {
		t.Errorf("EvalTime = %v, %v", ts, err)
	}
	p, _ = Compile(env, "m.d", `{"a": [1, 2.5, row.n], "b": 0.0/0.0}`, Any)
	v, _ := p.Eval(act)
	if _, err := ToJSON(v, "m.d"); err == nil || err.Error() != "m.d.b: NaN is not representable in JSON" {
		t.Errorf("ToJSON NaN: %v", err)
	}
}
