package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestObjectNameArgumentsStayInTheBucket: every object name a user passes
// on the command line is checked like --manifest-path: no ".." (or ".",
// or empty) segments, not absolute. `inspect batch ../../etc/passwd` and
// `dead-letters show ../../etc/hostname` used to read files outside a
// directory bucket.
func TestObjectNameArgumentsStayInTheBucket(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "bucket")
	secret := filepath.Join(top, "outside", "secret.json")
	for _, d := range []string{dir, filepath.Dir(secret), filepath.Join(dir, "ingest", "dead-letter")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(secret, []byte(`{"secret":"do not print"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("../", 20) + strings.TrimPrefix(filepath.ToSlash(secret), "/")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"inspect", "batch", "../outside/secret.json"}, `bucketq: inspect batch LOCATION: invalid object name "../outside/secret.json": ".." path segment`},
		{[]string{"inspect", "batch", deep, "--records"}, `bucketq: inspect batch LOCATION: invalid object name "` + deep + `": ".." path segment`},
		{[]string{"inspect", "batch", secret}, `bucketq: inspect batch LOCATION: invalid object name "` + secret + `": must not start with /`},
		{[]string{"inspect", "batch", "ingest/data/../../../outside/secret.json"}, `".." path segment`},
		{[]string{"inspect", "batch", "./ingest/data/b.batch"}, `bucketq: inspect batch LOCATION: invalid object name "./ingest/data/b.batch": "." path segment (write the clean name "ingest/data/b.batch")`},
		{[]string{"inspect", "batch", "ingest//data/b.batch"}, `empty path segment`},
		{[]string{"dead-letters", "show", "../outside/secret.json"}, `bucketq: dead-letters show NAME: invalid object name "../outside/secret.json": ".." path segment`},
		{[]string{"dead-letters", "show", "../../outside/secret.json"}, `bucketq: dead-letters show NAME: invalid object name "../../outside/secret.json"`}, // relative to the prefix
		{[]string{"dead-letters", "show", deep}, `".." path segment`},
		{[]string{"dead-letters", "show", secret}, `must not start with /`},
	} {
		code, out, errOut := run(t, nil, append(tc.args, "--bucket-dir", dir)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, errOut, tc.want)
		}
		if strings.Contains(out+errOut, "do not print") {
			t.Errorf("%q printed the file outside the bucket: %q", tc.args, out)
		}
	}
}
