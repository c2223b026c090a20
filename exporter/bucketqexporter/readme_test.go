package bucketqexporter

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestREADMEListsEveryKey: every top-level key of Config (its mapstructure
// names, the squashed timeout included) has a row in the README's key
// table, and every row names a key that exists.
func TestREADMEListsEveryKey(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	// The key table is above the Telemetry section (whose metric table
	// TestDocumentedMetricsAreReported checks).
	keyPart, _, _ := strings.Cut(string(b), "\n## Telemetry")
	for _, line := range strings.Split(keyPart, "\n") {
		if k, ok := strings.CutPrefix(line, "| `"); ok {
			if i := strings.Index(k, "`"); i > 0 {
				rows[k[:i]] = true
			}
		}
	}
	keys := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(rt reflect.Type) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			tag := f.Tag.Get("mapstructure")
			if tag == ",squash" {
				walk(f.Type)
				continue
			}
			if name, _, _ := strings.Cut(tag, ","); name != "" {
				keys[name] = true
			}
		}
	}
	walk(reflect.TypeOf(Config{}))
	for k := range keys {
		if !rows[k] {
			t.Errorf("config key %q has no README table row", k)
		}
	}
	// Rows of the sending_queue table start with a backtick too; only
	// check that each key-looking row of the key table is a key.
	for k := range rows {
		if !keys[k] && !strings.ContainsAny(k, " :") && k != "enabled" && k != "wait_for_result" {
			t.Errorf("README row %q names no config key", k)
		}
	}
}
