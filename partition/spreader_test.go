package partition

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
	"github.com/bucketq/bucketq/producer"
)

// fakeProducer commits each Append with one conditional write on its
// partition's manifest, through the store the spreader gave it.
type fakeProducer struct {
	p      int
	store  cas.Store
	fail   error // returned by every Append when set
	mu     sync.Mutex
	calls  int
	closed bool
}

func (f *fakeProducer) Append(ctx context.Context, _ format.Header, _ [][]byte) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	// Retry conflicts like manifest.Queue does: the spreader sees each.
	name := base.Partition(f.p).Manifest
	for {
		_, v, err := f.store.Read(ctx, name)
		if err != nil && !errors.Is(err, cas.ErrNotExist) {
			return err
		}
		if _, err = f.store.WriteIf(ctx, name, []byte("x"), v); !errors.Is(err, cas.ErrConflict) {
			return err
		}
	}
}
func (f *fakeProducer) Drain()                      {}
func (f *fakeProducer) Close(context.Context) error { f.closed = true; return nil }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_000_000, 0)} }
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestSpreader(t *testing.T, cfg SpreaderConfig, store cas.Store, fail map[int]error) (*Spreader, map[int]*fakeProducer, *[]string) {
	t.Helper()
	prods := map[int]*fakeProducer{}
	var moves []string
	s, err := NewSpreader(cfg, store, func(p int, st cas.Store) (Producer, error) {
		f := &fakeProducer{p: p, store: st, fail: fail[p]}
		prods[p] = f
		return f, nil
	}, func(from, to int, why string) { moves = append(moves, itoa(from)+"->"+itoa(to)+": "+why) })
	if err != nil {
		t.Fatal(err)
	}
	return s, prods, &moves
}

func appendN(t *testing.T, s *Spreader, n int) (errs int) {
	t.Helper()
	for range n {
		if err := s.Append(context.Background(), format.Header{}, [][]byte{[]byte("r")}); err != nil {
			errs++
		}
	}
	return errs
}

func TestSpreaderSticky(t *testing.T) {
	s, prods, moves := newTestSpreader(t, SpreaderConfig{Partitions: 4, Home: 2}, memstore.New(), nil)
	if errs := appendN(t, s, 50); errs != 0 {
		t.Fatalf("%d appends failed", errs)
	}
	if len(prods) != 1 || prods[2] == nil || prods[2].calls != 50 {
		t.Fatalf("want every append on partition 2 and no other producer built, got %v", prods)
	}
	if len(*moves) != 0 {
		t.Fatalf("moved without cause: %v", *moves)
	}
	if err := s.Close(context.Background()); err != nil || !prods[2].closed {
		t.Fatalf("Close = %v, closed %v", err, prods[2].closed)
	}
	if err := s.Append(context.Background(), format.Header{}, nil); !errors.Is(err, producer.ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
}

func TestSpreaderAutoHome(t *testing.T) {
	s, _, _ := newTestSpreader(t, SpreaderConfig{Partitions: 8, Home: -1, HomeKey: "ingest-7"}, memstore.New(), nil)
	if got, want := s.Home(), HomeFor("ingest-7", 8); got != want {
		t.Fatalf("Home = %d, want %d", got, want)
	}
}

func TestSpreaderFallOverOnError(t *testing.T) {
	boom := errors.New("store unavailable")
	s, prods, moves := newTestSpreader(t, SpreaderConfig{Partitions: 3, Home: 0}, memstore.New(), map[int]error{0: boom})
	// The first append fails on partition 0 and moves the home; the rest
	// go to a healthy partition. Back-pressure does not move it.
	if errs := appendN(t, s, 10); errs != 1 {
		t.Fatalf("%d appends failed, want exactly the first", errs)
	}
	if h := s.Home(); h == 0 {
		t.Fatal("home still on the failing partition")
	}
	if len(*moves) != 1 || !strings.Contains((*moves)[0], "store unavailable") {
		t.Fatalf("moves = %v", *moves)
	}
	if prods[s.Home()].calls != 9 {
		t.Fatalf("new home got %d appends, want 9", prods[s.Home()].calls)
	}

	bp, _, bmoves := newTestSpreader(t, SpreaderConfig{Partitions: 3, Home: 1}, memstore.New(), map[int]error{1: producer.ErrBackpressure})
	appendN(t, bp, 5)
	if bp.Home() != 1 || len(*bmoves) != 0 {
		t.Fatalf("back-pressure moved the home: %v", *bmoves)
	}
}

func TestSpreaderFallOverOnConflicts(t *testing.T) {
	store := memstore.New()
	hot := base.Partition(1).Manifest
	var mu sync.Mutex
	refuse := true
	// Partition 1 refuses every other write, as a manifest shared with
	// another busy producer would.
	n := 0
	store.BeforeWrite = func(name string) error {
		mu.Lock()
		defer mu.Unlock()
		if name == hot && refuse {
			n++
			if n%2 == 0 {
				return cas.ErrConflict
			}
		}
		return nil
	}
	clk := newClock()
	s, _, moves := newTestSpreader(t, SpreaderConfig{Partitions: 2, Home: 1, MinWrites: 10, MaxConflictRatio: 0.3, MinStay: time.Minute}, store, nil)
	s.now = clk.Now
	s.since = clk.Now()
	appendN(t, s, 40)
	if s.Home() != 1 {
		t.Fatal("moved before MinStay had passed")
	}
	clk.Add(time.Minute)
	appendN(t, s, 1)
	if s.Home() != 0 || len(*moves) != 1 || !strings.Contains((*moves)[0], "manifest writes refused") {
		t.Fatalf("home %d, moves %v; want a move to 0 for refusals", s.Home(), *moves)
	}
	// Partition 0 refuses nothing: it stays.
	clk.Add(time.Hour)
	appendN(t, s, 40)
	if s.Home() != 0 || len(*moves) != 1 {
		t.Fatalf("left a healthy partition: %v", *moves)
	}
}

func TestSpreaderMovesToLeastRefused(t *testing.T) {
	s, _, _ := newTestSpreader(t, SpreaderConfig{Partitions: 4, Home: 0}, memstore.New(), nil)
	s.stats[1] = partStats{writes: 10, refused: 9}
	s.stats[2] = partStats{writes: 10, refused: 1}
	s.stats[3] = partStats{writes: 10, refused: 5, errors: 1}
	s.mu.Lock()
	s.moveLocked("test")
	s.mu.Unlock()
	if s.Home() != 2 {
		t.Fatalf("moved to %d, want 2 (fewest refusals)", s.Home())
	}
}

// readyProducer is a fakeProducer with readiness: notReady is what Ready
// returns, whatever the threshold.
type readyProducer struct {
	*fakeProducer
	notReady error
}

func (r *readyProducer) Ready(time.Duration) error { return r.notReady }

func notReady(why string) error { return fmt.Errorf("%w: %s", producer.ErrNotReady, why) }

// TestSpreaderReady: a spreader is not ready only when every partition is
// failing; a partition not tried yet counts as writable, and one shutting
// down makes the whole spreader not ready.
func TestSpreaderReady(t *testing.T) {
	closing := fmt.Errorf("%w: %w", producer.ErrNotReady, producer.ErrClosed)
	for _, tc := range []struct {
		name  string
		state map[int]error // built partitions and their readiness; others not tried
		want  string        // substring of the error, "" for ready
		not   string        // must not be in the error
	}{
		{name: "nothing tried", state: nil},
		{name: "home healthy", state: map[int]error{0: nil}},
		{name: "home failing, others not tried", state: map[int]error{0: notReady("upload: denied")}},
		{name: "two failing, one not tried", state: map[int]error{0: notReady("a"), 1: notReady("b")}},
		{name: "one healthy among failing", state: map[int]error{0: notReady("a"), 1: nil, 2: notReady("c")}},
		{name: "every partition failing", state: map[int]error{0: notReady("upload: denied"), 1: notReady("manifest damaged"), 2: notReady("c")},
			want: "producer not ready: every partition failing (0, 1, 2): partition 0: upload: denied; partition 1: manifest damaged; partition 2: c",
			not:  "partition 0: producer not ready"},
		{name: "one shutting down", state: map[int]error{0: nil, 1: closing}, want: "partition 1: producer not ready: producer: shutting down"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSpreader(SpreaderConfig{Partitions: 3, Home: 0}, memstore.New(), func(p int, st cas.Store) (Producer, error) {
				return &readyProducer{fakeProducer: &fakeProducer{p: p, store: st}, notReady: tc.state[p]}, nil
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for p := range tc.state {
				if _, err := s.producerFor(p); err != nil {
					t.Fatal(err)
				}
			}
			err = s.Ready(time.Second)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Ready = %v, want ready", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, producer.ErrNotReady)):
				t.Fatalf("Ready = %v, want an ErrNotReady with %q", err, tc.want)
			case tc.not != "" && strings.Contains(err.Error(), tc.not):
				t.Fatalf("Ready = %v, must not contain %q", err, tc.not)
			}
		})
	}
	t.Run("closed", func(t *testing.T) {
		s, _, _ := newTestSpreader(t, SpreaderConfig{Partitions: 2, Home: 0}, memstore.New(), nil)
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := s.Ready(time.Second); !errors.Is(err, producer.ErrClosed) {
			t.Fatalf("Ready after Close = %v, want ErrClosed", err)
		}
	})
}

// TestSpreaderLeavesFailingHome: with FailAfter set, an Append that finds
// its home's producer not ready moves the home and commits on the new one;
// without, it waits on the home as before.
func TestSpreaderLeavesFailingHome(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failAfter time.Duration
		home0     error // readiness of partition 0, the first home
		wantOn    int   // the partition the Append went to
	}{
		{name: "home failing", failAfter: time.Second, home0: notReady("upload: denied"), wantOn: 1},
		{name: "home healthy", failAfter: time.Second, home0: nil, wantOn: 0},
		{name: "home shutting down", failAfter: time.Second, home0: fmt.Errorf("%w: %w", producer.ErrNotReady, producer.ErrClosed), wantOn: 0},
		{name: "check off", failAfter: 0, home0: notReady("upload: denied"), wantOn: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prods := map[int]*readyProducer{}
			s, err := NewSpreader(SpreaderConfig{Partitions: 2, Home: 0, FailAfter: tc.failAfter}, memstore.New(), func(p int, st cas.Store) (Producer, error) {
				r := &readyProducer{fakeProducer: &fakeProducer{p: p, store: st}}
				if p == 0 {
					r.notReady = tc.home0
				}
				prods[p] = r
				return r, nil
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Append(context.Background(), format.EventsHeader, [][]byte{[]byte("{}")}); err != nil {
				t.Fatal(err)
			}
			for p, r := range prods {
				if want := 0; p == tc.wantOn {
					want = 1
					if r.calls != want {
						t.Errorf("partition %d got %d Appends, want %d", p, r.calls, want)
					}
				} else if r.calls != want {
					t.Errorf("partition %d got %d Appends, want %d", p, r.calls, want)
				}
			}
			if prods[tc.wantOn] == nil || s.Home() != tc.wantOn {
				t.Errorf("home %d, want %d", s.Home(), tc.wantOn)
			}
		})
	}
}

// TestSpreaderReadyWhenEveryPartitionFailsInTurn: a store refusing every
// write makes each partition fail in turn while the evidence of the ones
// left behind expires (their producers look ready again), so "every
// partition failing at once" never holds; the spreader's own evidence
// still turns it not ready after threshold, an Append that commits
// anywhere clears that, and with no failure for threshold it expires.
func TestSpreaderReadyWhenEveryPartitionFailsInTurn(t *testing.T) {
	const threshold = 30 * time.Second
	denied := errors.New("upload: access denied")
	for _, tc := range []struct {
		name string
		fail map[int]error
		want string // "" for ready after the failing Appends
	}{
		{name: "every partition refuses", fail: map[int]error{0: denied, 1: denied, 2: denied, 3: denied},
			want: "no Append committed on any partition for 40s: 5 failed or left a failing partition, the last 0s ago: partition"},
		{name: "one partition refuses", fail: map[int]error{0: denied}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClock()
			s, _, _ := newTestSpreader(t, SpreaderConfig{Partitions: 4, Home: 0, FailAfter: threshold}, memstore.New(), tc.fail)
			s.now = clock.Now
			// One Append every 10 s: each fails where the partition refuses
			// and moves the home on.
			for i := range 5 {
				if i > 0 {
					clock.Add(10 * time.Second)
				}
				_ = s.Append(context.Background(), format.EventsHeader, [][]byte{[]byte("{}")})
			}
			err := s.Ready(threshold)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Ready = %v, want ready: Appends commit on the other partitions", err)
			case tc.want != "" && (err == nil || !errors.Is(err, producer.ErrNotReady) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), denied.Error())):
				t.Fatalf("Ready = %v, want an ErrNotReady with %q and the last error", err, tc.want)
			}
			if tc.want == "" {
				return
			}
			// Out of rotation, nothing tried: the evidence expires.
			clock.Add(threshold)
			if err := s.Ready(threshold); err != nil {
				t.Fatalf("Ready %s after the last failure = %v, want ready again (passive evidence expires)", threshold, err)
			}
		})
	}
	t.Run("a commit clears it", func(t *testing.T) {
		clock := newClock()
		s, prods, _ := newTestSpreader(t, SpreaderConfig{Partitions: 2, Home: 0, FailAfter: threshold}, memstore.New(), map[int]error{0: denied, 1: denied})
		s.now = clock.Now
		for range 4 {
			_ = s.Append(context.Background(), format.EventsHeader, [][]byte{[]byte("{}")})
			clock.Add(15 * time.Second)
		}
		if err := s.Ready(threshold); !errors.Is(err, producer.ErrNotReady) {
			t.Fatalf("Ready = %v, want not ready", err)
		}
		prods[s.Home()].fail = nil
		if err := s.Append(context.Background(), format.EventsHeader, [][]byte{[]byte("{}")}); err != nil {
			t.Fatal(err)
		}
		if err := s.Ready(threshold); err != nil {
			t.Fatalf("Ready after an Append committed = %v, want ready", err)
		}
	})
}
