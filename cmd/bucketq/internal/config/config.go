// Package config turns the bucketq command line into one validated Config:
// built-in defaults, then the --config YAML file (with ${ENV} expanded
// inside its values), then the environment (BUCKETQ_SINK_TOKEN), then
// flags. Every option is declared once in Options, which drives the flags,
// the YAML keys, the help text and the error messages, so they cannot
// drift apart.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"github.com/bucketq/bucketq/partition"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/objname"
	"github.com/bucketq/bucketq/producer"
)

// Role says which subcommands an option applies to.
type Role uint8

const (
	// Produce options configure the ingest side (produce, run).
	Produce Role = 1 << iota
	// Consume options configure the delivery side (consume, run).
	Consume
	// Inspect options locate the bucket and manifest (inspect).
	Inspect
	// DeadLetters options are the ones dead-letters reads: the bucket,
	// dead_letter_prefix, the sink, the conversion and logging.
	DeadLetters
	// Replay options are the ones replay reads: the bucket, the journal,
	// the sink, the conversion and logging.
	Replay
	// Import options are the ones bucketq import reads: the queue's bucket
	// and names, the producer's batching and the import key.
	Import
)

// Roles of the subcommands.
const (
	RolesProduce = Produce
	RolesConsume = Consume
	RolesRun     = Produce | Consume
	RolesInspect = Inspect
	// RolesDeadLetters is dead-letters (list, show, redrive): a subset of
	// the consume options, without the consumer loop's own (listen,
	// prefetch, intervals, breaker, ...), which it would ignore.
	RolesDeadLetters = DeadLetters
	// RolesReplay is replay: read-only on the bucket, it needs the
	// journal, the sink and the conversion of the consumer.
	RolesReplay = Replay
	// RolesImport is import: a producer without front doors, plus the
	// source bucket and mapping (import, import_source_dir).
	RolesImport = Import
)

// SinkTokenEnv is the environment variable that sets sink_token.
const SinkTokenEnv = "BUCKETQ_SINK_TOKEN"

// Config is the merged, validated configuration of one bucketq process.
type Config struct {
	// ObjectStore is the objstore YAML (type + config) from the
	// object_store key, or nil when the bucket is the directory BucketDir.
	ObjectStore []byte
	BucketDir   string
	// CreateBucketDir lets produce, consume and run create a missing
	// directory bucket; without it a missing directory is an error (a
	// typo must not start an empty queue).
	CreateBucketDir bool

	ManifestPath     string
	DataPrefix       string
	DeadLetterPrefix string
	JournalPrefix    string
	// JournalRetention is how long journal segments (and the batch files
	// they reference) are kept after the dequeue; 0 = journal off.
	JournalRetention time.Duration
	// Partitions is the number of queues in the bucket (RFC 0005); 1 is
	// the single queue. Partition is the producer's home partition, -1
	// for auto (FNV-1a of the host name).
	Partitions int
	Partition  int
	// LeaseTimeout is how long a consumer's lease-table heartbeat may
	// stand still before the other consumers take its partitions.
	LeaseTimeout time.Duration

	Listen       string
	OTLPGRPC     string
	OTLPHTTP     string
	Tokens       []string
	MaxBodyBytes int64
	// BodyReadTimeout and BodyMinRate: a request body may take
	// BodyReadTimeout plus 1s per BodyMinRate bytes (reqbody.Limits).
	BodyReadTimeout time.Duration
	BodyMinRate     int64

	FlushInterval    time.Duration
	FlushSizeBytes   int
	Compression      format.Compression
	FormatVersion    uint16        // batch and manifest version written: 2, or 1 for opendata interop
	MinSealInterval  time.Duration // MinSealIntervalAuto until the command resolves it
	MaxBufferedBytes int64
	MemoryLimit      int64 // Go soft memory limit; 0 = none

	Sink            string
	SinkToken       string
	SinkBatchSize   int
	Prefetch        int
	PollInterval    time.Duration
	DequeueInterval time.Duration
	GCInterval      time.Duration
	GCGracePeriod   time.Duration
	// MaxConsecutivePoison is the breaker of the 400 policy: events refused
	// alone in a row before the consumer holds the queue instead of
	// dead-lettering it; 0 = no breaker. See ConsumerMaxConsecutivePoison.
	MaxConsecutivePoison int
	// SinkConcurrency is the number of sink requests in flight; 0 =
	// adaptive (the sink_concurrency value "adaptive").
	SinkConcurrency int

	// Import is the YAML of the import key (bucketq import: source,
	// format, mapping), nil if absent; ImportSourceDir a directory used as
	// the source bucket instead of import.source.
	Import          []byte
	ImportSourceDir string

	// Conversion is the YAML of the conversion mapping (otlpconv.Config),
	// nil for the defaults.
	Conversion []byte

	ShutdownTimeout time.Duration
	// ReadinessFailureThreshold is how long a producer's uploads or
	// manifest commits may fail, with no batch committed, before /readyz
	// answers 503.
	ReadinessFailureThreshold time.Duration
	LogLevel                  slog.Level
	LogFormat                 string // text or json
}

// ConsumerMaxConsecutivePoison is MaxConsecutivePoison as
// consumer.Config wants it: there 0 takes the default and a negative
// value disables the breaker.
func (c *Config) ConsumerMaxConsecutivePoison() int {
	if c.MaxConsecutivePoison == 0 {
		return -1
	}
	return c.MaxConsecutivePoison
}

// Kind is the value syntax of an option.
type Kind uint8

const (
	String Kind = iota
	Duration
	Int
	Bytes
	List // repeatable flag, YAML sequence
	Bool // flag without a value (--name, --name=false), YAML true/false
	Tree // YAML mapping, config file only
)

// Option is one setting: its YAML key, its flag (empty for config-only
// keys), default, help, the subcommands it applies to, and how to store it.
type Option struct {
	Key     string
	Flag    string
	Kind    Kind
	Default string // as it would be written in a flag; "" = none
	Arg     string // placeholder in help (DIR, URL, ...)
	Usage   string
	Roles   Role
	set     func(c *Config, v string) error   // String, Duration, Int, Bytes
	setList func(c *Config, v []string) error // List
	setTree func(c *Config, n *yaml.Node) error
}

// The libraries' defaults: the option table takes its defaults from them,
// so `bucketq` with no flags and a library user with a zero Config agree.
var (
	producerDefaults = producer.DefaultConfig()
	consumerDefaults = consumer.DefaultConfig()
)

// durationDefault writes d as a flag would take it: "10m", not "10m0s".
func durationDefault(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Options is every setting bucketq knows, in help order.
var Options = []*Option{
	{Key: "bucket_dir", Flag: "bucket-dir", Arg: "DIR", Default: "./data", Roles: Produce | Consume | Inspect | DeadLetters | Replay | Import,
		Usage: "directory used as a FILESYSTEM bucket (used when no object_store is configured)",
		set:   func(c *Config, v string) error { c.BucketDir = v; return nonEmpty(v) }},
	{Key: "create_bucket_dir", Flag: "create-bucket-dir", Kind: Bool, Default: "false", Roles: Produce | Consume,
		Usage: "create the bucket directory (bucket_dir, or object_store's FILESYSTEM directory) if it does not exist; without it a missing directory is an error",
		set: func(c *Config, v string) (err error) {
			if c.CreateBucketDir, err = strconv.ParseBool(v); err != nil {
				return fmt.Errorf("invalid boolean %q (want true or false)", v)
			}
			return nil
		}},
	{Key: "object_store", Kind: Tree, Roles: Produce | Consume | Inspect | DeadLetters | Replay | Import,
		Usage:   "thanos objstore bucket config (type: S3|GCS|AZURE|FILESYSTEM, config: {...})",
		setTree: setObjectStore},
	{Key: "manifest_path", Flag: "manifest-path", Arg: "NAME", Default: producer.DefaultManifestPath, Roles: Produce | Consume | Inspect | Import,
		Usage: "object name of the manifest (the queue)",
		set:   func(c *Config, v string) error { c.ManifestPath = v; return objname.Check(v) }},
	{Key: "partitions", Flag: "partitions", Kind: Int, Arg: "N", Default: "1", Roles: Produce | Consume | Inspect | DeadLetters | Replay | Import,
		Usage: "number of partitions, each a queue of its own (RFC 0005): partition 0 is manifest_path/data_prefix/dead_letter_prefix as named, partition p ≥ 1 the same names with suffix -000p; only ever raise it",
		set: func(c *Config, v string) error {
			n, err := parsePositive(v)
			if err == nil && n > partition.MaxPartitions {
				err = fmt.Errorf("%d is above the %d allowed", n, partition.MaxPartitions)
			}
			c.Partitions = int(n)
			return err
		}},
	{Key: "partition", Flag: "partition", Arg: "auto|P", Default: "auto", Roles: Produce,
		Usage: "home partition of this producer (one per zone or per replica ordinal is best); auto hashes the host name; it falls over to another partition on errors, on failing for readiness_failure_threshold, or on sustained conflicts",
		set: func(c *Config, v string) error {
			if strings.TrimSpace(v) == "auto" {
				c.Partition = -1
				return nil
			}
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				return fmt.Errorf("want auto or a partition number, got %q", v)
			}
			c.Partition = n
			return nil
		}},
	{Key: "lease_timeout", Flag: "lease-timeout", Kind: Duration, Arg: "DURATION", Default: "20s", Roles: Consume,
		Usage: "with partitions > 1: a consumer whose lease-table heartbeat (written every lease_timeout/4) has not changed for this long is dead and the others take its partitions; use the same value on every consumer",
		set: func(c *Config, v string) (err error) {
			if c.LeaseTimeout, err = parseDuration(v); err == nil && c.LeaseTimeout < 400*time.Millisecond {
				err = fmt.Errorf("%s is below the 400ms minimum (the heartbeat runs every lease_timeout/4)", c.LeaseTimeout)
			}
			return
		}},
	{Key: "data_prefix", Flag: "data-prefix", Arg: "PREFIX", Default: producerDefaults.DataPrefix, Roles: Produce | Consume | Inspect | Import,
		Usage: "object name prefix of batch files",
		set:   func(c *Config, v string) (err error) { c.DataPrefix, err = objname.Prefix(v); return }},
	{Key: "dead_letter_prefix", Flag: "dead-letter-prefix", Arg: "PREFIX", Default: consumerDefaults.DeadLetterPrefix, Roles: Consume | DeadLetters | Import,
		Usage: "object name prefix for records the sink or converter rejected",
		set:   func(c *Config, v string) (err error) { c.DeadLetterPrefix, err = objname.Prefix(v); return }},
	{Key: "journal_prefix", Flag: "journal-prefix", Arg: "PREFIX", Default: "ingest/journal", Roles: Consume | Inspect | Replay,
		Usage: "object name prefix of journal segments, the record of dequeued entries that replay reads (outside data_prefix)",
		set:   func(c *Config, v string) (err error) { c.JournalPrefix, err = objname.Prefix(v); return }},
	{Key: "journal_retention", Flag: "journal-retention", Kind: Duration, Arg: "DURATION", Default: "24h", Roles: Consume,
		Usage: "keep journal segments and the batch files they reference this long after delivery, for bucketq replay; 0 turns the journal off",
		set: func(c *Config, v string) (err error) {
			if v == "0" {
				c.JournalRetention = 0
				return nil
			}
			if c.JournalRetention, err = parseDuration(v); err != nil {
				return fmt.Errorf("%v, or 0 to turn the journal off", err)
			}
			return nil
		}},
	{Key: "listen", Flag: "listen", Arg: "HOST:PORT", Default: "127.0.0.1:8888", Roles: Produce | Consume,
		Usage: "HTTP address for POST /api/v1/events (produce, run), GET /metrics, /healthz, /readyz; empty disables",
		set:   func(c *Config, v string) error { c.Listen = v; return hostPort(v) }},
	{Key: "otlp_grpc", Flag: "otlp-grpc", Arg: "HOST:PORT", Default: "127.0.0.1:4317", Roles: Produce,
		Usage: "OTLP/gRPC listen address; empty disables",
		set:   func(c *Config, v string) error { c.OTLPGRPC = v; return hostPort(v) }},
	{Key: "otlp_http", Flag: "otlp-http", Arg: "HOST:PORT", Default: "127.0.0.1:4318", Roles: Produce,
		Usage: "OTLP/HTTP listen address (/v1/logs, /v1/metrics, /v1/traces); empty disables",
		set:   func(c *Config, v string) error { c.OTLPHTTP = v; return hostPort(v) }},
	{Key: "tokens", Flag: "token", Kind: List, Arg: "TOKEN", Roles: Produce,
		Usage:   "bearer token accepted by the ingest endpoints; repeat for several; none = no authentication (logged as a warning at start-up); an empty token is an error",
		setList: setTokens},
	{Key: "max_body_bytes", Flag: "max-body-bytes", Kind: Bytes, Arg: "N", Default: "8388608", Roles: Produce,
		Usage: "largest accepted request body, after gzip decompression (bytes; KiB/MiB/GiB suffixes allowed); above it 413",
		set:   func(c *Config, v string) (err error) { c.MaxBodyBytes, err = parseBytes(v); return }},
	{Key: "body_read_timeout", Flag: "body-read-timeout", Kind: Duration, Arg: "DURATION", Default: "10s", Roles: Produce,
		Usage: "every request body (POST /api/v1/events, OTLP/HTTP) may take this long, plus 1s per body_min_rate bytes received; a slower one gets 408 and its connection is closed",
		set:   func(c *Config, v string) (err error) { c.BodyReadTimeout, err = parseDuration(v); return }},
	{Key: "body_min_rate", Flag: "body-min-rate", Kind: Bytes, Arg: "N", Default: "16384", Roles: Produce,
		Usage: "bytes per second a request body must keep up after body_read_timeout (KiB/MiB suffixes allowed)",
		set:   func(c *Config, v string) (err error) { c.BodyMinRate, err = parseBytes(v); return }},
	{Key: "min_seal_interval", Flag: "min-seal-interval", Arg: "DURATION|auto", Default: "auto", Roles: Produce | Import,
		Usage: "least time between two batch seals, the cost cap (each seal is one object PUT and at most one manifest write); a lone request is sealed at once if this much has passed; auto: 0 on a directory bucket, 100ms on an object store",
		set:   setMinSealInterval},
	{Key: "flush_interval", Flag: "flush-interval", Kind: Duration, Arg: "DURATION", Default: durationDefault(producerDefaults.FlushInterval), Roles: Produce | Import,
		Usage: "the longest a record waits for its batch to be sealed (batches are sealed sooner, as soon as the previous one is uploaded)",
		set:   func(c *Config, v string) (err error) { c.FlushInterval, err = parseDuration(v); return }},
	{Key: "flush_size_bytes", Flag: "flush-size-bytes", Kind: Bytes, Arg: "N", Default: strconv.Itoa(producerDefaults.FlushSizeBytes), Roles: Produce | Import,
		Usage: "seal and upload the open batch once it holds this many bytes",
		set: func(c *Config, v string) error {
			n, err := parseBytes(v)
			c.FlushSizeBytes = int(n)
			return err
		}},
	{Key: "compression", Flag: "compression", Arg: "zstd|none", Default: producerDefaults.Compression, Roles: Produce | Import,
		Usage: "batch file compression",
		set:   setCompression},
	{Key: "format_version", Flag: "format-version", Arg: "2|1", Default: strconv.Itoa(int(producerDefaults.FormatVersion)), Roles: Produce | Consume | Import,
		Usage: "batch and manifest format written: 2 (checksummed) or 1 (opendata Buffer v1, for its readers; no checksums); both are read",
		set:   setFormatVersion},
	{Key: "max_buffered_bytes", Flag: "max-buffered-bytes", Kind: Bytes, Arg: "N", Default: strconv.FormatInt(producerDefaults.MaxBufferedBytes, 10), Roles: Produce | Import,
		Usage: "memory bound for accepted but uncommitted data; beyond it requests get 429",
		set: func(c *Config, v string) (err error) {
			c.MaxBufferedBytes, err = parseBytesUpTo(v, maxMemoryBytes)
			return
		}},
	{Key: "memory_limit", Flag: "memory-limit", Kind: Bytes, Arg: "N", Default: "268435456", Roles: Produce | Consume,
		Usage: "Go soft memory limit for the process (GC works harder near it); the GOMEMLIMIT environment variable wins when set; 0 disables",
		set: func(c *Config, v string) (err error) {
			if strings.TrimSpace(v) == "0" {
				c.MemoryLimit = 0 // no limit
				return nil
			}
			c.MemoryLimit, err = parseBytesUpTo(v, maxMemoryBytes)
			return
		}},
	{Key: "sink", Flag: "sink", Arg: "URL", Default: "stdout", Roles: Consume | DeadLetters | Replay,
		Usage: "where events go: http(s)://HOST/api/v1/events (full OpenMeter-compatible endpoint URL), file:PATH (NDJSON) or stdout",
		set:   func(c *Config, v string) error { c.Sink = v; return sinkURL(v) }},
	{Key: "sink_token", Flag: "sink-token", Arg: "TOKEN", Roles: Consume | DeadLetters | Replay,
		Usage: "bearer token for an http(s) sink (or env " + SinkTokenEnv + "); omit it to send none, an empty value is an error",
		set: func(c *Config, v string) error {
			if err := checkToken(v); err != nil {
				return fmt.Errorf("%v (omit sink_token to send no token)", err)
			}
			c.SinkToken = v
			return nil
		}},
	{Key: "sink_batch_size", Flag: "sink-batch-size", Kind: Int, Arg: "N", Default: strconv.Itoa(consumerDefaults.SinkBatchSize), Roles: Consume | DeadLetters | Replay,
		Usage: "events per sink request",
		set: func(c *Config, v string) error {
			n, err := parsePositive(v)
			c.SinkBatchSize = int(n)
			return err
		}},
	{Key: "sink_concurrency", Flag: "sink-concurrency", Arg: "adaptive|N", Default: "adaptive", Roles: Consume | DeadLetters | Replay,
		Usage: "sink requests in flight: adaptive (grows while the sink's round trip stays flat, shrinks on 429/503, errors or rising latency; at most " + strconv.Itoa(MaxAdaptiveSinkConcurrency) + ") or a fixed N (1: one at a time, events arrive in manifest order)",
		set:   setSinkConcurrency},
	{Key: "prefetch", Flag: "prefetch", Kind: Int, Arg: "N", Default: strconv.Itoa(consumerDefaults.Prefetch), Roles: Consume,
		Usage: "batches fetched ahead of delivery",
		set: func(c *Config, v string) error {
			n, err := parsePositive(v)
			c.Prefetch = int(n)
			return err
		}},
	{Key: "poll_interval", Flag: "poll-interval", Kind: Duration, Arg: "DURATION", Default: durationDefault(consumerDefaults.PollInterval), Roles: Consume,
		Usage: "how often an idle consumer re-reads the manifest",
		set:   func(c *Config, v string) (err error) { c.PollInterval, err = parseDuration(v); return }},
	{Key: "dequeue_interval", Flag: "dequeue-interval", Kind: Duration, Arg: "DURATION", Default: durationDefault(consumerDefaults.DequeueInterval), Roles: Consume,
		Usage: "while busy, ack (dequeue) delivered batches at most this often: fewer manifest writes, more redelivery after a crash",
		set:   func(c *Config, v string) (err error) { c.DequeueInterval, err = parseDuration(v); return }},
	{Key: "max_consecutive_poison", Flag: "max-consecutive-poison", Kind: Int, Arg: "N", Default: strconv.Itoa(consumerDefaults.MaxConsecutivePoison), Roles: Consume,
		Usage: "after this many events in a row refused alone by the sink (400) and dead-lettered, hold the queue and retry instead of dead-lettering more (a sink refusing everything); 0 disables",
		set: func(c *Config, v string) error {
			if strings.TrimSpace(v) == "0" {
				c.MaxConsecutivePoison = 0 // no breaker
				return nil
			}
			n, err := parsePositive(v)
			c.MaxConsecutivePoison = int(n)
			return err
		}},
	{Key: "gc_interval", Flag: "gc-interval", Kind: Duration, Arg: "DURATION", Default: durationDefault(consumerDefaults.GCInterval), Roles: Consume,
		Usage: "how often the consumer deletes delivered batch files",
		set:   func(c *Config, v string) (err error) { c.GCInterval, err = parseDuration(v); return }},
	{Key: "gc_grace_period", Flag: "gc-grace-period", Kind: Duration, Arg: "DURATION", Default: durationDefault(producerDefaults.GCGracePeriod), Roles: Produce | Consume | Import,
		Usage: "batch files younger than this are never deleted (covers uploads not yet in the manifest); use the same value for producers and consumer",
		set:   func(c *Config, v string) (err error) { c.GCGracePeriod, err = parseDuration(v); return }},
	{Key: "conversion", Kind: Tree, Roles: Consume | DeadLetters | Replay,
		Usage:   "OTLP to CloudEvents mapping (CEL expressions, see package consumer/convert/otlpconv)",
		setTree: func(c *Config, n *yaml.Node) (err error) { c.Conversion, err = subtreeAtLine(n); return }},
	{Key: "import", Kind: Tree, Roles: Import,
		Usage:   "bucketq import: source (objstore bucket config, same shape as object_store), format (auto|ndjson|csv|json), mapping (CEL: type, source, subject, time, id, data.*), max_row_bytes, checkpoint_window; see bucketq help import",
		setTree: func(c *Config, n *yaml.Node) (err error) { c.Import, err = subtreeAtLine(n); return }},
	{Key: "import_source_dir", Flag: "source-dir", Arg: "DIR", Roles: Import,
		Usage: "directory used as the source bucket of bucketq import (instead of import.source)",
		set:   func(c *Config, v string) error { c.ImportSourceDir = v; return nonEmpty(v) }},
	{Key: "shutdown_timeout", Flag: "shutdown-timeout", Kind: Duration, Arg: "DURATION", Default: "30s", Roles: Produce | Consume,
		Usage: "on SIGINT/SIGTERM, how long to wait for in-flight requests, the last flush and the consumer",
		set:   func(c *Config, v string) (err error) { c.ShutdownTimeout, err = parseDuration(v); return }},
	{Key: "readiness_failure_threshold", Flag: "readiness-failure-threshold", Kind: Duration, Arg: "DURATION", Default: "30s", Roles: Produce,
		Usage: "GET /readyz answers 503 once batch uploads or manifest commits have been failing this long with no batch committed (a load balancer then sends requests to another producer)",
		set: func(c *Config, v string) (err error) {
			c.ReadinessFailureThreshold, err = parseDuration(v)
			return
		}},
	{Key: "log_level", Flag: "log-level", Arg: "LEVEL", Default: "info", Roles: Produce | Consume | Inspect | DeadLetters | Replay | Import,
		Usage: "debug, info, warn or error",
		set:   setLogLevel},
	{Key: "log_format", Flag: "log-format", Arg: "text|json", Default: "text", Roles: Produce | Consume | Inspect | DeadLetters | Replay | Import,
		Usage: "log line format on stderr",
		set:   setLogFormat},
}

// Aliases are other names a config file may use for a key: the library
// documentation calls data_prefix data_path_prefix.
var Aliases = map[string]string{"data_path_prefix": "data_prefix"}

var byKey = func() map[string]*Option {
	m := make(map[string]*Option, len(Options))
	for _, o := range Options {
		m[o.Key] = o
	}
	return m
}()

// Keys returns every config file key, sorted.
func Keys() []string {
	keys := make([]string, 0, len(Options))
	for _, o := range Options {
		keys = append(keys, o.Key)
	}
	sort.Strings(keys)
	return keys
}

// Error is a configuration or usage error: the command exits with code 2.
// Its text is always one line (see OneLine), whatever Msg holds.
type Error struct{ Msg string }

func (e *Error) Error() string { return OneLine(e.Msg) }

// OneLine folds a multi-line error message into one line: lines are
// trimmed and joined with "; " (or a space after a colon), and source
// excerpts that start with "|" — the expression and caret that CEL prints
// under its message, which already names the line and column — are
// dropped.
func OneLine(msg string) string {
	if !strings.ContainsAny(msg, "\r\n") {
		return msg
	}
	var b strings.Builder
	for _, line := range strings.FieldsFunc(msg, func(r rune) bool { return r == '\n' || r == '\r' }) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "|") {
			continue
		}
		if b.Len() > 0 {
			if strings.HasSuffix(b.String(), ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		b.WriteString(line)
	}
	return b.String()
}

func errorf(format string, args ...any) error { return &Error{Msg: fmt.Sprintf(format, args...)} }

// Flags is the flag set of one subcommand. Add subcommand-specific flags to
// FlagSet before calling Parse.
type Flags struct {
	*flag.FlagSet
	name    string
	roles   Role
	config  string
	scalars map[string]string   // flag values by key, last one wins
	lists   map[string][]string // repeatable flag values by key
	order   []string            // keys in the order first given
}

// NewFlags returns the flag set of subcommand name with every option whose
// roles intersect roles, plus --config. The flag package prints nothing:
// Parse returns errors and the caller prints help.
func NewFlags(name string, roles Role) *Flags {
	f := &Flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), name: name, roles: roles,
		scalars: map[string]string{}, lists: map[string][]string{}}
	f.SetOutput(io.Discard)
	f.Usage = func() {}
	f.StringVar(&f.config, "config", "", "YAML config file")
	for _, o := range Options {
		if o.Flag == "" || o.Roles&roles == 0 {
			continue
		}
		o := o
		set := func(v string) error {
			if _, seen := f.scalars[o.Key]; !seen && f.lists[o.Key] == nil {
				f.order = append(f.order, o.Key)
			}
			if o.Kind == List {
				f.lists[o.Key] = append(f.lists[o.Key], v)
			} else {
				f.scalars[o.Key] = v
			}
			return nil
		}
		if o.Kind == Bool {
			f.BoolFunc(o.Flag, o.Usage, set)
		} else {
			f.Func(o.Flag, o.Usage, set)
		}
	}
	return f
}

// Parse parses args, allowing flags after positional arguments, and
// returns the positional arguments. flag.ErrHelp is returned as is.
func (f *Flags) Parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.FlagSet.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errorf("%s: %v", f.name, err)
		}
		args = f.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// Env reads environment variables; os.Getenv in production.
type Env func(string) string

// Load builds the Config: defaults, then the --config file, then the
// environment, then flags. Every error is an *Error naming the key or flag.
func (f *Flags) Load(getenv Env) (*Config, error) {
	c := &Config{}
	for _, o := range Options {
		if o.Default != "" && o.set != nil {
			if err := o.set(c, o.Default); err != nil {
				panic(fmt.Sprintf("config: default of %s: %v", o.Key, err)) // a bug in Options, caught by tests
			}
		}
	}
	fromFile := map[string]bool{}
	if f.config != "" {
		raw, err := os.ReadFile(f.config)
		if err != nil {
			return nil, errorf("config file: %v", err)
		}
		keys, err := Apply(c, raw, getenv, f.roles)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			fromFile[k] = true
		}
	}
	if tok := getenv(SinkTokenEnv); tok != "" && byKey["sink_token"].Roles&f.roles != 0 {
		if err := byKey["sink_token"].set(c, tok); err != nil {
			return nil, errorf("environment variable %s: %v", SinkTokenEnv, err)
		}
	}
	for _, k := range f.order {
		o := byKey[k]
		if o.Kind == List {
			if err := o.setList(c, f.lists[k]); err != nil {
				return nil, errorf("flag --%s: %v", o.Flag, err)
			}
			continue
		}
		v := f.scalars[k]
		if err := o.set(c, v); err != nil {
			return nil, errorf("flag --%s: %v", o.Flag, err)
		}
	}
	// --bucket-dir overrides an object_store from the file; in the file
	// the two are exclusive.
	if _, ok := f.scalars["bucket_dir"]; ok {
		c.ObjectStore = nil
	} else if fromFile["bucket_dir"] && fromFile["object_store"] {
		return nil, errorf(`config keys "bucket_dir" and "object_store" are exclusive: set one`)
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if err := c.checkLimits(f.roles, getenv); err != nil {
		return nil, err
	}
	return c, nil
}

// Apply merges the YAML config text raw into c and returns the keys it
// set. Unknown keys are errors. The text is parsed first; then ${VAR} and
// $VAR are expanded from getenv inside scalar values only (see
// expandTree), so no value can change the structure of the file. roles
// are the command's: a key it does not use whose value names an unset
// variable is skipped (one file serves hosts with different
// environments), every other error stands.
func Apply(c *Config, raw []byte, getenv Env, roles Role) ([]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		hint := ""
		if unquotedFlowVar.Match(raw) {
			hint = ` (inside [ ] or { } a ${VAR} must be quoted: ["${VAR}"])`
		}
		return nil, errorf("config file: %v%s", err, hint)
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errorf("config file: line %d: want a mapping of keys (key: value)", root.Line)
	}
	var keys []string
	seen := map[string]bool{}
	byName := map[string]*yaml.Node{} // value nodes of keys set under another name
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		if canon, ok := Aliases[name]; ok {
			name = canon
		}
		o := byKey[name]
		if o == nil {
			return nil, errorf("config key %q (line %d): unknown key (known: %s)", k.Value, k.Line, strings.Join(Keys(), ", "))
		}
		if seen[k.Value] {
			return nil, errorf("config key %q (line %d): given twice", k.Value, k.Line)
		}
		seen[k.Value] = true
		if err := expandTree(v, getenv, ""); err != nil {
			if o.Roles&roles == 0 {
				continue // not this command's key
			}
			return nil, errorf("config key %q %v", k.Value, err)
		}
		if prev := byName[name]; prev != nil {
			// The key and its alias: fine when they agree.
			if prev.Kind != yaml.ScalarNode || v.Kind != yaml.ScalarNode || prev.Value != v.Value {
				return nil, errorf("config key %q (line %d): alias of %q, which is also set, to a different value (%q, line %d): keep one", k.Value, k.Line, name, prev.Value, prev.Line)
			}
			continue
		}
		byName[name] = v
		keys = append(keys, name)
		if err := setNode(c, o, v); err != nil {
			return nil, errorf("config key %q: %v", k.Value, err)
		}
	}
	return keys, nil
}

// unquotedFlowVar finds a ${ right after [ { or , : a YAML error there is
// most likely an unquoted ${VAR} in a flow sequence or mapping.
var unquotedFlowVar = regexp.MustCompile(`[\[{,]\s*\$\{`)

// expandTree expands environment variables in every scalar value under n,
// in place: mapping values and sequence items, never mapping keys, and
// never across nodes, so an expanded value stays one scalar whatever it
// holds (a newline, ": ", " #", a leading "*"). A plain (unquoted,
// untagged) scalar that changed is re-typed from its new text when the
// subtree is re-encoded (port: ${PORT} is still a number, as it was when
// the file was expanded as text); a quoted one stays a string. The error
// names the line, the path below the key, and the variable.
func expandTree(n *yaml.Node, getenv Env, at string) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := expandEnv(n.Value, getenv)
		if err != nil {
			if at != "" {
				return fmt.Errorf("(%s, line %d): %v", at, n.Line, err)
			}
			return fmt.Errorf("(line %d): %v", n.Line, err)
		}
		if v != n.Value {
			n.Value = v
			if n.Style == 0 {
				n.Tag = "" // resolved again from the new text on encoding
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := expandTree(n.Content[i+1], getenv, joinPath(at, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if err := expandTree(item, getenv, joinPath(at, "["+strconv.Itoa(i)+"]")); err != nil {
				return err
			}
		}
	}
	// Aliases share the node of their anchor, which is expanded where it
	// is defined.
	return nil
}

func joinPath(at, elem string) string {
	if at == "" || strings.HasPrefix(elem, "[") {
		return at + elem
	}
	return at + "." + elem
}

// expandEnv expands $NAME and ${NAME} from getenv: "$$" is a literal "$",
// ${NAME:-default} gives default when NAME is unset or empty, and a "$"
// followed by anything else is itself. NAME is a letter or "_", then
// letters, digits and "_". A variable that is unset or empty, without a
// default, is an error naming it: an empty token or path is never what a
// config file meant.
func expandEnv(s string, getenv Env) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		var name, def, ref string
		hasDef := false
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i += 2
			continue
		case next == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q: unterminated ${ (write $$ for a literal $)", s[i:])
			}
			ref = s[i : i+end+1]
			name, def, hasDef = strings.Cut(ref[2:len(ref)-1], ":-")
			if !isEnvName(name) {
				return "", fmt.Errorf("%q: not a variable reference (want ${NAME} or ${NAME:-default}; $$ is a literal $)", ref)
			}
			i += end + 1
		case isEnvNameStart(next):
			j := i + 2
			for j < len(s) && isEnvNameChar(s[j]) {
				j++
			}
			ref, name = s[i:j], s[i+1:j]
			i = j
		default:
			b.WriteByte('$')
			i++
			continue
		}
		v := getenv(name)
		if v == "" {
			if !hasDef {
				return "", fmt.Errorf("%s: environment variable %s is not set or empty (write ${%s:-default} for a default, ${%s:-} to allow empty)", ref, name, name, name)
			}
			v = def
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func isEnvNameStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isEnvNameChar(c byte) bool  { return isEnvNameStart(c) || c >= '0' && c <= '9' }
func isEnvName(s string) bool {
	if s == "" || !isEnvNameStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isEnvNameChar(s[i]) {
			return false
		}
	}
	return true
}

func setNode(c *Config, o *Option, v *yaml.Node) error {
	switch o.Kind {
	case Tree:
		return o.setTree(c, v)
	case List:
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			return o.setList(c, nil)
		}
		if v.Kind != yaml.SequenceNode {
			return fmt.Errorf("want a list of strings (line %d)", v.Line)
		}
		var list []string
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("want a list of strings, item at line %d is not a string", item.Line)
			}
			list = append(list, item.Value)
		}
		return o.setList(c, list)
	}
	if v.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a single value (line %d)", v.Line)
	}
	s := v.Value
	if v.Tag == "!!null" {
		s = ""
	}
	return o.set(c, s)
}

func setObjectStore(c *Config, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("want a mapping with type and config (line %d)", n.Line)
	}
	typ := ""
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "type" {
			typ = n.Content[i+1].Value
		}
	}
	if typ == "" {
		return fmt.Errorf(`missing "type" (S3, GCS, AZURE, FILESYSTEM, ...) (line %d)`, n.Line)
	}
	b, err := subtree(n)
	c.ObjectStore = b
	return err
}

// subtreeAtLine is subtree starting on the line the block starts on in the
// file, so "line N" in errors about it counts from the top of the file.
// (Re-encoding drops blank lines, so inside a block with blank lines the
// numbers can still run short.)
func subtreeAtLine(n *yaml.Node) ([]byte, error) {
	b, err := subtree(n)
	if err != nil || len(b) == 0 || n.Line <= 1 {
		return b, err
	}
	return append(bytes.Repeat([]byte{'\n'}, n.Line-1), b...), nil
}

func subtree(n *yaml.Node) ([]byte, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("want a mapping (line %d)", n.Line)
	}
	return yaml.Marshal(n)
}

// DecodeStrict decodes YAML into v, failing on keys v does not have.
func DecodeStrict(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// check validates what no single value can: how the names relate. The
// setters only let clean names through (objname), so comparing them as
// strings is comparing the objects they name.
func (c *Config) check() error {
	if objname.Within(c.ManifestPath, c.DataPrefix) {
		return errorf(`config key "manifest_path": %q is inside data_prefix %q, where garbage collection deletes objects`, c.ManifestPath, c.DataPrefix)
	}
	if objname.Overlap(c.DeadLetterPrefix, c.DataPrefix) {
		return errorf(`config key "dead_letter_prefix": %q overlaps data_prefix %q, where garbage collection deletes objects`, c.DeadLetterPrefix, c.DataPrefix)
	}
	if objname.Overlap(c.JournalPrefix, c.DataPrefix) {
		return errorf(`config key "journal_prefix": %q overlaps data_prefix %q, where garbage collection deletes objects`, c.JournalPrefix, c.DataPrefix)
	}
	if objname.Overlap(c.JournalPrefix, c.DeadLetterPrefix) {
		return errorf(`config key "journal_prefix": %q overlaps dead_letter_prefix %q`, c.JournalPrefix, c.DeadLetterPrefix)
	}
	if c.Partitions > 1 {
		if err := c.Layout().Check(c.Partitions); err != nil {
			return errorf(`config key "partitions": %v`, err)
		}
	}
	if c.Partition >= max(c.Partitions, 1) {
		return errorf(`config key "partition": %d is not below partitions %d`, c.Partition, c.Partitions)
	}
	return nil
}

// Layout is partition 0's names; Layout().Partition(p) names partition p.
func (c *Config) Layout() partition.Layout {
	return partition.Layout{Manifest: c.ManifestPath, Data: c.DataPrefix, DeadLetter: c.DeadLetterPrefix}
}

// checkLimits rejects size settings that leave the producer unable to
// accept valid requests (roles without Produce do not use them).
func (c *Config) checkLimits(roles Role, getenv Env) error {
	if roles&Produce == 0 {
		return nil
	}
	// The records of one request take up to about twice its body in the
	// buffer (4 bytes of framing per record, a receive time stamped into
	// events that have none). Below that the largest valid requests get a
	// retryable 429 for ever.
	if c.MaxBufferedBytes < 2*c.MaxBodyBytes {
		return errorf(`config keys "max_buffered_bytes" and "max_body_bytes": max_buffered_bytes (%d) must be at least twice max_body_bytes (%d), or the largest valid requests get 429 for ever`, c.MaxBufferedBytes, c.MaxBodyBytes)
	}
	// A soft memory limit below what the producer may hold makes the GC
	// run without pause once the buffer fills. GOMEMLIMIT replaces the key.
	if c.MemoryLimit > 0 && c.MemoryLimit < c.MaxBufferedBytes && getenv("GOMEMLIMIT") == "" {
		return errorf(`config keys "memory_limit" and "max_buffered_bytes": memory_limit (%d) must be at least max_buffered_bytes (%d), or the GC runs without pause once the buffer fills; raise it or set 0 to disable`, c.MemoryLimit, c.MaxBufferedBytes)
	}
	return nil
}

// setTokens sets the ingest tokens. An empty list is no authentication
// (serve logs it loudly); an empty token in the list is an error, not a
// token that is silently dropped, which used to turn authentication off
// when a variable was unset.
func setTokens(c *Config, v []string) error {
	for i, tok := range v {
		if err := checkToken(tok); err != nil {
			return fmt.Errorf("token %d of %d: %v", i+1, len(v), err)
		}
	}
	c.Tokens = v
	return nil
}

// checkToken refuses bearer tokens that cannot work: empty or white space
// (no authentication where one was meant), white space around it (the
// token a request sends is trimmed, so it would never match), or control
// characters (not sendable in a header). The token itself is secret and
// not printed.
func checkToken(tok string) error {
	switch {
	case strings.TrimSpace(tok) == "":
		return errors.New("empty token")
	case strings.TrimSpace(tok) != tok:
		return errors.New("token has white space around it")
	case strings.ContainsFunc(tok, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("token contains a control character (a newline?)")
	}
	return nil
}

// ObjectArg checks an object name given as a command-line argument (what
// names the argument, e.g. "inspect batch LOCATION") by the rules of the
// name keys: clean, relative, no "." or ".." segments. It is the one check
// for every name a user passes, so "../../etc/passwd" reaches no bucket.
func ObjectArg(what, name string) error {
	if err := objname.Check(name); err != nil {
		return errorf("%s: %v", what, err)
	}
	return nil
}

func nonEmpty(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 250ms, 5s, 10m)", v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("invalid duration %q: must be positive", v)
	}
	return d, nil
}

// MaxAdaptiveSinkConcurrency is the adaptive sink_concurrency's cap
// (consumer.DefaultMaxSinkConcurrency); MaxSinkConcurrency bounds a fixed
// value.
const (
	MaxAdaptiveSinkConcurrency = 32
	MaxSinkConcurrency         = 256
)

func setSinkConcurrency(c *Config, v string) error {
	v = strings.TrimSpace(v)
	if v == "adaptive" || v == "0" {
		c.SinkConcurrency = 0
		return nil
	}
	n, err := parsePositive(v)
	if err != nil {
		return fmt.Errorf("%w (want adaptive or a number of requests)", err)
	}
	if n > MaxSinkConcurrency {
		return fmt.Errorf("invalid number %q: at most %d requests in flight", v, MaxSinkConcurrency)
	}
	c.SinkConcurrency = int(n)
	return nil
}

func parsePositive(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", v)
	}
	if n <= 0 {
		return 0, fmt.Errorf("invalid number %q: must be positive", v)
	}
	return n, nil
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}

// Size limits: one request or one batch stays under 2GiB (record lengths
// and buffers are sized as int32-safe), while the memory bounds may be as
// large as a machine.
const (
	maxSingleBytes = 1<<31 - 1
	maxMemoryBytes = 1 << 40
)

// parseBytes parses a size of at most 2GiB.
func parseBytes(v string) (int64, error) { return parseBytesUpTo(v, maxSingleBytes) }

func parseBytesUpTo(v string, limit int64) (int64, error) {
	s, mult := strings.TrimSpace(v), int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q (want bytes, e.g. 4194304 or 4MiB)", v)
	}
	if n <= 0 {
		return 0, fmt.Errorf("invalid size %q: must be positive", v)
	}
	if n > limit/mult {
		return 0, fmt.Errorf("invalid size %q: larger than %s", v, bytesName(limit))
	}
	return n * mult, nil
}

// hostPort accepts "" (disabled) and HOST:PORT, where HOST is empty (all
// interfaces), an IP address or a host name, and PORT is a number from 0
// to 65535 (0: the system picks a free port, logged at start-up).
func hostPort(v string) error {
	if v == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil || port == "" {
		return fmt.Errorf("invalid address %q (want HOST:PORT, e.g. 127.0.0.1:8888, or empty to disable)", v)
	}
	if n, err := strconv.ParseUint(port, 10, 64); err != nil || n > 65535 {
		return fmt.Errorf("invalid address %q: port %q is not a number from 0 to 65535", v, port)
	}
	if !validHost(host) {
		return fmt.Errorf("invalid address %q: host %q is not an IP address or host name", v, host)
	}
	return nil
}

// validHost accepts "", an IP address (IPv6 with an optional %zone) or a
// DNS name made of letters, digits, '-', '_' and '.'.
func validHost(h string) bool {
	if h == "" {
		return true
	}
	if ip, _, _ := strings.Cut(h, "%"); net.ParseIP(ip) != nil {
		return true
	}
	if len(h) > 253 || strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func sinkURL(v string) error {
	switch {
	case v == "stdout":
		return nil
	case strings.HasPrefix(v, "file:"):
		if strings.TrimPrefix(v, "file:") == "" {
			return fmt.Errorf("invalid sink %q: file: needs a path, e.g. file:events.ndjson", v)
		}
		return nil
	case strings.HasPrefix(v, "http://"), strings.HasPrefix(v, "https://"):
		if rest := v[strings.Index(v, "//")+2:]; rest == "" || rest[0] == '/' {
			return fmt.Errorf("invalid sink %q: no host", v)
		}
		return nil
	}
	return fmt.Errorf("invalid sink %q (want http(s)://HOST/api/v1/events, file:PATH or stdout)", v)
}

// MinSealIntervalAuto is MinSealInterval's "auto": the command picks 0 for a
// directory bucket and ObjectStoreMinSealInterval for an object store.
const MinSealIntervalAuto = -1

// ObjectStoreMinSealInterval is min_seal_interval's auto value on an object
// store (producer.ObjectStoreMinSealInterval, which says why).
const ObjectStoreMinSealInterval = producer.ObjectStoreMinSealInterval

func setMinSealInterval(c *Config, v string) error {
	if v == "auto" {
		c.MinSealInterval = MinSealIntervalAuto
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("invalid duration %q (want auto, 0 or a duration such as 250ms)", v)
	}
	c.MinSealInterval = d
	return nil
}

func setFormatVersion(c *Config, v string) error {
	switch v {
	case "1":
		c.FormatVersion = 1
	case "2":
		c.FormatVersion = 2
	default:
		return fmt.Errorf("invalid format version %q (want 2, or 1 for opendata Buffer readers)", v)
	}
	return nil
}

func setCompression(c *Config, v string) error {
	if v != "zstd" && v != "none" {
		return fmt.Errorf("invalid compression %q (want zstd or none)", v)
	}
	cm, err := format.ParseCompression(v)
	c.Compression = cm
	return err
}

func setLogLevel(c *Config, v string) error {
	switch strings.ToLower(v) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		return fmt.Errorf("invalid log level %q (want debug, info, warn or error)", v)
	}
	return nil
}

func setLogFormat(c *Config, v string) error {
	if v != "text" && v != "json" {
		return fmt.Errorf("invalid log format %q (want text or json)", v)
	}
	c.LogFormat = v
	return nil
}

// Logger returns the slog logger the config asks for, writing to w.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// FlagHelp writes one help line per flag of the roles, with its default
// and config key, and with withRoles the commands it applies to.
func FlagHelp(w io.Writer, roles Role, withRoles bool) {
	fmt.Fprintf(w, "  %-34s %s\n", "--config FILE", "YAML file with any of the keys below (flags override it)")
	for _, o := range Options {
		if o.Roles&roles == 0 {
			continue
		}
		name := o.Key + ": (file only)"
		if o.Flag != "" {
			name = strings.TrimSpace("--" + o.Flag + " " + o.Arg)
		}
		var extra []string
		if o.Default != "" {
			extra = append(extra, "default "+o.Default)
		}
		extra = append(extra, "key "+o.Key)
		cmds := ""
		if withRoles {
			cmds = " [" + strings.Join(o.Commands(), ", ") + "]"
		}
		fmt.Fprintf(w, "  %-34s %s (%s)%s\n", name, o.Usage, strings.Join(extra, "; "), cmds)
	}
}

// Commands names the subcommands the option applies to.
func (o *Option) Commands() []string {
	var out []string
	if o.Roles&Produce != 0 {
		out = append(out, "produce")
	}
	if o.Roles&Consume != 0 {
		out = append(out, "consume")
	}
	if o.Roles&(Produce|Consume) != 0 {
		out = append(out, "run")
	}
	if o.Roles&Inspect != 0 {
		out = append(out, "inspect")
	}
	if o.Roles&DeadLetters != 0 {
		out = append(out, "dead-letters")
	}
	if o.Roles&Replay != 0 {
		out = append(out, "replay")
	}
	return out
}

func bytesName(n int64) string {
	if n == maxMemoryBytes {
		return "1TiB"
	}
	return "2GiB"
}
