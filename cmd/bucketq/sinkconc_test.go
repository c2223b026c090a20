package main

import (
	"testing"

	"github.com/bucketq/bucketq/cmd/bucketq/internal/config"
	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/sink"
)

// TestSinkConcurrencyWiring: sink_concurrency reaches the consumer, and the
// documented adaptive cap is the consumer's and the keep-alive pool's.
func TestSinkConcurrencyWiring(t *testing.T) {
	if config.MaxAdaptiveSinkConcurrency != consumer.DefaultMaxSinkConcurrency || sink.DefaultIdleConnsPerHost != consumer.DefaultMaxSinkConcurrency {
		t.Fatalf("adaptive cap: config %d, consumer %d, sink pool %d", config.MaxAdaptiveSinkConcurrency, consumer.DefaultMaxSinkConcurrency, sink.DefaultIdleConnsPerHost)
	}
	for _, n := range []int{0, 1, 7} {
		if got := consumerConfig(&config.Config{SinkConcurrency: n}).SinkConcurrency; got != n {
			t.Fatalf("sink_concurrency %d reaches the consumer as %d", n, got)
		}
	}
}
