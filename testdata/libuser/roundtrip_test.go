// Package libuser is another program's view of bucketq: only public
// packages, its own registry.
package libuser

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/consumer"
	"github.com/bucketq/bucketq/consumer/convert"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
	"github.com/bucketq/bucketq/producer"
)

// collect is this program's sink: it keeps what it is sent.
type collect struct {
	mu     sync.Mutex
	events []json.RawMessage
	got    chan struct{}
	want   int
}

func (c *collect) Send(_ context.Context, evs []json.RawMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, evs...)
	if len(c.events) >= c.want {
		select {
		case <-c.got:
		default:
			close(c.got)
		}
	}
	return nil
}

func (c *collect) Close() error { return nil }

// TestProduceConsumeRoundTrip: events appended by a producer are delivered
// by a consumer to this program's sink, dequeued, and counted on this
// program's registry under the names the README lists.
func TestProduceConsumeRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bkt := objstore.NewInMemBucket()
	store := memstore.New()
	reg := prometheus.NewRegistry()

	pm := producer.NewMetrics(reg)
	q := manifest.NewQueue(store, producer.DefaultManifestPath, producer.QueueOptions(pm))
	p, err := producer.New(bkt, q, producer.DefaultConfig(), pm, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	for i := range n {
		ev := fmt.Sprintf(`{"specversion":"1.0","id":"ev-%d","source":"libuser","type":"api-calls","subject":"customer-1"}`, i)
		if err := p.Append(ctx, format.EventsHeader, [][]byte{[]byte(ev)}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}

	cm := consumer.NewMetrics(reg)
	cq := manifest.NewQueue(store, producer.DefaultManifestPath, consumer.QueueOptions(cm))
	reg2 := convert.NewRegistry()
	reg2.Register(format.SignalEvents, format.EncodingCloudEventsJSON, convert.PassThrough{})
	snk := &collect{got: make(chan struct{}), want: n}
	cfg := consumer.DefaultConfig()
	cfg.PollInterval, cfg.DequeueInterval, cfg.DisableGC = 10*time.Millisecond, 10*time.Millisecond, true
	c, err := consumer.New(bkt, cq, reg2, snk, cfg, cm, nil)
	if err != nil {
		t.Fatal(err)
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(cctx) }()
	select {
	case <-snk.got:
	case <-ctx.Done():
		t.Fatalf("delivered %d of %d events", len(snk.events), n)
	}
	// Wait for the dequeue: the queue runs empty.
	for {
		m, err := cq.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Entries) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d entries left in the queue", len(m.Entries))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	ids := map[string]bool{}
	for _, ev := range snk.events {
		var e struct{ ID string }
		if err := json.Unmarshal(ev, &e); err != nil {
			t.Fatal(err)
		}
		ids[e.ID] = true
	}
	if len(ids) != n {
		t.Fatalf("distinct events %d, want %d", len(ids), n)
	}
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		min  float64
	}{
		{"batch_sent", pm.BatchSent, 1},
		{"producer_upload_failures", pm.UploadFailures, 0},
		{"buffer_batches_collected", cm.BatchesCollected, 1},
		{"buffer_acks", cm.Acks, 1},
	} {
		if v := testutil.ToFloat64(tc.c); v < tc.min {
			t.Errorf("%s = %v, want >= %v", tc.name, v, tc.min)
		}
	}
	if v := testutil.ToFloat64(cm.SinkEvents.WithLabelValues("sent")); v != n {
		t.Errorf("sink_events{result=sent} = %v, want %d", v, n)
	}
	// Both components' collectors are on this registry, by the names the
	// README lists, the shared manifest counter labelled by component.
	count, err := testutil.GatherAndCount(reg, "batch_sent", "buffer_acks", "sink_events", "buffer_manifest_writes")
	if err != nil {
		t.Fatal(err)
	}
	if count < 4 {
		t.Fatalf("%d of the expected series gathered from the program's registry", count)
	}
}
