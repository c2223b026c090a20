package bucketqexporter

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/bucketq/bucketq/exporter/bucketqexporter/internal/metadata"
	"github.com/bucketq/bucketq/producer"
)

func loadConfig(t *testing.T, name string) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	id := component.NewID(metadata.Type)
	if name != "" {
		id = component.NewIDWithName(metadata.Type, name)
	}
	sub, err := cm.Sub(id.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewFactory().CreateDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		t.Fatalf("unmarshal %s: %v", id, err)
	}
	return cfg
}

func TestDefaultConfig(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	// The producer's defaults, so the exporter and `bucketq produce`
	// write the same batches unless told otherwise.
	if cfg.ManifestPath != producer.DefaultManifestPath || cfg.DataPrefix != producer.DefaultDataPrefix ||
		cfg.FlushInterval != producer.DefaultFlushInterval || cfg.FlushSizeBytes != producer.DefaultFlushSizeBytes ||
		cfg.Compression != producer.DefaultCompression || cfg.MaxBufferedBytes != producer.DefaultMaxBufferedBytes ||
		cfg.GCGracePeriod != producer.DefaultGCGracePeriod || cfg.MinSealInterval != "auto" || cfg.FormatVersion != 2 {
		t.Errorf("defaults differ from the producer's: %+v", cfg)
	}
	// The durability contract: the queue waits for the commit, and does
	// not batch in front of the producer's group commit.
	if !cfg.QueueConfig.HasValue() || !cfg.QueueConfig.Get().WaitForResult {
		t.Error("default sending_queue does not wait for the result: clients would be acked before durability")
	}
	if cfg.QueueConfig.Get().Batch.HasValue() {
		t.Error("default sending_queue batches")
	}
	if cfg.TimeoutConfig.Timeout != DefaultTimeout || !cfg.RetryConfig.Enabled {
		t.Errorf("timeout %s, retry %v", cfg.TimeoutConfig.Timeout, cfg.RetryConfig.Enabled)
	}
	// No bucket by default: one must be configured.
	if err := confmap.Validate(cfg); err == nil || !strings.Contains(err.Error(), "object_store: no bucket configured") {
		t.Errorf("default config validates: %v", err)
	}
}

func TestLoadConfig(t *testing.T) {
	cfg := loadConfig(t, "")
	if cfg.BucketDir != "/var/lib/bucketq" {
		t.Errorf("bucket_dir = %q", cfg.BucketDir)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}

	cfg = loadConfig(t, "s3")
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	want := producer.Config{DataPrefix: "queue/data", FlushInterval: time.Second, MinSealInterval: 500 * time.Millisecond,
		FlushSizeBytes: 8 << 20, Compression: "none", MaxBufferedBytes: 64 << 20, GCGracePeriod: 20 * time.Minute, FormatVersion: 1,
		PipelineDepth: producer.DefaultPipelineDepth} // an object store's (AutoPipelineDepth)
	if got := cfg.producerConfig(); got != want {
		t.Errorf("producer config\n got %+v\nwant %+v", got, want)
	}
	if cfg.ManifestPath != "queue/manifest" || cfg.TimeoutConfig.Timeout != 10*time.Second ||
		cfg.QueueConfig.HasValue() || cfg.RetryConfig.MaxElapsedTime != 10*time.Minute {
		t.Errorf("config %+v", cfg)
	}
	y, err := cfg.objectStoreYAML()
	if err != nil || !strings.Contains(string(y), "type: S3") || !strings.Contains(string(y), "prefix: prod") {
		t.Errorf("object_store YAML %q, %v", y, err)
	}
}

func TestMinSealIntervalAuto(t *testing.T) {
	cfg := loadConfig(t, "")
	if d, _ := cfg.minSealInterval(); d != 0 {
		t.Errorf("auto on a directory bucket = %s, want 0", d)
	}
	if d := cfg.producerConfig().PipelineDepth; d != 1 {
		t.Errorf("pipeline depth on a directory bucket = %d, want 1", d)
	}
	cfg.BucketDir, cfg.ObjectStore = "", map[string]any{"type": "S3", "config": map[string]any{"bucket": "b"}}
	if d, _ := cfg.minSealInterval(); d != producer.ObjectStoreMinSealInterval {
		t.Errorf("auto on an object store = %s, want %s", d, producer.ObjectStoreMinSealInterval)
	}
	if d := cfg.producerConfig().PipelineDepth; d != producer.DefaultPipelineDepth {
		t.Errorf("pipeline depth on an object store = %d, want %d", d, producer.DefaultPipelineDepth)
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"both", []string{"object_store: set either object_store or bucket_dir, not both"}},
		{"none", []string{"object_store: no bucket configured"}},
		{"badstore", []string{"object_store:", `type "SWIFT" has no conditional-write`}},
		{"bad", []string{
			"manifest_path: invalid object name \"/abs/manifest\"",
			"data_prefix: invalid object name \"ingest/../data\"",
			"flush_interval: must be positive",
			"flush_size_bytes: must be positive",
			"min_seal_interval: invalid value \"soon\"",
			"compression: invalid value \"gzip\"",
			"max_buffered_bytes: must be positive",
			"gc_grace_period: must be positive",
			"format_version: invalid value 3",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := confmap.Validate(loadConfig(t, tc.name))
			if err == nil {
				t.Fatal("validates")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestValidateOddValues: empty, traversing and odd values of each key are
// refused by Validate with an error naming the key (or, where the value is
// legal, accepted with the stated meaning).
func TestValidateOddValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys map[string]any
		want string // "" = valid
	}{
		{"manifest_path dot-dot", map[string]any{"manifest_path": "../manifest"}, `manifest_path: invalid object name "../manifest"`},
		{"manifest_path inner dot-dot", map[string]any{"manifest_path": "ingest/../../manifest"}, "manifest_path: invalid object name"},
		{"manifest_path empty", map[string]any{"manifest_path": ""}, "manifest_path:"},
		{"manifest_path trailing slash", map[string]any{"manifest_path": "ingest/"}, "manifest_path:"},
		{"manifest_path is data_prefix", map[string]any{"manifest_path": "q", "data_prefix": "q/"}, `data_prefix: "q" is the manifest_path`},
		{"data_prefix empty", map[string]any{"data_prefix": ""}, "data_prefix:"},
		{"data_prefix dot-dot", map[string]any{"data_prefix": "../data"}, "data_prefix: invalid object name"},
		{"data_prefix only slash", map[string]any{"data_prefix": "/"}, "data_prefix:"},
		{"compression empty", map[string]any{"compression": ""}, `compression: invalid value ""`},
		{"compression upper case", map[string]any{"compression": "ZSTD"}, `compression: invalid value "ZSTD"`},
		{"compression none", map[string]any{"compression": "none"}, ""},
		{"timeout negative", map[string]any{"timeout": "-1s"}, "timeout: must not be negative"},
		{"timeout zero means none", map[string]any{"timeout": "0s"}, ""},
		{"flush_interval negative", map[string]any{"flush_interval": "-1s"}, "flush_interval: must be positive"},
		{"min_seal_interval negative", map[string]any{"min_seal_interval": "-1s"}, `min_seal_interval: invalid value "-1s"`},
		{"min_seal_interval zero", map[string]any{"min_seal_interval": "0s"}, ""},
		{"gc_grace_period negative", map[string]any{"gc_grace_period": "-10m"}, "gc_grace_period: must be positive"},
		{"max_buffered_bytes negative", map[string]any{"max_buffered_bytes": -1}, "max_buffered_bytes: must be positive"},
		{"object_store without type", map[string]any{"bucket_dir": "", "object_store": map[string]any{"config": map[string]any{"bucket": "b"}}}, "object_store:"},
		{"object_store empty", map[string]any{"bucket_dir": "", "object_store": map[string]any{}}, "object_store:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := map[string]any{"bucket_dir": "/var/lib/bucketq"}
			for k, v := range tc.keys {
				raw[k] = v
			}
			if v, ok := raw["bucket_dir"]; ok && v == "" {
				delete(raw, "bucket_dir")
			}
			cfg := NewFactory().CreateDefaultConfig().(*Config)
			if err := confmap.NewFromStringMap(raw).Unmarshal(cfg); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			err := confmap.Validate(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("validates, want an error containing %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q\ndoes not contain %q", err, tc.want)
			}
		})
	}
}
