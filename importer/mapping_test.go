package importer

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var objTime = time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)

func TestCompileErrorsNameTheExpression(t *testing.T) {
	for _, tc := range []struct {
		m    Mapping
		want string
	}{
		{Mapping{Subject: "row.c"}, "import.mapping.type: required"},
		{Mapping{Type: `"t"`}, "import.mapping.subject: required"},
		{Mapping{Type: `"t"`, Subject: "row.c +"}, "import.mapping.subject: expression `row.c +`"},
		{Mapping{Type: `1`, Subject: "row.c"}, "import.mapping.type: expression `1` has type int, want string"},
		{Mapping{Type: `"t"`, Subject: "row.c", Time: "row_number"}, "import.mapping.time: expression `row_number` has type int"},
		{Mapping{Type: `"t"`, Subject: "row.c", Data: map[string]string{"n": "nope(1)"}}, "import.mapping.data.n: expression `nope(1)`"},
	} {
		_, err := Compile(tc.m)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%+v) = %v, want %q", tc.m, err, tc.want)
		}
	}
}

func decode(t *testing.T, rec []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEventFromCSVRow(t *testing.T) {
	m, err := Compile(Mapping{
		Type: `row.event`, Subject: `row.customer`, Time: `row.ts`,
		Data: map[string]string{"tokens": `int(row.tokens)`, "cost": `double(row.cost)`, "model": `row.model`, "opt": `row.?absent`},
	})
	if err != nil {
		t.Fatal(err)
	}
	row := Row{N: 7, Raw: []byte("a,b"), Header: []string{"event", "customer", "ts", "tokens", "cost", "model"},
		Fields: []string{"llm", "c-1", "2026-11-01T10:00:00Z", "1200", "0.25", "big"}}
	v := Vars{Object: "usage/a.csv", ObjectTime: objTime}
	rec, err := Event(m, row, v)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, rec)
	if got["type"] != "llm" || got["subject"] != "c-1" || got["time"] != "2026-11-01T10:00:00Z" || got["source"] != "bucketq-import" {
		t.Fatalf("event = %s", rec)
	}
	if got["id"] != DerivedID("usage/a.csv", 7, []byte("a,b")) {
		t.Fatalf("id %v is not the derived one", got["id"])
	}
	d := got["data"].(map[string]any)
	if d["tokens"] != float64(1200) || d["cost"] != 0.25 || d["model"] != "big" || len(d) != 3 {
		t.Fatalf("data = %v", d)
	}
	// Same row, same id; another row number or content, another.
	rec2, _ := Event(m, row, v)
	if string(rec2) != string(rec) {
		t.Fatal("the same row gave two different events")
	}
	if DerivedID("usage/a.csv", 8, []byte("a,b")) == got["id"] || DerivedID("usage/a.csv", 7, []byte("a,c")) == got["id"] {
		t.Fatal("derived ids collide")
	}

	row.Fields[3] = "12x"
	if _, err := Event(m, row, v); err == nil || !strings.Contains(err.Error(), "import.mapping.data.tokens: expression `int(row.tokens)`") {
		t.Fatalf("bad number: err = %v", err)
	}
	row.Fields[3], row.Fields[1] = "1", ""
	if _, err := Event(m, row, v); err == nil || !strings.Contains(err.Error(), "subject") {
		t.Fatalf("empty subject: err = %v", err)
	}
}

func TestEventFromJSONRows(t *testing.T) {
	m, err := Compile(Mapping{Type: `"api"`, Subject: `row.user`})
	if err != nil {
		t.Fatal(err)
	}
	v := Vars{Object: "o.ndjson", ObjectTime: objTime}
	obj := []byte(`{"user":"u1","n":12345678901234,"f":1.5}`)
	rec, err := Event(m, Row{N: 1, Raw: obj, Object: obj}, v)
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, rec)
	if got["time"] != "2026-11-03T04:05:06Z" || got["data"].(map[string]any)["n"] != float64(12345678901234) {
		t.Fatalf("event = %s", rec)
	}

	ce := []byte(`{"specversion":"1.0","id":"e1","source":"s","type":"t","subject":"c","time":"2025-01-01T00:00:00Z","data":{"x":1}}`)
	rec, err = Event(nil, Row{N: 2, Raw: ce, Object: ce}, v)
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, rec); got["id"] != "e1" || got["time"] != "2025-01-01T00:00:00Z" || got["data"].(map[string]any)["x"] != float64(1) {
		t.Fatalf("CloudEvent row = %s", rec)
	}
	noID := []byte(`{"specversion":"1.0","source":"s","type":"t","subject":"c"}`)
	rec, err = Event(nil, Row{N: 3, Raw: noID, Object: noID}, v)
	if err != nil {
		t.Fatal(err)
	}
	if got := decode(t, rec); got["id"] != DerivedID("o.ndjson", 3, noID) || got["time"] != "2026-11-03T04:05:06Z" {
		t.Fatalf("CloudEvent row without id/time = %s", rec)
	}
	for name, b := range map[string]string{
		"no subject":  `{"specversion":"1.0","id":"1","source":"s","type":"t"}`,
		"bad version": `{"specversion":"0.1","id":"1","source":"s","type":"t","subject":"c"}`,
		"array data":  `{"specversion":"1.0","id":"1","source":"s","type":"t","subject":"c","data":[1]}`,
	} {
		if _, err := Event(nil, Row{N: 4, Raw: []byte(b), Object: []byte(b)}, v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Event(nil, Row{N: 5, Raw: obj, Object: obj}, v); err == nil || !strings.Contains(err.Error(), "no import.mapping") {
		t.Fatalf("unmapped row: err = %v", err)
	}
}
