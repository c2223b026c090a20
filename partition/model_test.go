package partition

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
	"github.com/bucketq/bucketq/manifest/cas/s3store"
	"github.com/bucketq/bucketq/producer"
)

func TestPartitionModelMem(t *testing.T) {
	if testing.Short() {
		t.Skip("model test")
	}
	runPartitionModel(t, memstore.New(), 6*time.Second)
}

// TestPartitionModelS3 keeps the manifests and the lease table on the real
// S3 test server (batch bytes stay in memory: the protocol is what is
// under test).
func TestPartitionModelS3(t *testing.T) {
	if testing.Short() {
		t.Skip("model test")
	}
	st, err := s3store.New(storetest.S3Config(t))
	if err != nil {
		t.Fatal(err)
	}
	runPartitionModel(t, st, 8*time.Second)
}

// flakyStore fails writes to one object while on (fall-over food).
type flakyStore struct {
	cas.Store
	name string
	on   atomic.Bool
}

func (f *flakyStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	if name == f.name && f.on.Load() {
		return "", errors.New("injected: 500 InternalError")
	}
	return f.Store.WriteIf(ctx, name, data, v)
}

// partitionModel records what the producers were told and what the
// consumers delivered.
type partitionModel struct {
	mu        sync.Mutex
	acked     map[string]bool
	delivered map[string]int
	ranBy     map[int]map[string]bool // partition → members that ran it
}

// runPartitionModel: 4 partitions, 3 producer processes (spreaders over real
// producers) and 2 consumer processes (lease managers with a consumer per
// held partition, fencing as consumer.Run does) of which one at a time is
// SIGKILLed (its bucket access cut mid-flight, nothing released) and
// replaced. Partition 1 fails every producer write for a while, so its
// producer must fall over. At the end the manifests must drain and every
// acknowledged record must have been delivered.
func runPartitionModel(t *testing.T, store cas.Store, chaosFor time.Duration) {
	const parts, producers = 4, 3
	layout := Layout{Manifest: "ingest/manifest", Data: "ingest/data", DeadLetter: "ingest/dead-letter"}
	bkt := objstore.NewInMemBucket()
	md := &partitionModel{acked: map[string]bool{}, delivered: map[string]int{}, ranBy: map[int]map[string]bool{}}
	quiet := slog.New(slog.DiscardHandler)
	flaky := &flakyStore{Store: store, name: layout.Partition(1).Manifest}
	flaky.on.Store(true)
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)

	// Consumer processes.
	type proc struct {
		m      *Manager
		dead   *atomic.Bool
		cancel context.CancelFunc
		done   chan error
	}
	runner := func(id string, st cas.Store) Runner {
		return func(ctx context.Context, p int) error {
			md.mu.Lock()
			if md.ranBy[p] == nil {
				md.ranBy[p] = map[string]bool{}
			}
			md.ranBy[p][id] = true
			md.mu.Unlock()
			q := manifest.NewQueue(st, layout.Partition(p).Manifest, manifest.Options{MaxBackoff: 50 * time.Millisecond, RetryTimeout: 2 * time.Second})
			lease, err := q.Fence(ctx)
			if err != nil {
				return nil // cut off or stopped; the manager retries
			}
			for ctx.Err() == nil {
				m, err := lease.Read(ctx)
				if errors.Is(err, manifest.ErrFenced) {
					return err
				}
				if err != nil || len(m.Entries) == 0 {
					sleepCtx(ctx, 10*time.Millisecond)
					continue
				}
				for _, e := range m.Entries {
					rc, err := bkt.Get(ctx, e.Location)
					if err != nil {
						t.Errorf("partition %d: committed batch %s unreadable: %v", p, e.Location, err)
						return nil
					}
					b, _ := io.ReadAll(rc)
					rc.Close()
					batch, err := format.DecodeBatch(b)
					if err != nil {
						t.Errorf("batch %s: %v", e.Location, err)
						return nil
					}
					md.mu.Lock()
					for _, rec := range batch.Records {
						md.delivered[string(rec)]++
					}
					md.mu.Unlock()
				}
				if _, err := lease.Dequeue(ctx, m.Entries[len(m.Entries)-1].Sequence); errors.Is(err, manifest.ErrFenced) {
					return err
				}
			}
			return nil
		}
	}
	nextID := 0
	start := func() *proc {
		nextID++
		id := fmt.Sprintf("consumer-%d", nextID)
		dead := &atomic.Bool{}
		st := &deadStore{Store: store, dead: dead}
		m, err := NewManager(st, ManagerConfig{Partitions: parts, Table: LeasePath(layout.Manifest), ID: id, Timeout: 2 * time.Second}, runner(id, st), nil, quiet)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		pr := &proc{m: m, dead: dead, cancel: cancel, done: make(chan error, 1)}
		go func() { pr.done <- m.Run(ctx) }()
		return pr
	}
	cons := []*proc{start(), start()}

	// Producer processes, appending until the chaos ends.
	var wg sync.WaitGroup
	stopProducing := make(chan struct{})
	attempted := atomic.Int64{}
	spreaders := make([]*Spreader, producers)
	for i := range producers {
		s, err := NewSpreader(SpreaderConfig{Partitions: parts, Home: i, MinWrites: 5, MinStay: 100 * time.Millisecond}, flaky, func(p int, st cas.Store) (Producer, error) {
			q := manifest.NewQueue(st, layout.Partition(p).Manifest, manifest.Options{MaxBackoff: 50 * time.Millisecond, RetryTimeout: 500 * time.Millisecond})
			return producer.New(bkt, q, producer.Config{DataPrefix: layout.Partition(p).Data, FlushInterval: 20 * time.Millisecond, Compression: "none", CommitTimeout: time.Second}, nil, quiet)
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		spreaders[i] = s
		for a := range 4 {
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stopProducing:
						return
					case <-time.After(5 * time.Millisecond):
					}
					rec := fmt.Sprintf("p%d-a%d-%d", i, a, n)
					attempted.Add(1)
					for try := 0; try < 20; try++ {
						if err := s.Append(context.Background(), format.Header{}, [][]byte{[]byte(rec)}); err == nil {
							md.mu.Lock()
							md.acked[rec] = true
							md.mu.Unlock()
							break
						}
					}
				}
			})
		}
	}
	producing := time.After(chaosFor)

	// Chaos: kill one consumer process at a time and start a new one.
	kills := 0
	heal := time.After(time.Second)
loop:
	for {
		select {
		case <-producing:
			close(stopProducing)
			wg.Wait()
			break loop
		case <-heal:
			flaky.on.Store(false)
		case <-time.After(time.Duration(500+r.IntN(1000)) * time.Millisecond):
			i := r.IntN(len(cons))
			cons[i].dead.Store(true) // SIGKILL: nothing it does reaches the bucket
			cons[i].cancel()
			<-cons[i].done
			cons[i] = start()
			kills++
		}
	}
	flaky.on.Store(false)
	for _, s := range spreaders {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("producer close: %v", err)
		}
	}

	// The survivors drain every manifest.
	deadline := time.Now().Add(60 * time.Second)
	for {
		empty := 0
		for p := range parts {
			m, err := manifest.NewQueue(store, layout.Partition(p).Manifest, manifest.Options{}).Read(context.Background())
			if err == nil && len(m.Entries) == 0 {
				empty++
			}
		}
		if empty == parts {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("manifests not drained: %d of %d empty", empty, parts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range cons {
		c.cancel()
		<-c.done
	}

	md.mu.Lock()
	defer md.mu.Unlock()
	lost, dups := 0, 0
	for rec := range md.acked {
		if md.delivered[rec] == 0 {
			lost++
			if lost < 10 {
				t.Errorf("acked record %s was never delivered: LOST", rec)
			}
		}
	}
	for _, n := range md.delivered {
		if n > 1 {
			dups += n - 1
		}
	}
	moved := 0
	for p := range parts {
		if len(md.ranBy[p]) > 1 {
			moved++
		}
	}
	moves := uint64(0)
	for _, s := range spreaders {
		moves += s.Moves()
	}
	t.Logf("acked %d, delivered %d distinct (%d redelivered), %d consumer kills, partitions that changed consumer %d/%d, producer fall-overs %d",
		len(md.acked), len(md.delivered), dups, kills, moved, parts, moves)
	switch {
	case lost > 0:
		t.Fatalf("%d acked records lost", lost)
	case len(md.acked) < int(attempted.Load())*9/10:
		t.Fatalf("only %d of %d appends acked: the test proved little", len(md.acked), attempted.Load())
	case kills == 0 || moved == 0:
		t.Fatalf("no lease moved (%d kills)", kills)
	case spreaders[1].Moves() == 0:
		t.Fatal("producer 1 never fell over from its failing partition")
	}
}
