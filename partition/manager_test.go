package partition

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

const leaseTable = "ingest/manifest.leases"

func newTestManager(t *testing.T, store cas.Store, id string, n int, clk *fakeClock) *Manager {
	t.Helper()
	m, err := NewManager(store, ManagerConfig{Partitions: n, Table: leaseTable, ID: id, Timeout: 20 * time.Second},
		func(ctx context.Context, p int) error { <-ctx.Done(); return nil }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if clk != nil {
		m.now = clk.Now
	}
	return m
}

func tick(t *testing.T, ms ...*Manager) {
	t.Helper()
	for _, m := range ms {
		if err := m.tick(context.Background()); err != nil {
			t.Fatalf("%s: tick: %v", m.ID(), err)
		}
	}
}

func readTable(t *testing.T, store cas.Store) *table {
	t.Helper()
	b, _, err := store.Read(context.Background(), leaseTable)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := decodeTable(b)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// checkCover asserts that the managers hold disjoint sets covering 0..n-1.
func checkCover(t *testing.T, n int, ms ...*Manager) {
	t.Helper()
	owner := map[int]string{}
	for _, m := range ms {
		for _, p := range m.Held() {
			if o, ok := owner[p]; ok {
				t.Fatalf("partition %d held by %s and %s", p, o, m.ID())
			}
			owner[p] = m.ID()
		}
	}
	if len(owner) != n {
		t.Fatalf("held partitions %v, want all %d", owner, n)
	}
}

func TestLeaseAcquire(t *testing.T) {
	store := memstore.New()
	a := newTestManager(t, store, "a", 4, newClock())
	tick(t, a)
	if got := a.Held(); !slices.Equal(got, []int{0, 1, 2, 3}) {
		t.Fatalf("held %v, want all", got)
	}
	tb := readTable(t, store)
	if !slices.Equal(tb.Owners, []string{"a", "a", "a", "a"}) || tb.Members["a"].Beat != 1 {
		t.Fatalf("table %+v", tb)
	}
}

func TestLeaseRenewAndBalance(t *testing.T) {
	store := memstore.New()
	clk := newClock()
	a := newTestManager(t, store, "a", 4, clk)
	b := newTestManager(t, store, "b", 4, clk)
	tick(t, a, b) // a takes all; b joins, sees everything owned
	if len(b.Held()) != 0 {
		t.Fatalf("b took %v from a live owner", b.Held())
	}
	tick(t, a, b) // a sees b, keeps its share 0 and 1, hands over 2 and 3; b claims them
	if !slices.Equal(a.Held(), []int{0, 1}) || !slices.Equal(b.Held(), []int{2, 3}) {
		t.Fatalf("a %v, b %v; want [0 1] and [2 3]", a.Held(), b.Held())
	}
	// Renewals: both keep ticking for a long time, nothing moves.
	for range 20 {
		clk.Add(5 * time.Second)
		tick(t, a, b)
		checkCover(t, 4, a, b)
		if len(a.Held()) != 2 {
			t.Fatalf("moved while both renew: a %v b %v", a.Held(), b.Held())
		}
	}
	if beat := readTable(t, store).Members["a"].Beat; beat != 22 {
		t.Fatalf("a's beat %d, want 22 (one per write)", beat)
	}
}

func TestLeaseExpire(t *testing.T) {
	store := memstore.New()
	clk := newClock()
	a := newTestManager(t, store, "a", 4, clk)
	b := newTestManager(t, store, "b", 4, clk)
	tick(t, a, b, a, b)
	checkCover(t, 4, a, b)
	// b dies: no more beats. a saw b's last beat change at its last
	// tick; before a full timeout since then it takes nothing.
	clk.Add(5 * time.Second)
	tick(t, a)
	clk.Add(19 * time.Second)
	tick(t, a)
	if len(a.Held()) != 2 {
		t.Fatalf("a took b's partitions before the timeout: %v", a.Held())
	}
	clk.Add(time.Second) // 20s since a saw b's beat last move
	tick(t, a)
	if !slices.Equal(a.Held(), []int{0, 1, 2, 3}) {
		t.Fatalf("after the timeout a holds %v, want all", a.Held())
	}
	if _, ok := readTable(t, store).Members["b"]; ok {
		t.Fatal("dead member b still in the table")
	}
}

func TestLeaseStealFromCrashedProcess(t *testing.T) {
	store := memstore.New()
	clk := newClock()
	old := newTestManager(t, store, "old", 3, clk)
	tick(t, old) // holds all, then the process is SIGKILLed
	// A new process's first sight of old's beat starts the clock: the
	// lease is only taken a full Timeout later, whatever the wall clock.
	clk.Add(time.Hour)
	n := newTestManager(t, store, "new", 3, clk)
	tick(t, n)
	if len(n.Held()) != 0 {
		t.Fatalf("stole %v without observing a full timeout", n.Held())
	}
	clk.Add(20 * time.Second)
	tick(t, n)
	if !slices.Equal(n.Held(), []int{0, 1, 2}) {
		t.Fatalf("holds %v, want all", n.Held())
	}
	// The old process comes back (a long GC pause): its write conflicts
	// or shows it that it holds nothing.
	tick(t, old)
	if len(old.Held()) != 0 && len(n.Held()) != 0 {
		t.Fatalf("two owners after the pause: old %v new %v", old.Held(), n.Held())
	}
}

func TestLeaseSelfFence(t *testing.T) {
	store := memstore.New()
	clk := newClock()
	a := newTestManager(t, store, "a", 2, clk)
	tick(t, a)
	down := errors.New("503 SlowDown")
	store.BeforeWrite = func(string) error { return down }
	clk.Add(5 * time.Second)
	if err := a.tick(context.Background()); !errors.Is(err, down) || len(a.Held()) != 2 {
		t.Fatalf("tick = %v, held %v; want the error and the leases kept", err, a.Held())
	}
	clk.Add(5 * time.Second) // half the timeout since the last write
	_ = a.tick(context.Background())
	if len(a.Held()) != 0 {
		t.Fatalf("still runs %v after half the timeout without renewing", a.Held())
	}
}

func TestLeaseTableGrows(t *testing.T) {
	store := memstore.New()
	clk := newClock()
	a := newTestManager(t, store, "a", 2, clk)
	tick(t, a)
	b := newTestManager(t, store, "a2", 4, clk) // restarted with partitions: 4
	a2 := b
	clk.Add(time.Minute)
	tick(t, a2)
	tick(t, a2)
	// "a" never renewed after a2 first saw it: gone after the timeout.
	clk.Add(20 * time.Second)
	tick(t, a2)
	if !slices.Equal(a2.Held(), []int{0, 1, 2, 3}) {
		t.Fatalf("held %v", a2.Held())
	}
	if got := len(readTable(t, store).Owners); got != 4 {
		t.Fatalf("table has %d owners, want 4", got)
	}
}

// TestManagerRun runs two managers with real runners in a synctest bubble:
// every partition has exactly one runner at a time, a stopped manager's
// partitions move at once (it leaves the table), a killed one's after the
// lease timeout.
func TestManagerRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New()
		var mu sync.Mutex
		running := map[int][]string{} // partition → runners now
		maxConc := 0
		runner := func(id string) Runner {
			return func(ctx context.Context, p int) error {
				mu.Lock()
				running[p] = append(running[p], id)
				maxConc = max(maxConc, len(running[p]))
				mu.Unlock()
				<-ctx.Done()
				mu.Lock()
				running[p] = slices.DeleteFunc(running[p], func(s string) bool { return s == id })
				mu.Unlock()
				return nil
			}
		}
		start := func(id string, kill *atomic.Bool) (context.CancelFunc, chan error) {
			st := &deadStore{Store: store, dead: kill}
			m, err := NewManager(st, ManagerConfig{Partitions: 4, Table: leaseTable, ID: id, Timeout: 20 * time.Second}, runner(id), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			return cancel, done
		}
		snapshot := func() string {
			mu.Lock()
			defer mu.Unlock()
			return fmt.Sprint(running)
		}
		var killA, killB atomic.Bool // never set: a and b stop cleanly
		stopA, doneA := start("a", &killA)
		time.Sleep(time.Second)
		stopB, doneB := start("b", &killB)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := snapshot(); got != "map[0:[a] 1:[a] 2:[b] 3:[b]]" {
			t.Fatalf("balanced runners = %s", got)
		}
		// b stops cleanly: a runs all within one renewal.
		stopB()
		<-doneB
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if got := snapshot(); got != "map[0:[a] 1:[a] 2:[a] 3:[a]]" {
			t.Fatalf("after b left: %s", got)
		}
		// c joins, then is killed (SIGKILL: it reaches the bucket no more).
		var killC atomic.Bool
		stopC, doneC := start("c", &killC)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := snapshot(); got != "map[0:[a] 1:[a] 2:[c] 3:[c]]" {
			t.Fatalf("with c: %s", got)
		}
		killC.Store(true)
		// c's runners stop on its own (it cannot renew), and a takes
		// them after the lease timeout.
		time.Sleep(25 * time.Second)
		synctest.Wait()
		if got := snapshot(); got != "map[0:[a] 1:[a] 2:[a] 3:[a]]" {
			t.Fatalf("after c was killed: %s", got)
		}
		if maxConc != 1 {
			t.Fatalf("a partition had %d runners at once", maxConc)
		}
		stopC()
		<-doneC
		stopA()
		<-doneA
	})
}

// deadStore fails every operation once *dead is set (a killed process).
type deadStore struct {
	cas.Store
	dead *atomic.Bool
}

var errKilled = errors.New("process killed")

func (d *deadStore) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	if d.dead.Load() {
		return nil, "", errKilled
	}
	return d.Store.Read(ctx, name)
}

func (d *deadStore) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	if d.dead.Load() {
		return "", errKilled
	}
	return d.Store.WriteIf(ctx, name, data, v)
}

func FuzzDecodeTable(f *testing.F) {
	f.Add([]byte(`{"version":1,"members":{"a":{"beat":3}},"owners":["a",""]}`))
	f.Add([]byte(`{"version":1,"members":{},"owners":["x"]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"members":{"":{"beat":1}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tb, err := decodeTable(b)
		if err != nil {
			return
		}
		again, err := decodeTable(tb.encode())
		if err != nil {
			t.Fatalf("re-decoding an encoded table: %v", err)
		}
		if fmt.Sprint(again) != fmt.Sprint(tb) {
			t.Fatalf("round trip changed the table: %v → %v", tb, again)
		}
	})
}
