package bucketqexporter

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/producer"
)

// Config is the exporter's configuration. Its bucket and producer keys have
// the names, meanings and defaults of `bucketq produce` (README, config
// table); the defaults come from the producer package, not from literals
// here.
type Config struct {
	// ObjectStore is the queue's bucket as a thanos objstore client
	// config (type S3|GCS|AZURE|FILESYSTEM, config, prefix), the same
	// block as bucketq's own object_store. Exclusive with BucketDir.
	ObjectStore map[string]any `mapstructure:"object_store"`
	// BucketDir is a local directory used as a FILESYSTEM bucket.
	BucketDir string `mapstructure:"bucket_dir"`
	// CreateBucketDir creates the directory of bucket_dir (or of a
	// FILESYSTEM object_store) if missing; without it a missing directory
	// fails the start, so a typo cannot start an empty queue.
	CreateBucketDir bool `mapstructure:"create_bucket_dir"`

	ManifestPath string `mapstructure:"manifest_path"`
	DataPrefix   string `mapstructure:"data_prefix"`

	FlushInterval  time.Duration `mapstructure:"flush_interval"`
	FlushSizeBytes int           `mapstructure:"flush_size_bytes"`
	// MinSealInterval is "auto" (0 on a directory bucket, 100ms on an
	// object store) or a duration: the cost cap of group commit.
	MinSealInterval  string        `mapstructure:"min_seal_interval"`
	Compression      string        `mapstructure:"compression"`
	MaxBufferedBytes int64         `mapstructure:"max_buffered_bytes"`
	GCGracePeriod    time.Duration `mapstructure:"gc_grace_period"`
	FormatVersion    int           `mapstructure:"format_version"`

	TimeoutConfig exporterhelper.TimeoutConfig                             `mapstructure:",squash"`
	QueueConfig   configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	RetryConfig   configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`
}

var _ component.Config = (*Config)(nil)

// DefaultTimeout is the default timeout of one export attempt. It is longer
// than exporterhelper's 5 s: an attempt waits for its batch's upload and
// manifest commit (a few hundred ms, seconds on a slow store), and one that
// gives up early is retried and stores its records twice (the consumer's
// event ids are the same, so the metering API deduplicates them, but the
// bucket holds them twice).
const DefaultTimeout = 30 * time.Second

// DefaultNumConsumers is sending_queue.num_consumers: exports waiting for
// their commit at once. The producer group-commits them, so more of them
// make bigger batches rather than more writes.
const DefaultNumConsumers = 64

func createDefaultConfig() component.Config {
	q := exporterhelper.NewDefaultQueueConfig()
	// The durability contract: the pipeline, and so the receiver's answer
	// to its client, waits until the batch is committed (README, "Durability
	// and sending_queue").
	q.WaitForResult = true
	q.NumConsumers = DefaultNumConsumers
	// No exporterhelper batching: the producer batches (group commit);
	// a batch here would only add its flush_timeout to every export.
	q.Batch = configoptional.Default(exporterhelper.NewDefaultBatchConfig())
	return &Config{
		ManifestPath:     producer.DefaultManifestPath,
		DataPrefix:       producer.DefaultDataPrefix,
		FlushInterval:    producer.DefaultFlushInterval,
		FlushSizeBytes:   producer.DefaultFlushSizeBytes,
		MinSealInterval:  "auto",
		Compression:      producer.DefaultCompression,
		MaxBufferedBytes: producer.DefaultMaxBufferedBytes,
		GCGracePeriod:    producer.DefaultGCGracePeriod,
		FormatVersion:    int(format.BatchVersion),
		TimeoutConfig:    exporterhelper.TimeoutConfig{Timeout: DefaultTimeout},
		QueueConfig:      configoptional.Some(q),
		RetryConfig:      configretry.NewDefaultBackOffConfig(),
	}
}

// Validate checks every key without I/O; each error names its key.
func (cfg *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	switch {
	case cfg.ObjectStore != nil && cfg.BucketDir != "":
		bad("object_store", "set either object_store or bucket_dir, not both")
	case cfg.ObjectStore == nil && cfg.BucketDir == "":
		bad("object_store", "no bucket configured: set object_store (type S3|GCS|AZURE|FILESYSTEM, config: {...}) or bucket_dir")
	case cfg.ObjectStore != nil:
		if _, err := cfg.objectStoreYAML(); err != nil {
			bad("object_store", "%v", err)
		}
	}
	if err := producer.CheckManifestPath(cfg.ManifestPath); err != nil {
		bad("manifest_path", "%v", err)
	}
	if p, err := producer.CleanDataPrefix(cfg.DataPrefix); err != nil {
		bad("data_prefix", "%v", err)
	} else if p == cfg.ManifestPath {
		bad("data_prefix", "%q is the manifest_path", p)
	}
	if cfg.FlushInterval <= 0 {
		bad("flush_interval", "must be positive, got %s", cfg.FlushInterval)
	}
	if cfg.FlushSizeBytes <= 0 {
		bad("flush_size_bytes", "must be positive, got %d", cfg.FlushSizeBytes)
	}
	if _, err := cfg.minSealInterval(); err != nil {
		bad("min_seal_interval", "%v", err)
	}
	if _, err := format.ParseCompression(cfg.Compression); err != nil || (cfg.Compression != "zstd" && cfg.Compression != "none") {
		bad("compression", "invalid value %q (want zstd or none)", cfg.Compression)
	}
	if cfg.MaxBufferedBytes <= 0 {
		bad("max_buffered_bytes", "must be positive, got %d", cfg.MaxBufferedBytes)
	}
	if cfg.GCGracePeriod <= 0 {
		bad("gc_grace_period", "must be positive, got %s (it must equal the consumer's gc_grace_period)", cfg.GCGracePeriod)
	}
	if cfg.FormatVersion != 1 && cfg.FormatVersion != 2 {
		bad("format_version", "invalid value %d (want 2, or 1 for opendata Buffer readers)", cfg.FormatVersion)
	}
	if cfg.TimeoutConfig.Timeout < 0 {
		bad("timeout", "must not be negative, got %s", cfg.TimeoutConfig.Timeout)
	}
	return errors.Join(errs...)
}

// objectStoreYAML is object_store as the objstore YAML bucket.Open reads,
// checked without I/O.
func (cfg *Config) objectStoreYAML() ([]byte, error) {
	b, err := yaml.Marshal(cfg.ObjectStore)
	if err != nil {
		return nil, err
	}
	return b, bucket.CheckConfig(b)
}

// minSealInterval resolves min_seal_interval ("auto" or a duration).
func (cfg *Config) minSealInterval() (time.Duration, error) {
	if cfg.MinSealInterval == "auto" || cfg.MinSealInterval == "" {
		return producer.AutoMinSealInterval(cfg.ObjectStore != nil), nil
	}
	d, err := time.ParseDuration(cfg.MinSealInterval)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid value %q (want auto, 0s or a duration such as 100ms)", cfg.MinSealInterval)
	}
	return d, nil
}

// producerConfig is the producer's configuration (Validate must have
// passed).
func (cfg *Config) producerConfig() producer.Config {
	prefix, _ := producer.CleanDataPrefix(cfg.DataPrefix)
	minSeal, _ := cfg.minSealInterval()
	return producer.Config{
		DataPrefix:       prefix,
		FlushInterval:    cfg.FlushInterval,
		MinSealInterval:  minSeal,
		PipelineDepth:    producer.AutoPipelineDepth(cfg.ObjectStore != nil),
		FlushSizeBytes:   cfg.FlushSizeBytes,
		Compression:      cfg.Compression,
		MaxBufferedBytes: cfg.MaxBufferedBytes,
		GCGracePeriod:    cfg.GCGracePeriod,
		FormatVersion:    uint16(cfg.FormatVersion),
	}
}
