package openmetertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// referenceValidate is the straightforward decoder the scanner replaced:
// every event unmarshalled into a map. The scanner must agree with it on
// every input (accept/reject and the decoded fields).
func referenceValidate(raw json.RawMessage) (Event, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return Event{}, fmt.Errorf("not a JSON object")
	}
	ev := Event{Raw: raw}
	str := func(name string, dst *string, required bool) error {
		v, ok := fields[name]
		if !ok || string(v) == "null" {
			if required {
				return fmt.Errorf("%s is required", name)
			}
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%s must be a string", name)
		}
		if required && *dst == "" {
			return fmt.Errorf("%s must not be empty", name)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"id", &ev.ID}, {"source", &ev.Source}, {"type", &ev.Type}, {"subject", &ev.Subject}, {"specversion", &ev.SpecVersion}} {
		if err := str(f.name, f.dst, true); err != nil {
			return Event{}, err
		}
	}
	if ev.SpecVersion != "1.0" {
		return Event{}, fmt.Errorf("specversion %q, want \"1.0\"", ev.SpecVersion)
	}
	if err := str("time", &ev.Time, false); err != nil {
		return Event{}, err
	}
	if ev.Time != "" {
		if _, err := time.Parse(time.RFC3339Nano, ev.Time); err != nil {
			return Event{}, fmt.Errorf("time %q is not RFC 3339", ev.Time)
		}
	}
	var dct string
	if err := str("datacontenttype", &dct, false); err != nil {
		return Event{}, err
	}
	if v, ok := fields["datacontenttype"]; ok && string(v) != "null" && dct != "application/json" {
		return Event{}, fmt.Errorf("datacontenttype %q, only application/json is allowed", dct)
	}
	if d, ok := fields["data"]; ok {
		d = bytes.TrimSpace(d)
		switch {
		case string(d) == "null":
		case len(d) > 0 && d[0] == '{':
			ev.Data = d
		default:
			return Event{}, fmt.Errorf("data must be a JSON object or null")
		}
	}
	return ev, nil
}

// genEvent is a realistic ~250-byte event.
func genEvent(r *rand.Rand, i int) string {
	return fmt.Sprintf(`{"specversion":"1.0","type":"api-calls","id":"ev-%d","source":"gateway-%d","subject":"customer-%05d","time":"2026-01-01T00:00:%02d.%03dZ","data":{"method":"GET","route":"/v1/orders/{id}","status":%d,"duration_ms":%d,"region":"eu-west-1","note":"a \"quoted\" } brace"}}`,
		i, r.IntN(5), r.IntN(100000), r.IntN(60), r.IntN(1000), 200+r.IntN(300), r.IntN(2000))
}

func genBatch(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	evs := make([]string, n)
	for i := range evs {
		evs[i] = genEvent(r, i)
	}
	return evs
}

func joinBatch(evs []string) string { return "[" + strings.Join(evs, ",\n ") + "]" }

// Bad events the scanner must reject like the reference does, each one
// spliced into a large valid batch.
var badEvents = []struct{ name, event string }{
	{"truncated object", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c"`},
	{"trailing comma", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c",}`},
	{"unquoted key", `{specversion:"1.0","id":"x","source":"s","type":"t","subject":"c"}`},
	{"bad escape", `{"specversion":"1.0","id":"x\q","source":"s","type":"t","subject":"c"}`},
	{"control char in string", "{\"specversion\":\"1.0\",\"id\":\"x\ty\",\"source\":\"s\",\"type\":\"t\",\"subject\":\"c\"}"},
	{"bad number", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c","data":{"n":01}}`},
	{"missing id", `{"specversion":"1.0","source":"s","type":"t","subject":"c"}`},
	{"empty source", `{"specversion":"1.0","id":"x","source":"","type":"t","subject":"c"}`},
	{"null type", `{"specversion":"1.0","id":"x","source":"s","type":null,"subject":"c"}`},
	{"numeric subject", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":7}`},
	{"specversion 1.1", `{"specversion":"1.1","id":"x","source":"s","type":"t","subject":"c"}`},
	{"time not RFC 3339", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c","time":"2026-01-01 00:00:00"}`},
	{"data array", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c","data":[1]}`},
	{"data string", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c","data":"{}"}`},
	{"datacontenttype text", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c","datacontenttype":"text/plain"}`},
	{"later duplicate key empties id", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c","id":""}`},
	{"escaped key empties id", `{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c","\u0069d":""}`},
	{"id only inside data", `{"specversion":"1.0","source":"s","type":"t","subject":"c","data":{"id":"x"}}`},
	{"id only inside a string", `{"specversion":"1.0","source":"s","type":"t","subject":"c","note":"\"id\":\"x\""}`},
	{"not an object", `"event"`},
	{"null element", `null`},
	{"array element", `[{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c"}]`},
}

// TestLargeBatchWithOneBadEvent: one malformed or invalid event anywhere in
// a 5,000-event batch rejects the whole request with 400 and records
// nothing; the same batch without it is accepted whole.
func TestLargeBatchWithOneBadEvent(t *testing.T) {
	const n = 5000
	s := New(Options{})
	defer s.Close()
	const ct = "application/cloudevents-batch+json"
	for _, bad := range badEvents {
		for _, pos := range []int{0, n / 2, n - 1} {
			evs := genBatch(n, uint64(pos))
			evs[pos] = bad.event
			body := joinBatch(evs)
			if _, err := referenceValidate(json.RawMessage(bad.event)); err == nil {
				t.Fatalf("%s: the reference accepts %s; the case is wrong", bad.name, bad.event)
			}
			if _, err := ValidateBatch([]byte(body)); err == nil {
				t.Fatalf("%s at %d: ValidateBatch accepted the batch", bad.name, pos)
			}
			resp, msg := post(t, s.Endpoint, ct, "", body)
			if resp.StatusCode != 400 {
				t.Fatalf("%s at %d: status %d, want 400 (%s)", bad.name, pos, resp.StatusCode, msg)
			}
			if got := s.Accepted(); got != 0 {
				t.Fatalf("%s at %d: %d events recorded from a rejected batch", bad.name, pos, got)
			}
		}
	}
	evs := genBatch(n, 99)
	if resp, msg := post(t, s.Endpoint, ct, "", joinBatch(evs)); resp.StatusCode != 204 {
		t.Fatalf("valid batch: status %d (%s)", resp.StatusCode, msg)
	}
	got := s.Events()
	if len(got) != n || s.Distinct() != n {
		t.Fatalf("valid batch: %d events, %d distinct, want %d", len(got), s.Distinct(), n)
	}
	for i, ev := range got {
		if string(ev.Raw) != evs[i] {
			t.Fatalf("event %d Raw %s, want %s", i, ev.Raw, evs[i])
		}
	}
	// The bad-event cases in a batch posted again after acceptance are
	// duplicates only once they pass: resend the good batch.
	if resp, _ := post(t, s.Endpoint, ct, "", joinBatch(evs)); resp.StatusCode != 204 || s.Duplicates() != n {
		t.Fatalf("resent batch: status %d, duplicates %d, want %d", resp.StatusCode, s.Duplicates(), n)
	}
}

// TestScannerAgreesWithReference: on valid, invalid and tricky events (each
// bad event above, each good one, and random byte-level mutations of good
// ones) the scanner accepts exactly what the map-based reference accepts
// and decodes the same fields.
func TestScannerAgreesWithReference(t *testing.T) {
	inputs := []string{good,
		`{"specversion":"1.0","id":"a\"b","source":"s\u00e9","type":"t","subject":"c","time":null,"datacontenttype":null,"data":null}`,
		`{ "specversion" : "1.0" , "id" : "x" , "source" : "s" , "type" : "t" , "subject" : "c" , "data" : { "k" : [ 1 , { "a" : "}" } ] } }`,
		`{"specversion":"1.0","id":"x","source":"s","type":"t","subject":"c","datacontenttype":"application/json","extra":{"id":""},"list":[true,false,null,-1.5e3]}`,
		`{"specversion":"1.0","id":"","id":"x","source":"s","type":"t","subject":"c"}`,
		"{\"specversion\":\"1.0\",\"id\":\"\xff\",\"source\":\"s\",\"type\":\"t\",\"subject\":\"c\"}",
		`{}`, `[]`, `1`, `true`, ``,
	}
	for _, b := range badEvents {
		inputs = append(inputs, b.event)
	}
	const sig = `{}[]",:\ 0a-`
	r := rand.New(rand.NewPCG(7, 7))
	for range 3000 {
		ev := []byte(genEvent(r, r.IntN(100)))
		for range 1 + r.IntN(3) {
			i := r.IntN(len(ev))
			switch r.IntN(3) {
			case 0: // replace a byte with a JSON-significant one
				ev[i] = sig[r.IntN(len(sig))]
			case 1: // delete a byte
				ev = append(ev[:i], ev[i+1:]...)
			default: // duplicate a span
				j := min(len(ev), i+1+r.IntN(20))
				ev = append(ev[:j:j], ev[i:]...)
			}
		}
		inputs = append(inputs, string(ev))
	}
	rejected := 0
	for _, in := range inputs {
		want, werr := referenceValidate(json.RawMessage(in))
		got, gerr := Validate(json.RawMessage(in))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("input %q: scanner error %v, reference error %v", in, gerr, werr)
		}
		if werr != nil {
			rejected++
			if _, err := decodeBody([]byte("["+good+", "+in+"]"), false, true); err == nil {
				t.Fatalf("input %q in a batch: accepted, the reference rejects it: %v", in, werr)
			}
			continue
		}
		if got.ID != want.ID || got.Source != want.Source || got.Type != want.Type || got.Subject != want.Subject ||
			got.SpecVersion != want.SpecVersion || got.Time != want.Time || string(got.Data) != string(want.Data) {
			t.Fatalf("input %q: scanner %+v, reference %+v", in, got, want)
		}
		// Inside a batch and alone, the server agrees too.
		if evs, err := decodeBody([]byte("[ "+in+" ,"+good+"]"), false, true); err != nil || len(evs) != 2 || evs[0].ID != want.ID {
			t.Fatalf("input %q in a batch: %v", in, err)
		}
	}
	if rejected < len(inputs)/4 || rejected == len(inputs) {
		t.Fatalf("%d of %d inputs rejected: the mutations do not exercise both outcomes", rejected, len(inputs))
	}
}

// BenchmarkDecodeBody: the fake's whole validation of a 500-event batch of
// ~250-byte events, beside json.Valid on the same bytes (the floor any
// validating sink pays). x-json-valid is the ratio of their times.
func BenchmarkDecodeBody(b *testing.B) {
	body := []byte(joinBatch(genBatch(500, 1)))
	b.SetBytes(int64(len(body)))
	var scan, valid time.Duration
	for b.Loop() {
		t0 := time.Now()
		evs, err := decodeBody(body, false, true)
		t1 := time.Now()
		ok := json.Valid(body)
		valid += time.Since(t1)
		scan += t1.Sub(t0)
		if err != nil || len(evs) != 500 || !ok {
			b.Fatalf("decode: %d events, %v; valid %v", len(evs), err, ok)
		}
	}
	b.ReportMetric(float64(scan.Nanoseconds())/float64(b.N)/500, "ns/event")
	b.ReportMetric(float64(valid.Nanoseconds())/float64(b.N)/500, "json-valid-ns/event")
	b.ReportMetric(float64(scan)/float64(valid), "x-json-valid")
	b.ReportMetric(float64(b.N)*500/scan.Seconds(), "events/s")
}
