package objname

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct{ name, err string }{
		{"ingest/manifest", ""},
		{"a", ""},
		{"ingest/data/01J.batch", ""},
		{"ingest/..data", ""}, // a segment that only starts with dots is a name
		{"", "must not be empty"},
		{"/ingest/manifest", "must not start with /"},
		{"/", "must not start with /"},
		{"./ingest", `"." path segment (write the clean name "ingest")`},
		{"ingest/./", `"." path segment`},
		{"ingest/./data", `"." path segment (write the clean name "ingest/data")`},
		{"ingest/data/..", `".." path segment (write the clean name "ingest")`},
		{"ingest/data/../manifest", `".." path segment (write the clean name "ingest/manifest")`},
		{"../../../../etc/passwd", `".." path segment (it does not name an object inside the bucket)`},
		{"..", `".." path segment (it does not name an object inside the bucket)`},
		{".", `"." path segment (it does not name an object inside the bucket)`},
		{"ingest//data", "empty path segment"},
		{"ingest/data/", "empty path segment"},
		{"ingest\\data", "backslash or control character"},
		{"ingest/\x00", "backslash or control character"},
		{"ingest/\ndata", "backslash or control character"},
	} {
		err := Check(tc.name)
		if tc.err == "" {
			if err != nil {
				t.Errorf("Check(%q) = %v, want nil", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.name)) {
			t.Errorf("Check(%q) = %v, want an error naming the value and containing %q", tc.name, err, tc.err)
		}
	}
}

func TestPrefix(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"ingest/data", "ingest/data", ""},
		{"ingest/data/", "ingest/data", ""}, // one trailing slash is how prefixes are often written
		{"ingest/data//", "", "empty path segment"},
		{"ingest/", "ingest", ""},
		{"/", "", `invalid object name "/": must not be empty`},
		{"", "", "must not be empty"},
		{"./ingest", "", `"." path segment`},
		{"ingest/./", "", `invalid object name "ingest/./": "." path segment (write the clean name "ingest")`},
		{"ingest/data/..", "", `".." path segment`},
		{"ingest/data/../", "", `".." path segment`},
	} {
		got, err := Prefix(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("Prefix(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Prefix(%q) = %q, %v; want an error containing %q", tc.in, got, err, tc.err)
		}
	}
}

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"ingest/data", "ingest/data", true},
		{"ingest/data", "ingest/data/x", true},
		{"ingest/data/x", "ingest/data", true},
		{"ingest", "ingest/data", true},
		{"ingest/data", "ingest/database", false},
		{"ingest/data", "ingest/dead-letter", false},
		{"a/b", "b", false},
	} {
		if got := Overlap(tc.a, tc.b); got != tc.want {
			t.Errorf("Overlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
