package consumer

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bucketq/bucketq/producer"
)

// A process running both roles registers the producer's and the consumer's
// metrics on one registry: buffer_manifest_writes is shared, by role.
func TestMetricsShareOneRegistryWithTheProducer(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	pm := producer.NewMetrics(reg)
	cm := NewMetrics(reg)
	again := NewMetrics(reg) // a second registration reuses the collectors
	pm.ManifestWrites.Inc()
	cm.ManifestWrites.Add(2)
	again.ManifestWrites.Inc()
	again.Acks.Inc()
	if got := testutil.ToFloat64(cm.Acks); got != 1 {
		t.Fatalf("buffer_acks = %v through the first Metrics, want 1", got)
	}
	n, err := testutil.GatherAndCount(reg, "buffer_manifest_writes")
	if err != nil || n != 2 {
		t.Fatalf("buffer_manifest_writes has %d series (err %v), want 2 (producer, consumer)", n, err)
	}
	if got := testutil.ToFloat64(cm.ManifestWrites); got != 3 {
		t.Fatalf("consumer manifest writes = %v, want 3", got)
	}
	if got := testutil.ToFloat64(pm.ManifestWrites); got != 1 {
		t.Fatalf("producer manifest writes = %v, want 1", got)
	}
}

func TestNewMetricsNilRegistererWorks(t *testing.T) {
	t.Parallel()
	m := NewMetrics(nil)
	m.SetPointsSkippedNoValueSource(func() uint64 { return 7 })
	if got := testutil.ToFloat64(m.PointsSkippedNoValue); got != 7 {
		t.Fatalf("points skipped = %v, want 7", got)
	}
}
