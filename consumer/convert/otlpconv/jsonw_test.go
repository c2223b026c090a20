package otlpconv

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
)

// encodingJSON is what the events were written with before the direct
// writer: json.Encoder without HTML escaping.
func encodingJSON(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

func randString(r *rand.Rand) string {
	pieces := []string{"a", "Z", "<", ">", "&", `"`, `\`, "\n", "\t", "\r", "\b", "\f", "\x00", "\x1f", "\x7f",
		"é", "€", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x82", "😀", " ", "/", "customer-1"}
	var b []byte
	for n := r.IntN(8); n > 0; n-- {
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return string(b)
}

func randFloat(r *rand.Rand) float64 {
	for {
		var f float64
		switch r.IntN(4) {
		case 0:
			f = math.Float64frombits(r.Uint64())
		case 1:
			f = float64(r.IntN(2000)-1000) / 8
		case 2:
			f = r.Float64() * math.Pow(10, float64(r.IntN(60)-30))
		default:
			f = []float64{0, math.Copysign(0, -1), 1e-6, 1e-7, 1e21, 1e20, 123456789012345678, 0.1, -2.5e-9}[r.IntN(9)]
		}
		if !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f
		}
	}
}

func randValue(r *rand.Rand, depth int) any {
	k := r.IntN(10)
	if depth > 2 && k >= 8 {
		k = 0
	}
	switch k {
	case 0:
		return randString(r)
	case 1:
		return r.IntN(2) == 0
	case 2:
		return int64(r.Uint64())
	case 3:
		return r.Uint64()
	case 4:
		return randFloat(r)
	case 5:
		b := make([]byte, r.IntN(7))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if r.IntN(5) == 0 {
			b = nil
		}
		return b
	case 6:
		return nil
	case 7:
		return int64s{r.Uint64(), 3, math.MaxUint64}
	case 8:
		l := make([]any, r.IntN(4))
		for i := range l {
			l[i] = randValue(r, depth+1)
		}
		return l
	default:
		m := map[string]any{}
		for n := r.IntN(20); n > 0; n-- {
			m[randString(r)] = randValue(r, depth+1)
		}
		return m
	}
}

// asBefore replaces int64s by the []any of int64 the data held before.
func asBefore(v any) any {
	switch t := v.(type) {
	case int64s:
		return ints(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = asBefore(e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range t {
			out[k] = asBefore(e)
		}
		return out
	}
	return v
}

// TestJSONWriterMatchesEncodingJSON holds the direct writer to the bytes
// encoding/json wrote for the same values (the goldens hold it for whole
// events).
func TestJSONWriterMatchesEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		v := randValue(r, 0)
		got := appendValue(nil, v)
		if exp := encodingJSON(t, asBefore(v)); !bytes.Equal(got, exp) {
			t.Fatalf("value %#v:\n got %s\nwant %s", v, got, exp)
		}
	}
	// Fields, sorted like map keys.
	fs := []field{{key: "b", kind: fString, s: "x<y"}, {key: "a", kind: fFloat, f: 1e21}, {key: "c", kind: fTimeNs, n: 1718000000123456789},
		{key: "ab", kind: fHex, raw: []byte{0xde, 0xad}}, {key: "z", kind: fInt, n: -3}, {key: "y", kind: fBool, b: true}, {key: "e", v: float64s{0.5, 1e-7}}}
	got := appendFields(nil, fs)
	exp := encodingJSON(t, map[string]any{"b": "x<y", "a": 1e21, "c": "2024-06-10T06:13:20.123456789Z", "ab": "dead", "z": -3, "y": true, "e": []any{0.5, 1e-7}})
	if !bytes.Equal(got, exp) {
		t.Errorf("fields:\n got %s\nwant %s", got, exp)
	}
	// Not representable in JSON: null.
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := appendValue(nil, f); string(got) != "null" {
			t.Errorf("%v written as %s, want null", f, got)
		}
	}
}
