package config

import (
	"testing"
	"time"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/producer"
)

// TestDefaultsComeFromTheLibraries: the command with no flags runs the
// producer and consumer with their libraries' defaults, and the two
// libraries agree on the keys they share.
func TestDefaultsComeFromTheLibraries(t *testing.T) {
	t.Parallel()
	c, _, err := load(t, RolesRun, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, k := producer.DefaultConfig(), consumer.DefaultConfig()
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"data_prefix (producer)", c.DataPrefix, p.DataPrefix},
		{"data_prefix (consumer)", c.DataPrefix, k.DataPrefix},
		{"manifest_path", c.ManifestPath, producer.DefaultManifestPath},
		{"dead_letter_prefix", c.DeadLetterPrefix, k.DeadLetterPrefix},
		{"flush_interval", c.FlushInterval, p.FlushInterval},
		{"flush_size_bytes", c.FlushSizeBytes, p.FlushSizeBytes},
		{"compression", c.Compression.String(), p.Compression},
		{"format_version", c.FormatVersion, p.FormatVersion},
		{"max_buffered_bytes", c.MaxBufferedBytes, p.MaxBufferedBytes},
		{"gc_grace_period (producer)", c.GCGracePeriod, p.GCGracePeriod},
		{"gc_grace_period (consumer)", c.GCGracePeriod, k.GCGracePeriod},
		{"sink_batch_size", c.SinkBatchSize, k.SinkBatchSize},
		{"prefetch", c.Prefetch, k.Prefetch},
		{"poll_interval", c.PollInterval, k.PollInterval},
		{"dequeue_interval", c.DequeueInterval, k.DequeueInterval},
		{"max_consecutive_poison", c.MaxConsecutivePoison, k.MaxConsecutivePoison},
		{"gc_interval", c.GCInterval, k.GCInterval},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: command default %v, library default %v", tc.key, tc.got, tc.want)
		}
	}
}

func TestDurationDefault(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		250 * time.Millisecond: "250ms", time.Second: "1s", 5 * time.Minute: "5m", 10 * time.Minute: "10m",
		90 * time.Second: "1m30s", 2 * time.Hour: "2h", 150 * time.Minute: "2h30m",
	} {
		if got := durationDefault(d); got != want {
			t.Errorf("durationDefault(%v) = %q, want %q", d, got, want)
		}
	}
}
