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
		BucketDir: "./data", ManifestPath: "ingest/manifest", DataPrefix: "ingest/data", DeadLetterPrefix: "ingest/dead-letter", JournalPrefix: "ingest/journal", JournalRetention: 24 * time.Hour, Partitions: 1, Partition: -1, LeaseTimeout: 20 * time.Second,
		Listen: "127.0.0.1:8888", OTLPGRPC: "127.0.0.1:4317", OTLPHTTP: "127.0.0.1:4318", MaxBodyBytes: 8 << 20,
		BodyReadTimeout: 10 * time.Second, BodyMinRate: 16 << 10,
		FlushInterval: 250 * time.Millisecond, FlushSizeBytes: 4 << 20, Compression: format.CompressionZstd, FormatVersion: 2, MinSealInterval: MinSealIntervalAuto, MaxBufferedBytes: 128 << 20, MemoryLimit: 256 << 20,
		Sink: "stdout", SinkBatchSize: 500, Prefetch: 4, PollInterval: time.Second, DequeueInterval: time.Second, GCInterval: 5 * time.Minute, GCGracePeriod: 10 * time.Minute,
		MaxConsecutivePoison: 100, ShutdownTimeout: 30 * time.Second, ReadinessFailureThreshold: 30 * time.Second, LogLevel: slog.LevelInfo, LogFormat: "text",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults\n got %+v\nwant %+v", c, want)
	}
}

// fullConfig sets every key to a non-default value.
const fullConfig = `
bucket_dir: /ignored-because-object-store-wins-only-without-it
create_bucket_dir: true
manifest_path: q/manifest
data_prefix: q/data
dead_letter_prefix: q/dead
journal_prefix: q/journal
journal_retention: 72h
listen: 0.0.0.0:9000
otlp_grpc: ""
otlp_http: 127.0.0.1:14318
tokens: [a, "${TOKEN_B}"]
max_body_bytes: 1KiB
body_read_timeout: 3s
body_min_rate: 1KiB
partitions: 4
partition: 3
lease_timeout: 2s
flush_interval: 100ms
flush_size_bytes: 1024
compression: none
format_version: 1
min_seal_interval: 40ms
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
import:
  format: csv
import_source_dir: /exports
shutdown_timeout: 5s
readiness_failure_threshold: 45s
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
		BucketDir: "/ignored-because-object-store-wins-only-without-it", CreateBucketDir: true, ManifestPath: "q/manifest", DataPrefix: "q/data", DeadLetterPrefix: "q/dead", JournalPrefix: "q/journal", JournalRetention: 72 * time.Hour, Partitions: 4, Partition: 3, LeaseTimeout: 2 * time.Second,
		Listen: "0.0.0.0:9000", OTLPGRPC: "", OTLPHTTP: "127.0.0.1:14318", Tokens: []string{"a", "bee"}, MaxBodyBytes: 1 << 10,
		BodyReadTimeout: 3 * time.Second, BodyMinRate: 1 << 10,
		FlushInterval: 100 * time.Millisecond, FlushSizeBytes: 1024, Compression: format.CompressionNone, FormatVersion: 1, MinSealInterval: 40 * time.Millisecond, MaxBufferedBytes: 2048, MemoryLimit: 512 << 20,
		Sink: "https://openmeter.example/api/v1/events", SinkToken: "s3cret", SinkBatchSize: 50, SinkConcurrency: 12, Prefetch: 2, PollInterval: 2 * time.Second, DequeueInterval: 3 * time.Second,
		GCInterval: time.Minute, GCGracePeriod: 20 * time.Minute, MaxConsecutivePoison: 7, ShutdownTimeout: 5 * time.Second, ReadinessFailureThreshold: 45 * time.Second, LogLevel: slog.LevelDebug, LogFormat: "json",
		ImportSourceDir: "/exports",
	}
	conv, imp := c.Conversion, c.Import
	c.Conversion, c.Import = nil, nil
	var im map[string]string
	if err := yaml.Unmarshal(imp, &im); err != nil || im["format"] != "csv" {
		t.Fatalf("import subtree = %q (%v)", imp, err)
	}
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
	c, _, err = load(t, RolesRun, []string{"--config", p, "--bucket-dir", "/tmp/b"}, map[string]string{"S3_HOST": "127.0.0.1"})
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
		{"sink_token: a$$b", "a$b"}, // $$ is a literal $
		{"sink_token: ${UNSET:-dflt}", "dflt"},
		{"sink_token: ${T:-dflt}", "tok"},
		{"sink_token: a$-b$1$", "a$-b$1$"}, // a $ before no name is itself
		{"sink_token: x # ${UNSET} in a comment is not expanded", "x"},
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
		{"min_seal_interval: -1s", `config key "min_seal_interval": invalid duration "-1s" (want auto, 0 or a duration such as 250ms)`},
		{"format_version: 3", `config key "format_version": invalid format version "3" (want 2, or 1 for opendata Buffer readers)`},
		{"gc_grace_period: 0s", `config key "gc_grace_period": invalid duration "0s": must be positive`},
		{"lease_timeout: 100ms", `config key "lease_timeout": 100ms is below the 400ms minimum`},
		{"lease_timeout: 0s", `config key "lease_timeout": invalid duration "0s": must be positive`},
		{"partitions: 0", `config key "partitions": invalid number "0": must be positive`},
		{"partitions: -3", `config key "partitions": invalid number "-3": must be positive`},
		{"partitions: 10001", `config key "partitions": 10001 is above the 10000 allowed`},
		{"partitions: 99999999999999999999", `config key "partitions": invalid number "99999999999999999999"`},
		{"partitions: four", `config key "partitions": invalid number "four"`},
		{"partitions: 4\npartition: 4", `config key "partition": 4 is not below partitions 4`},
		{"partition: 1", `config key "partition": 1 is not below partitions 1`},
		{"partitions: 4\npartition: -1", `config key "partition": want auto or a partition number, got "-1"`},
		{"partitions: 4\npartition: first", `config key "partition": want auto or a partition number, got "first"`},
		{"partitions: 4\npartition: ''", `config key "partition": want auto or a partition number, got ""`},
		{"partitions: 4\ndata_prefix: ingest/manifest-0002", `config key "partitions": partition`},
		{"shutdown_timeout: soon", `config key "shutdown_timeout": invalid duration`},
		{"readiness_failure_threshold: 0s", `config key "readiness_failure_threshold": invalid duration "0s": must be positive`},
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
	FlagHelp(&buf, RolesRun|RolesInspect|RolesDeadLetters|RolesImport, true)
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
	want := []string{"bucket-dir", "config", "dead-letter-prefix", "log-format", "log-level", "partitions", "sink", "sink-batch-size", "sink-concurrency", "sink-token"}
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

// TestObjectNamesMustBeClean: manifest_path, data_prefix and
// dead_letter_prefix are accepted only in clean form (a prefix may end in
// one "/"), so ".", ".." and "//" cannot hide an overlap from the check
// that keeps garbage collection out of the manifest and the dead letters.
// Each is tried as a config key and as a flag; the error names both the
// key (or flag) and the value.
func TestObjectNamesMustBeClean(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		want       string // "" = accepted
	}{
		{"data_prefix", "./ingest", `"." path segment`},
		{"data_prefix", "ingest/./", `"." path segment`},
		{"data_prefix", "ingest/data/..", `".." path segment`},
		{"data_prefix", "ingest//data", `empty path segment`},
		{"data_prefix", "ingest/data//", `empty path segment`},
		{"data_prefix", "../ingest/data", `".." path segment`},
		{"data_prefix", "/ingest/data", `must not start with /`},
		{"dead_letter_prefix", "ingest/data/../dead", `".." path segment`},
		{"dead_letter_prefix", "./ingest/data/dl", `"." path segment`},
		{"manifest_path", "ingest/data/../manifest", `".." path segment`},
		{"manifest_path", "./ingest/manifest", `"." path segment`},
		{"manifest_path", "ingest/manifest/", `empty path segment`},
		{"manifest_path", "ingest//manifest", `empty path segment`},
		// Clean names that used to pass still do.
		{"data_prefix", "ingest/data/", ""},
		{"data_prefix", "other/data", ""},
		{"dead_letter_prefix", "ingest/dead-letter/", ""},
		{"manifest_path", "queue/manifest", ""},
	} {
		flagName := strings.ReplaceAll(tc.key, "_", "-")
		p := writeConfig(t, tc.key+": '"+tc.value+"'\n")
		for _, args := range [][]string{{"--config", p}, {"--" + flagName, tc.value}} {
			c, _, err := load(t, RolesRun, args, nil)
			if tc.want == "" {
				if err != nil {
					t.Errorf("%s %q: %v", args[0], tc.value, err)
				} else if got := map[string]string{"data_prefix": c.DataPrefix, "dead_letter_prefix": c.DeadLetterPrefix, "manifest_path": c.ManifestPath}[tc.key]; got != strings.TrimSuffix(tc.value, "/") {
					t.Errorf("%s %q: stored as %q", args[0], tc.value, got)
				}
				continue
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("%s %q (%s): err = %v, want a config error", args[0], tc.value, tc.key, err)
				continue
			}
			name := `config key "` + tc.key + `"`
			if args[0] != "--config" {
				name = "flag --" + flagName
			}
			for _, s := range []string{name, `"` + tc.value + `"`, tc.want} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s %q: error %q lacks %q", args[0], tc.value, err, s)
				}
			}
		}
	}
}

// TestOverlapIsCheckedOnCleanNames: the layouts of the issue, written with
// ".", ".." or "//", used to pass the overlap check (the strings differ)
// while naming overlapping objects. Now they are refused (not clean), and
// their clean spelling is refused as overlapping.
func TestOverlapIsCheckedOnCleanNames(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-prefix", "./ingest"}, `flag --data-prefix: invalid object name "./ingest"`},
		{[]string{"--data-prefix", "ingest"}, `config key "manifest_path": "ingest/manifest" is inside data_prefix "ingest"`},
		{[]string{"--data-prefix", "ingest/./"}, `flag --data-prefix: invalid object name "ingest/./"`},
		{[]string{"--data-prefix", "ingest/"}, `config key "manifest_path": "ingest/manifest" is inside data_prefix "ingest"`},
		{[]string{"--data-prefix", "ingest/data/.."}, `flag --data-prefix: invalid object name "ingest/data/.."`},
		{[]string{"--dead-letter-prefix", "ingest/data/x/.."}, `flag --dead-letter-prefix: invalid object name "ingest/data/x/.."`},
		{[]string{"--dead-letter-prefix", "ingest/data/"}, `config key "dead_letter_prefix": "ingest/data" overlaps data_prefix "ingest/data"`},
		{[]string{"--dead-letter-prefix", "ingest"}, `config key "dead_letter_prefix": "ingest" overlaps data_prefix "ingest/data"`},
		{[]string{"--manifest-path", "ingest//data/m"}, `flag --manifest-path: invalid object name "ingest//data/m"`},
		{[]string{"--manifest-path", "ingest/data/m"}, `config key "manifest_path": "ingest/data/m" is inside data_prefix "ingest/data"`},
	} {
		_, _, err := load(t, RolesRun, tc.args, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want prefix %q", tc.args, err, tc.want)
		}
	}
}

// TestEnvExpansionCannotChangeStructure: variables are expanded inside
// scalar values after parsing, so a value holding YAML syntax stays that
// value (the file used to be expanded as text: "abc #def" lost "#def", a
// newline injected keys, ": " and a leading "*" gave YAML errors naming no
// variable).
func TestEnvExpansionCannotChangeStructure(t *testing.T) {
	for _, tc := range []struct {
		name, text, val string
		want            func(c *Config) string // the value as stored
	}{
		{"comment", "sink_token: ${V}", "abc #def", func(c *Config) string { return c.SinkToken }},
		{"comment quoted", `sink_token: "${V}"`, "abc #def", func(c *Config) string { return c.SinkToken }},
		{"comment in list", `tokens: ["${V}"]`, "abc #def", func(c *Config) string { return strings.Join(c.Tokens, "|") }},
		{"colon", "sink_token: ${V}", "a: b", func(c *Config) string { return c.SinkToken }},
		{"alias", "sink_token: ${V}", "*abc", func(c *Config) string { return c.SinkToken }},
		{"anchor", "sink_token: ${V}", "&abc", func(c *Config) string { return c.SinkToken }},
		{"flow", "sink_token: ${V}", "[a, b]", func(c *Config) string { return c.SinkToken }},
		{"quote", `sink_token: '${V}'`, `it's "x"`, func(c *Config) string { return c.SinkToken }},
		{"newline in a subtree", "object_store:\n  type: FILESYSTEM\n  config:\n    directory: ${V}\n", "d\nprefix: evil",
			func(c *Config) string {
				var os struct {
					Config struct{ Directory string }
					Prefix string
				}
				if err := yaml.Unmarshal(c.ObjectStore, &os); err != nil {
					return err.Error()
				}
				return os.Config.Directory + os.Prefix
			}},
		{"comment in a subtree", "object_store:\n  type: FILESYSTEM\n  config:\n    directory: ${V}\n", "d #x",
			func(c *Config) string {
				var os struct{ Config struct{ Directory string } }
				yaml.Unmarshal(c.ObjectStore, &os)
				return os.Config.Directory
			}},
	} {
		p := writeConfig(t, tc.text+"\n")
		c, _, err := load(t, RolesRun, []string{"--config", p}, map[string]string{"V": tc.val})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := tc.want(c); got != tc.val {
			t.Errorf("%s: stored %q, want %q", tc.name, got, tc.val)
		}
		if c.Listen != "127.0.0.1:8888" {
			t.Errorf("%s: listen changed to %q", tc.name, c.Listen)
		}
	}
	// A newline cannot add a key either: the whole value is the token
	// (which is then refused as a token, naming the key).
	p := writeConfig(t, "sink_token: ${V}\n")
	_, _, err := load(t, RolesConsume, []string{"--config", p}, map[string]string{"V": "abc\nlisten: 0.0.0.0:9"})
	if err == nil || !strings.HasPrefix(err.Error(), `config key "sink_token": token contains a control character`) {
		t.Errorf("newline in sink_token: %v", err)
	}
	var c *Config
	// A plain scalar is typed from its expanded text, as when the file was
	// expanded as text (insecure: ${INSECURE} is still a bool); a quoted one
	// stays a string.
	p = writeConfig(t, "object_store:\n  type: S3\n  config:\n    insecure: ${B}\n    port: ${N}\n    name: '${N}'\n")
	c, _, err = load(t, RolesRun, []string{"--config", p}, map[string]string{"B": "true", "N": "9000"})
	if err != nil {
		t.Fatal(err)
	}
	var typed struct {
		Config struct {
			Insecure bool   `yaml:"insecure"`
			Port     int    `yaml:"port"`
			Name     string `yaml:"name"`
		}
	}
	if err := yaml.Unmarshal(c.ObjectStore, &typed); err != nil || !typed.Config.Insecure || typed.Config.Port != 9000 || typed.Config.Name != "9000" {
		t.Errorf("typed values: %+v, %v (yaml %s)", typed, err, c.ObjectStore)
	}
}

// TestEnvExpansionErrors: an unset (or empty) variable is an error naming
// the variable, the key and the line (it used to expand to "" silently:
// tokens: ["${UNSET}"] turned authentication off), and so is a malformed
// reference.
func TestEnvExpansionErrors(t *testing.T) {
	for _, tc := range []struct {
		roles Role
		text  string
		want  []string
	}{
		{RolesRun, "listen: ''\ntokens: [\"${UNSET}\"]", []string{`config key "tokens" ([0], line 2)`, "${UNSET}", "environment variable UNSET is not set or empty"}},
		{RolesRun, "sink_token: $EMPTY", []string{`config key "sink_token" (line 1)`, "$EMPTY", "environment variable EMPTY is not set or empty"}},
		{RolesRun, "object_store:\n  type: S3\n  config:\n    secret_key: ${AWS_SECRET}\n", []string{`config key "object_store" (config.secret_key, line 4)`, "environment variable AWS_SECRET"}},
		{RolesRun, "conversion:\n  logs:\n    type: '\"${KIND}\"'\n", []string{`config key "conversion" (logs.type, line 3)`, "environment variable KIND"}},
		{RolesRun, "sink_token: ${T", []string{`config key "sink_token" (line 1)`, "unterminated ${"}},
		{RolesRun, "sink_token: ${1X}", []string{`config key "sink_token" (line 1)`, `"${1X}": not a variable reference`}},
		{RolesRun, "sink_token: ${}", []string{`"${}": not a variable reference`}},
		{RolesRun, "tokens: [${T}]", []string{"config file: yaml:", `must be quoted: ["${VAR}"]`}},
		// A key of another command is still checked when its variables are set ...
		{RolesConsume, "flush_interval: ${SET}", []string{`config key "flush_interval": invalid duration "x"`}},
	} {
		p := writeConfig(t, tc.text+"\n")
		_, _, err := load(t, tc.roles, []string{"--config", p}, map[string]string{"EMPTY": "", "SET": "x"})
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%q: err = %v, want a config error", tc.text, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q lacks %q", tc.text, err, w)
			}
		}
	}
	// ... but one the command ignores may name a variable only set where
	// it is used: the consumer host need not have the ingest token.
	p := writeConfig(t, "tokens: [\"${INGEST_TOKEN}\"]\nsink_token: ${SINK}\n")
	c, _, err := load(t, RolesConsume, []string{"--config", p}, map[string]string{"SINK": "s"})
	if err != nil || c.SinkToken != "s" || c.Tokens != nil {
		t.Errorf("consume with an ingest-only variable unset: %v, %+v", err, c)
	}
}

// TestEmptyTokens: an empty or blank ingest token, or an explicitly empty
// sink_token, is an error naming the key, flag or variable (an empty
// ingest token used to be dropped, leaving no token: authentication off;
// an empty sink_token sent no Authorization header). The token is secret:
// the error never prints it.
func TestEmptyTokens(t *testing.T) {
	for _, tc := range []struct {
		args []string
		text string // config file, if any
		env  map[string]string
		want string // "" = accepted
	}{
		{args: []string{"--token", ""}, want: `flag --token: token 1 of 1: empty token`},
		{args: []string{"--token", "good", "--token", "  "}, want: `flag --token: token 2 of 2: empty token`},
		{args: []string{"--token", " s3cret"}, want: `flag --token: token 1 of 1: token has white space around it`},
		{args: []string{"--token", "s3cret\n"}, want: `flag --token: token 1 of 1: token has white space around it`},
		{args: []string{"--token", "s3\x01cret"}, want: `flag --token: token 1 of 1: token contains a control character`},
		{text: `tokens: [""]`, want: `config key "tokens": token 1 of 1: empty token`},
		{text: `tokens: ["${TOK}"]`, env: map[string]string{"TOK": " "}, want: `config key "tokens": token 1 of 1: empty token`},
		{text: `tokens: ["${TOK:-}"]`, want: `config key "tokens": token 1 of 1: empty token`},
		{text: "tokens:\n  -\n", want: `config key "tokens": token 1 of 1: empty token`},
		{args: []string{"--sink-token", ""}, want: `flag --sink-token: empty token (omit sink_token to send no token)`},
		{args: []string{"--sink-token", "\t"}, want: `flag --sink-token: empty token`},
		{text: `sink_token: ""`, want: `config key "sink_token": empty token`},
		{text: `sink_token:`, want: `config key "sink_token": empty token`},
		{env: map[string]string{SinkTokenEnv: " "}, want: `environment variable BUCKETQ_SINK_TOKEN: empty token`},
		// What stays valid: no tokens at all (authentication off, logged
		// at start-up), no sink_token, real tokens.
		{},
		{text: "tokens: []"},
		{text: "tokens:"},
		{args: []string{"--token", "a", "--token", "b c"}},
		{args: []string{"--sink-token", "s3cret"}},
		{env: map[string]string{SinkTokenEnv: ""}},
	} {
		args := tc.args
		if tc.text != "" {
			args = append([]string{"--config", writeConfig(t, tc.text+"\n")}, args...)
		}
		_, _, err := load(t, RolesRun, args, tc.env)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q %q: %v", args, tc.text, err)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q %q: err = %v, want a config error starting %q", args, tc.text, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3") {
			t.Errorf("%q: the error prints the token: %v", args, err)
		}
	}
}
