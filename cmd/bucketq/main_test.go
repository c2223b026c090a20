package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
)

func run(t *testing.T, getenv config.Env, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var o, e bytes.Buffer
	code = runMain(context.Background(), args, &o, &e, getenv)
	return code, o.String(), e.String()
}

func TestHelpMentionsEveryFlag(t *testing.T) {
	code, out, _ := run(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, o := range config.Options {
		want := "key " + o.Key
		if o.Flag != "" {
			want = "--" + o.Flag
		}
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
	for _, s := range []string{"--config", "--json", "--records", "BUCKETQ_SINK_TOKEN", "Precedence", "object_store:"} {
		if !strings.Contains(out, s) {
			t.Errorf("--help does not mention %s", s)
		}
	}
	for _, c := range commands {
		if !strings.Contains(out, c.usage) || !strings.Contains(out, c.examples[0]) {
			t.Errorf("--help lacks usage or example of %s", c.name)
		}
	}
	// Each command's own help lists exactly its flags.
	for _, tc := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"produce", "--help"}, []string{"--flush-interval", "--token", "--otlp-grpc", "bucketq produce --config"}, []string{"--sink URL"}},
		{[]string{"consume", "-h"}, []string{"--sink ", "--gc-interval", "--prefetch"}, []string{"--flush-interval DURATION"}},
		{[]string{"help", "run"}, []string{"--sink ", "--flush-interval", "bucketq run"}, nil},
		{[]string{"inspect", "--help"}, []string{"--json", "--records", "--bucket-dir", "--manifest-path"}, []string{"--sink URL"}},
	} {
		code, out, _ := run(t, nil, tc.args...)
		if code != 0 {
			t.Errorf("%q: exit %d", tc.args, code)
		}
		for _, s := range tc.want {
			if !strings.Contains(out, s) {
				t.Errorf("%q: help lacks %q", tc.args, s)
			}
		}
		for _, s := range tc.not {
			if strings.Contains(out, s) {
				t.Errorf("%q: help mentions %q, which the command does not take", tc.args, s)
			}
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("flush_interval: fast\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `bucketq: unknown command "frobnicate"`},
		{[]string{"run", "--config", cfg}, `bucketq: config key "flush_interval": invalid duration "fast"`},
		{[]string{"produce", "--flush-interval", "x"}, `bucketq: flag --flush-interval: invalid duration "x"`},
		{[]string{"consume", "--bogus"}, `bucketq: consume: flag provided but not defined: -bogus`},
		{[]string{"run", "extra"}, `bucketq: run: unexpected argument "extra"`},
		{[]string{"inspect"}, `bucketq: inspect: want "manifest", "batch LOCATION" or "journal [SEGMENT]"`},
		{[]string{"inspect", "batch"}, `bucketq: inspect batch: want exactly one LOCATION`},
		{[]string{"inspect", "queue"}, `bucketq: inspect: unknown object "queue"`},
		{[]string{"help", "nope"}, `bucketq: unknown command "nope"`},
	} {
		code, _, errOut := run(t, nil, tc.args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2", tc.args, code)
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: stderr %q lacks %q", tc.args, errOut, tc.want)
		}
		if tc.args != nil && strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%q: error is not one line: %q", tc.args, errOut)
		}
	}
}

// TestConfigErrorsExit2 runs the commands with config and flag errors
// that used to exit 1 at bind time, print several lines, or pass: each
// must exit 2 before any I/O with one line naming the key.
func TestConfigErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badCEL := file("cel.yaml", "conversion:\n  logs:\n    type: 'foo +'\n")
	twoCEL := file("cel2.yaml", "conversion:\n  metrics:\n    subject: 'a + b'\n")
	badYAML := file("typo.yaml", "conversion:\n  logs:\n    typ: '\"x\"'\n    sourc: '\"y\"'\n")
	alias := file("alias.yaml", "data_prefix: a/data\ndata_path_prefix: b/data\n")
	small := file("small.yaml", "max_buffered_bytes: 4MiB\n")
	unsetTok := file("unset.yaml", "tokens: [\"${INGEST_TOKEN}\"]\n")
	// Each command gets its own bucket directory and no listener beyond
	// the one under test, so a missing check cannot touch shared state.
	withDefaults := func(args []string) []string {
		out := append([]string{}, args...)
		out = append(out, "--bucket-dir", filepath.Join(dir, "bucket"))
		flags := []string{"--listen"}
		if args[0] != "consume" {
			flags = append(flags, "--otlp-grpc", "--otlp-http")
		}
		for _, f := range flags {
			if !slices.Contains(args, f) {
				out = append(out, f, "")
			}
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		want []string // all on the one line
	}{
		{[]string{"produce", "--listen", "127.0.0.1:99999"}, []string{`bucketq: flag --listen: invalid address "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`}},
		{[]string{"run", "--listen", "127.0.0.1:abc"}, []string{`bucketq: flag --listen: invalid address "127.0.0.1:abc": port "abc"`}},
		{[]string{"produce", "--otlp-grpc", "127.0.0.1:70000"}, []string{`flag --otlp-grpc: invalid address "127.0.0.1:70000"`}},
		{[]string{"produce", "--otlp-http", "localhost:x"}, []string{`flag --otlp-http: invalid address "localhost:x"`}},
		{[]string{"consume", "--config", badCEL}, []string{`bucketq: config key "conversion": otlpconv: logs.type: expression ` + "`foo +`", `<input>:1:6: Syntax error`}},
		{[]string{"run", "--config", twoCEL}, []string{`config key "conversion"`, `undeclared reference to 'a'`, `undeclared reference to 'b'`}},
		{[]string{"consume", "--config", badYAML}, []string{`config key "conversion"`, `line 3: field typ not found`, `line 4: field sourc not found`}},
		{[]string{"run", "--config", alias}, []string{`bucketq: config key "data_path_prefix" (line 2): alias of "data_prefix", which is also set, to a different value ("a/data", line 1)`}},
		{[]string{"produce", "--max-buffered-bytes", "2048"}, []string{`bucketq: config keys "max_buffered_bytes" and "max_body_bytes": max_buffered_bytes (2048) must be at least twice max_body_bytes (8388608)`}},
		{[]string{"run", "--config", small}, []string{`config keys "max_buffered_bytes" and "max_body_bytes"`}},
		{[]string{"produce", "--max-buffered-bytes", "512MiB"}, []string{`bucketq: config keys "memory_limit" and "max_buffered_bytes": memory_limit (268435456) must be at least max_buffered_bytes (536870912)`}},
		// An empty token used to start with authentication off, silently.
		{[]string{"produce", "--token", ""}, []string{`bucketq: flag --token: token 1 of 1: empty token`}},
		{[]string{"run", "--otlp-grpc", "127.0.0.1:0", "--token", " "}, []string{`bucketq: flag --token: token 1 of 1: empty token`}},
		{[]string{"produce", "--config", unsetTok}, []string{`bucketq: config key "tokens" ([0], line 1): ${INGEST_TOKEN}: environment variable INGEST_TOKEN is not set or empty`}},
		{[]string{"consume", "--sink", "http://127.0.0.1:1/api/v1/events", "--sink-token", ""}, []string{`bucketq: flag --sink-token: empty token (omit sink_token to send no token)`}},
		// Dots hid an overlap with the data prefix, where GC deletes.
		{[]string{"consume", "--data-prefix", "ingest/data/.."}, []string{`bucketq: flag --data-prefix: invalid object name "ingest/data/..": ".." path segment (write the clean name "ingest")`}},
		{[]string{"run", "--data-prefix", "./ingest"}, []string{`bucketq: flag --data-prefix: invalid object name "./ingest"`}},
	} {
		args := withDefaults(tc.args)
		// Without the checks some of these would serve until cancelled; with
		// them they return at once, so the deadline only bounds a failure.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var o, e bytes.Buffer
		code := runMain(ctx, args, &o, &e, func(string) string { return "" })
		cancel()
		errOut := e.String()
		if code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", tc.args, code, errOut)
		}
		if strings.Count(strings.TrimRight(errOut, "\n"), "\n") != 0 {
			t.Errorf("%q: error is not one line: %q", tc.args, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%q: stderr %q lacks %q", tc.args, errOut, w)
			}
		}
	}
	// The alias alone is data_prefix (inspect reads the file's
	// manifest_path; there is no manifest there).
	ok := file("ok.yaml", "data_path_prefix: q/data\nmanifest_path: q/manifest\n")
	if code, out, errOut := run(t, nil, "inspect", "manifest", "--json", "--config", ok, "--bucket-dir", dir); code != 1 || !strings.Contains(errOut, "bucketq: manifest q/manifest: no such object in the bucket") {
		t.Errorf("alias config: exit %d, %q %q", code, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "bucketq ") || !strings.Contains(out, "\ngo 1.") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

// TestInspectThroughTheCommand writes a manifest and batches into a
// directory bucket with the format and manifest packages, and checks what
// `bucketq inspect` prints for them.
func TestInspectThroughTheCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &manifest.Manifest{Epoch: 4, NextSequence: 9, Entries: []manifest.Entry{{Sequence: 8, Location: "ingest/data/b1.batch",
		Metadata: []manifest.Metadata{{StartIndex: 0, IngestionTimeMs: 1735732800250, Payload: format.EventsHeader.Bytes()}}}}}
	write("ingest/manifest", m.Encode())
	batch, _ := format.EncodeBatch(format.CompressionZstd, [][]byte{[]byte(`{"id":"1"}`), []byte(`{"id":"2"}`)})
	write("ingest/data/b1.batch", batch)
	write("ingest/data/bad.batch", []byte("not a batch at all"))
	write("other/manifest", []byte{1, 2, 3})

	for _, tc := range []struct {
		args []string
		code int
		want string // stdout for 0, stderr substring otherwise
	}{
		{[]string{"inspect", "manifest", "--json", "--bucket-dir", dir}, 0,
			`{"version":2,"epoch":4,"next_sequence":9,"entries":[{"sequence":8,"location":"ingest/data/b1.batch","metadata":[{"start_index":0,"ingestion_time_ms":1735732800250,"payload":"01040200","signal":"events","encoding":"cloudevents-json"}]}]}` + "\n"},
		{[]string{"inspect", "batch", "ingest/data/b1.batch", "--bucket-dir", dir, "--json"}, 0,
			`{"compression":"zstd","record_count":2,"version":2}` + "\n"},
		{[]string{"inspect", "batch", "--records", "--json", "ingest/data/b1.batch", "--bucket-dir", dir}, 0,
			`{"compression":"zstd","record_count":2,"version":2,"records":["eyJpZCI6IjEifQ==","eyJpZCI6IjIifQ=="]}` + "\n"},
		// A missing manifest is a mistake (a typo in --manifest-path), not
		// an empty queue: a consumer writes it when it starts.
		{[]string{"inspect", "manifest", "--json", "--bucket-dir", dir, "--manifest-path", "missing/manifest"}, 1,
			"bucketq: manifest missing/manifest: no such object in the bucket (check manifest_path / --manifest-path and the bucket)\n"},
		{[]string{"inspect", "manifest", "--bucket-dir", dir, "--manifest-path", "ingest/nope"}, 1,
			"bucketq: manifest ingest/nope: no such object in the bucket"},
		{[]string{"inspect", "manifest", "--bucket-dir", dir, "--manifest-path", "other/manifest"}, 1,
			"bucketq: manifest other/manifest: manifest: unsupported manifest version: the last two bytes read as version 770"},
		{[]string{"inspect", "batch", "ingest/data/bad.batch", "--bucket-dir", dir}, 1,
			"bucketq: batch ingest/data/bad.batch (18 bytes): batch:"},
		{[]string{"inspect", "batch", "ingest/data/none.batch", "--bucket-dir", dir}, 1,
			"bucketq: batch ingest/data/none.batch: no such object"},
		{[]string{"inspect", "manifest", "--bucket-dir", filepath.Join(dir, "nope")}, 2,
			`bucketq: config key "bucket_dir": bucket directory "` + filepath.Join(dir, "nope") + `" does not exist`},
	} {
		code, out, errOut := run(t, nil, tc.args...)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", tc.args, code, tc.code, errOut)
			continue
		}
		if tc.code == 0 && out != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.args, out, tc.want)
		}
		if tc.code != 0 && !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: stderr %q lacks %q", tc.args, errOut, tc.want)
		}
	}
	code, out, _ := run(t, nil, "inspect", "batch", "ingest/data/b1.batch", "--records", "--bucket-dir", dir)
	if code != 0 || !strings.Contains(out, "compression zstd, 2 records") || !strings.Contains(out, "1\t{\"id\":\"2\"}") {
		t.Errorf("batch table: exit %d\n%s", code, out)
	}
}

// TestVersionInfo: the git revision comes from the build's VCS stamp, or
// from -ldflags when the build had no .git (the Dockerfile).
func TestVersionInfo(t *testing.T) {
	stamped := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}}
	dirty := &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}
	bare := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
	for _, tc := range []struct {
		name             string
		bi               *debug.BuildInfo
		linkVer, linkRev string
		version, rev     string
	}{
		{"vcs stamp", stamped, "", "", "(devel)", "abc123"},
		{"vcs stamp wins over ldflags revision", stamped, "v9", "fff", "v9", "abc123"},
		{"dirty tree", dirty, "", "", "v1.2.0", "abc123+dirty"},
		{"module version wins over ldflags", dirty, "v9", "", "v1.2.0", "abc123+dirty"},
		{"ldflags only (docker build)", bare, "v0.1.0", "def456", "v0.1.0", "def456"},
		{"nothing", nil, "", "", "(unknown)", ""},
	} {
		v, r := versionInfo(tc.bi, tc.linkVer, tc.linkRev)
		if v != tc.version || r != tc.rev {
			t.Errorf("%s: got %q %q, want %q %q", tc.name, v, r, tc.version, tc.rev)
		}
	}
}
