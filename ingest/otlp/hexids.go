package otlp

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// idLen is the byte length of each OTLP id field, by JSON key (lowerCamelCase
// and the original proto names, which protojson also accepts).
var idLen = map[string]int{
	"traceId": 16, "trace_id": 16,
	"spanId": 8, "span_id": 8,
	"parentSpanId": 8, "parent_span_id": 8,
}

// HexIDsToBase64 rewrites the trace and span id fields of an OTLP/JSON
// document from the hex strings OTLP/JSON uses (case-insensitive) to the
// base64 standard protojson expects. Empty ids stay empty. A non-hex id or
// one of the wrong length is an error naming the field. Documents without
// any id key are returned unchanged without parsing.
func HexIDsToBase64(body []byte) ([]byte, error) {
	if !mentionsIDs(body) {
		return body, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("invalid JSON: data after the top-level value")
	}
	if err := rewriteIDs(doc, "$"); err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

func rewriteIDs(v any, path string) error {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			p := path + "." + k
			if n, ok := idLen[k]; ok {
				if s, isStr := child.(string); isStr {
					if s == "" {
						continue
					}
					b, err := hex.DecodeString(s)
					if err != nil {
						return fmt.Errorf("%s: %q is not a hex id: %v", p, s, err)
					}
					if len(b) != n {
						return fmt.Errorf("%s: %q has %d bytes, want %d (%d hex digits)", p, s, len(b), n, 2*n)
					}
					t[k] = base64.StdEncoding.EncodeToString(b)
					continue
				}
			}
			if err := rewriteIDs(child, p); err != nil {
				return err
			}
		}
	case []any:
		for i, child := range t {
			if err := rewriteIDs(child, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}
