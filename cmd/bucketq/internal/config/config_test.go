package config

import (
	"bytes"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/format"
)

func env(m map[string]string) Env { return func(k string) string { return m[k] } }

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bucketq.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t *testing.T, roles Role, args []string, e map[string]string) (*Config, []string, error) {
	t.Helper()
	f := NewFlags("test", roles)
	pos, err := f.Parse(args)
	if err != nil {
		return nil, nil, err
	}
	c, err := f.Load(env(e))
	return c, pos, err
}

func TestMemoryLimitZeroDisables(t *testing.T) {
	c, _, err := load(t, RolesProduce, []string{"--memory-limit", "0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.MemoryLimit != 0 {
		t.Fatalf("memory limit %d, want 0 (disabled)", c.MemoryLimit)
	}
	c, _, err = load(t, RolesProduce, []string{"--memory-limit", "300MiB"}, nil)
	if err != nil || c.MemoryLimit != 300<<20 {
		t.Fatalf("memory limit %d, %v; want 300 MiB", c.MemoryLimit, err)
	}
}

// TestMaxConsecutivePoison: 0 disables the breaker, which consumer.Config
// spells as a negative value (its 0 takes the default).
func TestMaxConsecutivePoison(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		want, consumer int
	}{
		{nil, 100, 100},
		{[]string{"--max-consecutive-poison", "0"}, 0, -1},
		{[]string{"--max-consecutive-poison", "1"}, 1, 1},
		{[]string{"--max-consecutive-poison=5000"}, 5000, 5000},
	} {
		c, _, err := load(t, RolesConsume, tc.args, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if c.MaxConsecutivePoison != tc.want || c.ConsumerMaxConsecutivePoison() != tc.consumer {
			t.Errorf("%q: max_consecutive_poison %d (consumer %d), want %d (consumer %d)",
				tc.args, c.MaxConsecutivePoison, c.ConsumerMaxConsecutivePoison(), tc.want, tc.consumer)
		}
	}
	if _, _, err := load(t, RolesProduce, []string{"--max-consecutive-poison", "3"}, nil); err == nil {
		t.Errorf("produce accepted --max-consecutive-poison")
	}
}

// TestSinkConcurrency: adaptive (or 0) is the default and the consumer's
// 0; a number fixes it.
func TestSinkConcurrency(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 0},
		{[]string{"--sink-concurrency", "adaptive"}, 0},
		{[]string{"--sink-concurrency", "0"}, 0},
		{[]string{"--sink-concurrency", "1"}, 1},
		{[]string{"--sink-concurrency=64"}, 64},
	} {
		c, _, err := load(t, RolesConsume, tc.args, nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if c.SinkConcurrency != tc.want {
			t.Errorf("%q: sink_concurrency %d, want %d", tc.args, c.SinkConcurrency, tc.want)
		}
	}
	if _, _, err := load(t, RolesProduce, []string{"--sink-concurrency", "3"}, nil); err == nil {
		t.Errorf("produce accepted --sink-concurrency")
	}
}

func TestDefaults(t *testing.T) {
	c, _, err := load(t, RolesRun, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		BucketDir: "./data", ManifestPath: "ingest/manifest", DataPrefix: "ingest/data", DeadLetterPrefix: "ingest/dead-letter",
		Listen: "127.0.0.1:8888", OTLPGRPC: "127.0.0.1:4317", OTLPHTTP: "127.0.0.1:4318", MaxBodyBytes: 8 << 20,
		BodyReadTimeout: 10 * time.Second, BodyMinRate: 16 << 10,
		FlushInterval: 250 * time.Millisecond, FlushSizeBytes: 4 << 20, Compression: format.CompressionZstd, FormatVersion: 2, MaxBufferedBytes: 128 << 20, MemoryLimit: 256 << 20,
		Sink: "stdout", SinkBatchSize: 500, Prefetch: 4, PollInterval: time.Second, DequeueInterval: time.Second, GCInterval: 5 * time.Minute, GCGracePeriod: 10 * time.Minute,
		MaxConsecutivePoison: 100, ShutdownTimeout: 30 * time.Second, LogLevel: slog.LevelInfo, LogFormat: "text",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults\n got %+v\nwant %+v", c, want)
	}
}

// fullConfig sets every key to a non-default value.
const fullConfig = `
bucket_dir: /ignored-because-object-store-wins-only-without-it
manifest_path: q/manifest
data_prefix: q/data
dead_letter_prefix: q/dead
listen: 0.0.0.0:9000
otlp_grpc: ""
otlp_http: 127.0.0.1:14318
tokens: [a, "${TOKEN_B}"]
max_body_bytes: 1KiB
body_read_timeout: 3s
body_min_rate: 1KiB
flush_interval: 100ms
flush_size_bytes: 1024
compression: none
format_version: 1
max_buffered_bytes: 2048
memory_limit: 512MiB
sink: https://openmeter.example/api/v1/events
sink_token: ${SINK_TOKEN}
sink_batch_size: 50
sink_concurrency: 12
prefetch: 2
poll_interval: 2s
dequeue_interval: 3s
max_consecutive_poison: 7
gc_interval: 1m
gc_grace_period: 20m
conversion:
  logs:
    type: '"request"'
shutdown_timeout: 5s
log_level: debug
log_format: json
`

func TestEveryKey(t *testing.T) {
	p := writeConfig(t, fullConfig)
	c, _, err := load(t, RolesRun, []string{"--config", p}, map[string]string{"TOKEN_B": "bee", "SINK_TOKEN": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		BucketDir: "/ignored-because-object-store-wins-only-without-it", ManifestPath: "q/manifest", DataPrefix: "q/data", DeadLetterPrefix: "q/dead",
		Listen: "0.0.0.0:9000", OTLPGRPC: "", OTLPHTTP: "127.0.0.1:14318", Tokens: []string{"a", "bee"}, MaxBodyBytes: 1 << 10,
		BodyReadTimeout: 3 * time.Second, BodyMinRate: 1 << 10,
		FlushInterval: 100 * time.Millisecond, FlushSizeBytes: 1024, Compression: format.CompressionNone, FormatVersion: 1, MaxBufferedBytes: 2048, MemoryLimit: 512 << 20,
		Sink: "https://openmeter.example/api/v1/events", SinkToken: "s3cret", SinkBatchSize: 50, SinkConcurrency: 12, Prefetch: 2, PollInterval: 2 * time.Second, DequeueInterval: 3 * time.Second,
		GCInterval: time.Minute, GCGracePeriod: 20 * time.Minute, MaxConsecutivePoison: 7, ShutdownTimeout: 5 * time.Second, LogLevel: slog.LevelDebug, LogFormat: "json",
	}
	conv := c.Conversion
	c.Conversion = nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("every key\n got %+v\nwant %+v", c, want)
	}
	var m map[string]map[string]string
	if err := yaml.Unmarshal(conv, &m); err != nil || m["logs"]["type"] != `"request"` {
		t.Fatalf("conversion subtree = %q (%v)", conv, err)
	}
	// Every key of Options appears in the full config, so the test covers all.
	var keys map[string]any
	yaml.Unmarshal([]byte(fullConfig), &keys)
	for _, k := range Keys() {
		if _, ok := keys[k]; !ok && k != "object_store" {
			t.Errorf("fullConfig does not set key %q", k)
		}
	}
}

func TestObjectStore(t *testing.T) {
	p := writeConfig(t, `
object_store:
  type: S3
  config:
    bucket: b
    endpoint: ${S3_HOST}:9000
    access_key: $$literal
`)
	c, _, err := load(t, RolesRun, []string{"--config", p}, map[string]string{"S3_HOST": "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var os struct {
		Type   string            `yaml:"type"`
		Config map[string]string `yaml:"config"`
	}
	if err := yaml.Unmarshal(c.ObjectStore, &os); err != nil {
		t.Fatal(err)
	}
	if os.Type != "S3" || os.Config["endpoint"] != "127.0.0.1:9000" || os.Config["bucket"] != "b" || os.Config["access_key"] != "$literal" {
		t.Fatalf("object_store = %+v", os)
	}
	// --bucket-dir overrides the file's object store.
	c, _, err = load(t, RolesRun, []string{"--config", p, "--bucket-dir", "/tmp/b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ObjectStore != nil || c.BucketDir != "/tmp/b" {
		t.Fatalf("flag did not override object_store: %q %q", c.ObjectStore, c.BucketDir)
	}
}

func TestEnvExpansion(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"sink_token: ${T}", "tok"},
		{"sink_token: $T", "tok"},
		{"sink_token: pre-${T}-post", "pre-tok-post"},
		{"sink_token: ${UNSET}", ""}, // unset expands to empty, like a shell
		{"sink_token: a$$b", "a$b"},  // $$ is a literal $
	} {
		p := writeConfig(t, tc.text)
		c, _, err := load(t, RolesConsume, []string{"--config", p}, map[string]string{"T": "tok"})
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		if c.SinkToken != tc.want {
			t.Errorf("%q: sink_token = %q, want %q", tc.text, c.SinkToken, tc.want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	p := writeConfig(t, "flush_interval: 1s\nsink_token: from-file\ntokens: [file]\nlisten: 127.0.0.1:1\n")
	// file < env < flag, per key.
	c, _, err := load(t, RolesRun, []string{"--config", p, "--flush-interval", "2s", "--token", "x", "--token", "y"},
		map[string]string{SinkTokenEnv: "from-env"})
	if err != nil {
		t.Fatal(err)
	}
	if c.FlushInterval != 2*time.Second || c.SinkToken != "from-env" || !reflect.DeepEqual(c.Tokens, []string{"x", "y"}) || c.Listen != "127.0.0.1:1" {
		t.Fatalf("precedence: %+v", c)
	}
	c, _, err = load(t, RolesRun, []string{"--config", p, "--sink-token", "from-flag"}, map[string]string{SinkTokenEnv: "from-env"})
	if err != nil {
		t.Fatal(err)
	}
	if c.SinkToken != "from-flag" {
		t.Fatalf("flag should beat env: %q", c.SinkToken)
	}
	// The last of a repeated scalar flag wins; flags may follow positionals.
	c, pos, err := load(t, RolesInspect, []string{"batch", "--bucket-dir", "a", "loc", "--bucket-dir=b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.BucketDir != "b" || !reflect.DeepEqual(pos, []string{"batch", "loc"}) {
		t.Fatalf("bucket_dir %q, positionals %q", c.BucketDir, pos)
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"flush_interval: fast", `config key "flush_interval": invalid duration "fast"`},
		{"flush_interval: -1s", `config key "flush_interval": invalid duration "-1s": must be positive`},
		{"poll_interval: 1", `config key "poll_interval": invalid duration "1"`},
		{"gc_interval: x", `config key "gc_interval": invalid duration`},
		{"format_version: 3", `config key "format_version": invalid format version "3" (want 2, or 1 for opendata Buffer readers)`},
		{"gc_grace_period: 0s", `config key "gc_grace_period": invalid duration "0s": must be positive`},
		{"shutdown_timeout: soon", `config key "shutdown_timeout": invalid duration`},
		{"flush_size_bytes: big", `config key "flush_size_bytes": invalid size "big"`},
		{"flush_size_bytes: 0", `config key "flush_size_bytes": invalid size "0": must be positive`},
		{"max_buffered_bytes: 3TB", `config key "max_buffered_bytes": invalid size "3TB": larger than 1TiB`},
		{"memory_limit: 2TiB", `config key "memory_limit": invalid size "2TiB": larger than 1TiB`},
		{"flush_size_bytes: 3GiB", `config key "flush_size_bytes": invalid size "3GiB": larger than 2GiB`},
		{"max_body_bytes: 2GiB", `config key "max_body_bytes": invalid size "2GiB": larger than 2GiB`},
		{"memory_limit: lots", `config key "memory_limit": invalid size`},
		{"max_body_bytes: -5", `config key "max_body_bytes": invalid size`},
		{"sink_batch_size: many", `config key "sink_batch_size": invalid number "many"`},
		{"prefetch: 0", `config key "prefetch": invalid number "0": must be positive`},
		{"max_consecutive_poison: -1", `config key "max_consecutive_poison": invalid number "-1": must be positive`},
		{"sink_concurrency: many", `config key "sink_concurrency": invalid number "many" (want adaptive or a number of requests)`},
		{"sink_concurrency: -2", `config key "sink_concurrency": invalid number "-2": must be positive`},
		{"sink_concurrency: 1000", `config key "sink_concurrency": invalid number "1000": at most 256 requests in flight`},
		{"max_consecutive_poison: lots", `config key "max_consecutive_poison": invalid number "lots"`},
		{"compression: gzip", `config key "compression": invalid compression "gzip"`},
		{"listen: localhost", `config key "listen": invalid address "localhost"`},
		{"otlp_grpc: 4317", `config key "otlp_grpc": invalid address "4317"`},
		{"otlp_http: [a]", `config key "otlp_http": want a single value`},
		{"listen: 127.0.0.1:99999", `config key "listen": invalid address "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{"listen: 127.0.0.1:abc", `config key "listen": invalid address "127.0.0.1:abc": port "abc"`},
		{"listen: ':65536'", `config key "listen": invalid address ":65536": port "65536"`},
		{"otlp_grpc: 'localhost:-1'", `config key "otlp_grpc": invalid address "localhost:-1": port "-1"`},
		{"otlp_http: 'bad host:4318'", `config key "otlp_http": invalid address "bad host:4318": host "bad host"`},
		{"otlp_http: 127.0.0.1:http", `config key "otlp_http": invalid address "127.0.0.1:http": port "http"`},
		{"max_buffered_bytes: 8MiB", `config keys "max_buffered_bytes" and "max_body_bytes": max_buffered_bytes (8388608) must be at least twice max_body_bytes (8388608)`},
		{"max_body_bytes: 100MiB", `config keys "max_buffered_bytes" and "max_body_bytes": max_buffered_bytes (134217728) must be at least twice max_body_bytes (104857600)`},
		{"max_buffered_bytes: 300MiB", `config keys "memory_limit" and "max_buffered_bytes": memory_limit (268435456) must be at least max_buffered_bytes (314572800)`},
		{"data_prefix: a/data\ndata_path_prefix: b/data", `config key "data_path_prefix" (line 2): alias of "data_prefix", which is also set, to a different value ("a/data", line 1)`},
		{"data_path_prefix: ''", `config key "data_path_prefix": invalid object name ""`},
		{"data_path_prefix: a\ndata_path_prefix: a", `config key "data_path_prefix" (line 2): given twice`},
		{"sink: kafka://x", `config key "sink": invalid sink "kafka://x"`},
		{"sink: 'file:'", `config key "sink": invalid sink "file:"`},
		{"sink_token: {a: b}", `config key "sink_token": want a single value`},
		{"tokens: abc", `config key "tokens": want a list of strings`},
		{"tokens: [[a]]", `config key "tokens": want a list of strings`},
		{"bucket_dir: ''", `config key "bucket_dir": must not be empty`},
		{"manifest_path: /abs", `config key "manifest_path": invalid object name "/abs"`},
		{"data_prefix: ''", `config key "data_prefix": invalid object name ""`},
		{"dead_letter_prefix: /", `config key "dead_letter_prefix": invalid object name "/"`},
		{"log_level: loud", `config key "log_level": invalid log level "loud"`},
		{"log_format: xml", `config key "log_format": invalid log format "xml"`},
		{"object_store: s3", `config key "object_store": want a mapping`},
		{"object_store: {config: {bucket: b}}", `config key "object_store": missing "type"`},
		{"conversion: [1]", `config key "conversion": want a mapping`},
		{"flush_intervall: 1s", `config key "flush_intervall" (line 1): unknown key`},
		{"listen: a:1\nlisten: b:2", `config key "listen" (line 2): given twice`},
		{"bucket_dir: d\nobject_store: {type: FILESYSTEM, config: {directory: d}}", `config keys "bucket_dir" and "object_store" are exclusive`},
		{"manifest_path: ingest/data/manifest", `config key "manifest_path": "ingest/data/manifest" is inside data_prefix "ingest/data"`},
		{"dead_letter_prefix: ingest/data", `config key "dead_letter_prefix": "ingest/data" overlaps data_prefix`},
		{"- a\n- b", `config file: line 1: want a mapping`},
		{"listen: [", `config file: yaml:`},
	} {
		p := writeConfig(t, tc.text)
		_, _, err := load(t, RolesRun, []string{"--config", p}, nil)
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%q: err = %v, want a config error", tc.text, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q:\n got %q\nwant prefix %q on one line", tc.text, err, tc.want)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--flush-interval", "fast"}, `flag --flush-interval: invalid duration "fast"`},
		{[]string{"--compression=lz4"}, `flag --compression: invalid compression "lz4"`},
		{[]string{"--sink", "ftp://x"}, `flag --sink: invalid sink "ftp://x"`},
		{[]string{"--listen", "nope"}, `flag --listen: invalid address "nope"`},
		{[]string{"--prefetch", "-1"}, `flag --prefetch: invalid number "-1"`},
		{[]string{"--max-consecutive-poison", "x"}, `flag --max-consecutive-poison: invalid number "x"`},
		{[]string{"--nope"}, `test: flag provided but not defined: -nope`},
		{[]string{"--sink"}, `test: flag needs an argument: -sink`},
		{[]string{"--config", "/does/not/exist.yaml"}, `config file: open /does/not/exist.yaml`},
	} {
		_, _, err := load(t, RolesRun, tc.args, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want prefix %q", tc.args, err, tc.want)
		}
	}
	// Options of other subcommands are not flags here, but are fine in the file.
	if _, _, err := load(t, RolesProduce, []string{"--sink", "stdout"}, nil); err == nil || !strings.Contains(err.Error(), "not defined: -sink") {
		t.Errorf("produce accepted --sink: %v", err)
	}
	p := writeConfig(t, "sink: stdout\nflush_interval: 1s\n")
	if _, _, err := load(t, RolesProduce, []string{"--config", p}, nil); err != nil {
		t.Errorf("shared config file rejected by produce: %v", err)
	}
	if _, _, err := load(t, RolesRun, []string{"-h"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestFlagHelpMentionsEveryFlag(t *testing.T) {
	var buf bytes.Buffer
	FlagHelp(&buf, RolesRun|RolesInspect, true)
	for _, o := range Options {
		want := "key " + o.Key
		if o.Flag != "" {
			want = "--" + o.Flag
		}
		if !strings.Contains(buf.String(), want) {
			t.Errorf("flag help lacks %q", want)
		}
		if o.Default != "" && !strings.Contains(buf.String(), "default "+o.Default) {
			t.Errorf("flag help lacks the default of %s", o.Key)
		}
	}
}

func TestAddresses(t *testing.T) {
	for _, addr := range []string{"", ":0", ":8888", "127.0.0.1:0", "0.0.0.0:65535", "localhost:4317", "my-host_1.example.com:80", "[::1]:4317", "[::]:4318", "[fe80::1%eth0]:80"} {
		for _, flag := range []string{"--listen", "--otlp-grpc", "--otlp-http"} {
			if _, _, err := load(t, RolesRun, []string{flag, addr}, nil); err != nil {
				t.Errorf("%s %q: %v", flag, addr, err)
			}
		}
	}
	for _, tc := range []struct{ flag, addr, want string }{
		{"--listen", "127.0.0.1:99999", `flag --listen: invalid address "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{"--listen", "127.0.0.1:abc", `flag --listen: invalid address "127.0.0.1:abc": port "abc"`},
		{"--otlp-grpc", "127.0.0.1:", `flag --otlp-grpc: invalid address "127.0.0.1:" (want HOST:PORT`},
		{"--otlp-http", "::1:80", `flag --otlp-http: invalid address "::1:80" (want HOST:PORT`},
		{"--otlp-http", "[::1]:99999", `flag --otlp-http: invalid address "[::1]:99999": port "99999"`},
		{"--listen", "ho$t:80", `flag --listen: invalid address "ho$t:80": host "ho$t"`},
		{"--listen", "a..b:80", `flag --listen: invalid address "a..b:80": host "a..b"`},
	} {
		_, _, err := load(t, RolesRun, []string{tc.flag, tc.addr}, nil)
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s %q: err = %v, want a config error with prefix %q", tc.flag, tc.addr, err, tc.want)
		}
	}
}

// TestSizeLimits checks the combinations of sizes that would leave a
// producer refusing valid requests, per role and with flags.
func TestSizeLimits(t *testing.T) {
	for _, tc := range []struct {
		roles Role
		args  []string
		env   map[string]string
		want  string // error prefix; "" = accepted
	}{
		{RolesProduce, []string{"--max-body-bytes", "1MiB", "--max-buffered-bytes", "2MiB"}, nil, ""},
		{RolesRun, []string{"--max-body-bytes", "1MiB", "--max-buffered-bytes", "2MiB"}, nil, ""},
		{RolesProduce, []string{"--max-body-bytes", "1MiB", "--max-buffered-bytes", "2097151"}, nil,
			`config keys "max_buffered_bytes" and "max_body_bytes": max_buffered_bytes (2097151) must be at least twice max_body_bytes (1048576)`},
		{RolesRun, []string{"--max-buffered-bytes", "2048"}, nil, `config keys "max_buffered_bytes" and "max_body_bytes"`},
		// consume does not buffer requests: the producer keys do not apply.
		{RolesConsume, nil, nil, ""},
		{RolesProduce, []string{"--max-buffered-bytes", "256MiB"}, nil, ""},
		// Memory bounds may exceed 2GiB on large machines.
		{RolesProduce, []string{"--max-buffered-bytes", "8GiB", "--memory-limit", "12GiB"}, nil, ""},
		{RolesProduce, []string{"--max-buffered-bytes", "257MiB"}, nil,
			`config keys "memory_limit" and "max_buffered_bytes": memory_limit (268435456) must be at least max_buffered_bytes (269484032)`},
		{RolesProduce, []string{"--max-buffered-bytes", "1GiB", "--memory-limit", "0"}, nil, ""},
		{RolesProduce, []string{"--max-buffered-bytes", "1GiB", "--memory-limit", "1536MiB"}, nil, ""},
		{RolesProduce, []string{"--max-buffered-bytes", "1GiB"}, map[string]string{"GOMEMLIMIT": "4GiB"}, ""},
	} {
		_, _, err := load(t, tc.roles, tc.args, tc.env)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v %q: %v", tc.roles, tc.args, err)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v %q: err = %v, want a config error with prefix %q", tc.roles, tc.args, err, tc.want)
		}
	}
	// In a file the consumer ignores the producer's sizes.
	p := writeConfig(t, "max_buffered_bytes: 1KiB\n")
	if _, _, err := load(t, RolesConsume, []string{"--config", p}, nil); err != nil {
		t.Errorf("consume rejected a producer-only size: %v", err)
	}
}

func TestDataPathPrefixAlias(t *testing.T) {
	for _, tc := range []struct {
		text string
		args []string
		want string
	}{
		{"data_path_prefix: q/batches", nil, "q/batches"},
		{"data_path_prefix: q/batches\ndata_prefix: q/batches", nil, "q/batches"},
		{"data_prefix: q/batches\ndata_path_prefix: q/batches", nil, "q/batches"},
		{"data_path_prefix: q/batches", []string{"--data-prefix", "flag/data"}, "flag/data"},
	} {
		p := writeConfig(t, tc.text)
		c, _, err := load(t, RolesRun, append([]string{"--config", p}, tc.args...), nil)
		if err != nil {
			t.Errorf("%q %q: %v", tc.text, tc.args, err)
			continue
		}
		if c.DataPrefix != tc.want {
			t.Errorf("%q %q: data_prefix %q, want %q", tc.text, tc.args, c.DataPrefix, tc.want)
		}
	}
	// The alias counts as data_prefix in the cross-key checks.
	p := writeConfig(t, "data_path_prefix: ingest")
	if _, _, err := load(t, RolesRun, []string{"--config", p}, nil); err == nil || !strings.Contains(err.Error(), `is inside data_prefix "ingest"`) {
		t.Errorf("manifest inside the aliased data prefix: %v", err)
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"otlpconv: logs.type: expression `foo +`: ERROR: <input>:1:6: Syntax error: mismatched input '<EOF>' expecting {'[', '{'}\n | foo +\n | .....^",
			"otlpconv: logs.type: expression `foo +`: ERROR: <input>:1:6: Syntax error: mismatched input '<EOF>' expecting {'[', '{'}"},
		{"expression `a + b`: ERROR: <input>:1:1: undeclared reference to 'a'\n | a + b\n | ^\nERROR: <input>:1:5: undeclared reference to 'b'\n | a + b\n | ....^",
			"expression `a + b`: ERROR: <input>:1:1: undeclared reference to 'a'; ERROR: <input>:1:5: undeclared reference to 'b'"},
		{"yaml: unmarshal errors:\n  line 2: field typ not found\n  line 3: field x not found\n",
			"yaml: unmarshal errors: line 2: field typ not found; line 3: field x not found"},
		{"a\r\nb", "a; b"},
	} {
		if got := OneLine(tc.in); got != tc.want {
			t.Errorf("OneLine(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
		if got := (&Error{Msg: tc.in}).Error(); got != tc.want {
			t.Errorf("Error{%q}.Error() = %q", tc.in, got)
		}
	}
}

// TestDeadLettersRole: dead-letters takes as flags only the options it
// reads, loads a config file written for run (every key) with the values
// it uses, and takes the sink token from the environment like consume.
func TestDeadLettersRole(t *testing.T) {
	var flags []string
	f := NewFlags("dead-letters", RolesDeadLetters)
	f.VisitAll(func(fl *flag.Flag) { flags = append(flags, fl.Name) })
	want := []string{"bucket-dir", "config", "dead-letter-prefix", "log-format", "log-level", "sink", "sink-batch-size", "sink-token"}
	if !reflect.DeepEqual(flags, want) {
		t.Errorf("dead-letters flags %q, want %q", flags, want)
	}
	for _, fl := range []string{"listen", "prefetch", "poll-interval", "dequeue-interval", "gc-interval", "gc-grace-period",
		"max-consecutive-poison", "shutdown-timeout", "memory-limit", "manifest-path", "data-prefix", "flush-interval", "token"} {
		_, _, err := load(t, RolesDeadLetters, []string{"--" + fl, "1"}, nil)
		if want := "test: flag provided but not defined: -" + fl; err == nil || err.Error() != want {
			t.Errorf("--%s: err %v, want %q", fl, err, want)
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("--%s: err %T is not a usage error (exit 2)", fl, err)
		}
	}
	p := writeConfig(t, fullConfig)
	c, _, err := load(t, RolesDeadLetters, []string{"--config", p}, map[string]string{"SINK_TOKEN": "s3cret"})
	if err != nil {
		t.Fatalf("config file shared with run rejected by dead-letters: %v", err)
	}
	if c.DeadLetterPrefix != "q/dead" || c.Sink != "https://openmeter.example/api/v1/events" || c.SinkToken != "s3cret" ||
		c.SinkBatchSize != 50 || len(c.Conversion) == 0 || c.LogLevel != slog.LevelDebug || c.LogFormat != "json" {
		t.Errorf("dead-letters config from the shared file: %+v", c)
	}
	for _, tc := range []struct {
		roles Role
		want  string
	}{{RolesDeadLetters, "envtok"}, {RolesConsume, "envtok"}, {RolesRun, "envtok"}, {RolesProduce, ""}, {RolesInspect, ""}} {
		c, _, err := load(t, tc.roles, nil, map[string]string{SinkTokenEnv: "envtok"})
		if err != nil || c.SinkToken != tc.want {
			t.Errorf("roles %b with %s set: sink token %q (%v), want %q", tc.roles, SinkTokenEnv, c.SinkToken, err, tc.want)
		}
	}
}
