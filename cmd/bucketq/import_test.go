package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImportCommand(t *testing.T) {
	dir := t.TempDir()
	src, q := filepath.Join(dir, "src"), filepath.Join(dir, "q")
	os.MkdirAll(filepath.Join(src, "usage"), 0o755)
	os.MkdirAll(q, 0o755)
	os.WriteFile(filepath.Join(src, "usage", "a.csv"), []byte("customer,tokens\nc-1,12\nc-2,x\nc-3,7\n"), 0o644)
	cfg := filepath.Join(dir, "bucketq.yaml")
	write := func(mapping string) {
		os.WriteFile(cfg, []byte("bucket_dir: "+q+"\nimport:\n  mapping:\n    type: '\"tokens\"'\n    subject: "+mapping+"\n    data: {tokens: int(row.tokens)}\n"), 0o644)
	}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := runMain(context.Background(), append([]string{"import", "--config", cfg, "--source-dir", src}, args...), &out, &errb, func(string) string { return "" })
		return code, out.String(), errb.String()
	}

	write("row.customer +")
	if code, _, stderr := run(); code != exitUsage || !strings.Contains(stderr, "import.mapping.subject: expression `row.customer +`") {
		t.Fatalf("bad expression: exit %d, %q", code, stderr)
	}
	write("row.customer")
	for _, args := range [][]string{{"--parallel", "0"}, {"--job", "a/b"}, {"--job", ".."}, {"--job", ""}, {"--prefix", "../"}, {"--prefix", "usage/../../x"}, {"--format", "xml"}, {"--match", "["}, {"stray"}} {
		if code, _, stderr := run(args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want 2", args, code, stderr)
		}
	}
	code, stdout, stderr := run("--job", "j")
	if code != exitFailure || !strings.Contains(stdout, "rows 3, events 2, dead-lettered 1") || !strings.Contains(stderr, "1 rows dead-lettered") {
		t.Fatalf("first run: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	code, stdout, _ = run("--job", "j")
	if code != exitOK || !strings.Contains(stdout, "skipped as done before 1") || !strings.Contains(stdout, "events 0") {
		t.Fatalf("second run: exit %d, %s", code, stdout)
	}
	var out bytes.Buffer
	if c := runMain(context.Background(), []string{"dead-letters", "list", "--bucket-dir", q, "--reason", "import_row"}, &out, &out, func(string) string { return "" }); c != exitOK ||
		!strings.Contains(out.String(), "usage/a.csv") || !strings.Contains(out.String(), "row 2") {
		t.Fatalf("dead-letters list: exit %d\n%s", c, out.String())
	}
	out.Reset()
	if c := runMain(context.Background(), []string{"help", "import"}, &out, &out, func(string) string { return "" }); c != exitOK || !strings.Contains(out.String(), "int(row.x)") {
		t.Fatalf("help import: exit %d", c)
	}
}
