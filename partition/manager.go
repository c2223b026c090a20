package partition

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
)

// Runner delivers partition p until ctx ends (nil) or it is fenced (an
// error wrapping manifest.ErrFenced). consumer.Consumer.Run on partition p's
// queue is the runner of the bucketq command.
type Runner func(ctx context.Context, p int) error

// ManagerConfig tunes a Manager. Zero fields take their defaults.
type ManagerConfig struct {
	// Partitions is the partition count (default 1).
	Partitions int
	// Table is the lease table object, LeasePath(partition 0's manifest).
	Table string
	// ID names this consumer in the table; default host/pid/random, new
	// for every process so a restarted consumer is a new member.
	ID string
	// Timeout is how long a member's heartbeat may stand still, on an
	// observer's clock, before its partitions are taken. Default 20s.
	Timeout time.Duration
	// Renew is the heartbeat period, one table write each. Default
	// Timeout/4.
	Renew time.Duration
}

func (c *ManagerConfig) defaults() {
	if c.Partitions <= 0 {
		c.Partitions = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 20 * time.Second
	}
	if c.Renew <= 0 {
		c.Renew = c.Timeout / 4
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.ID = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
}

// seen is what this manager last observed of another member.
type seen struct {
	beat    uint64
	changed time.Time // local clock: when beat last changed
}

// runner is one partition's running Runner.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // valid once done is closed
}

// Manager holds partition leases for one consumer process and runs a
// Runner for each partition it holds.
//
// Every Renew it reads the lease table, raises its own heartbeat, drops
// members whose heartbeat has not moved for Timeout (by its own clock since
// it first saw that value), frees their partitions, and balances with
// assign: a partition stays with its live owner while that owner holds no
// more than its share, the others go to the live members holding fewest. It claims a partition only when the table shows it free, and
// frees one it should give away only after its runner has stopped (the
// runner's final dequeue spares the next owner redelivery), all in one
// conditional write. A manager that cannot write the table for Timeout/2
// stops its runners: the others will take its partitions after Timeout.
type Manager struct {
	store cas.Store
	cfg   ManagerConfig
	run   Runner
	log   *slog.Logger
	now   func() time.Time
	m     *Metrics

	mu        sync.Mutex
	others    map[string]seen
	held      []int // partitions the last written table gave us
	lastWrite time.Time
	running   map[int]*runner
	pause     map[int]time.Time // partition p not restarted before
	want      map[int]bool      // partitions the last tick's assignment gives us
	wider     int               // the larger table size last warned about
}

// NewManager returns a manager; Run starts it. m may be nil.
func NewManager(store cas.Store, cfg ManagerConfig, run Runner, m *Metrics, log *slog.Logger) (*Manager, error) {
	cfg.defaults()
	switch {
	case store == nil || run == nil:
		return nil, errors.New("partition: nil store or runner")
	case cfg.Table == "":
		return nil, errors.New("partition: ManagerConfig.Table is empty")
	case cfg.Partitions > MaxPartitions:
		return nil, fmt.Errorf("partition: Partitions %d above %d", cfg.Partitions, MaxPartitions)
	case cfg.Renew >= cfg.Timeout/2:
		return nil, fmt.Errorf("partition: Renew %s must be below half the lease Timeout %s", cfg.Renew, cfg.Timeout)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{store: store, cfg: cfg, run: run, log: log.With("component", "partitions", "member", cfg.ID), now: time.Now, m: m,
		others: map[string]seen{}, running: map[int]*runner{}, pause: map[int]time.Time{}}, nil
}

// ID is this manager's member id.
func (m *Manager) ID() string { return m.cfg.ID }

// Held returns the partitions this manager holds, ascending.
func (m *Manager) Held() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.held)
}

// Run holds leases and runs partitions until ctx ends, then stops every
// runner and leaves the table (its partitions free at once for the
// others). It returns nil after a clean stop.
func (m *Manager) Run(ctx context.Context) error {
	defer m.leave()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		wait := m.cfg.Renew
		if err := m.tick(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.m.TableErrors.Inc()
			m.log.Warn("lease table update failed; retrying", "table", m.cfg.Table, "error", err)
			wait = m.cfg.Renew / 4
		}
		m.reconcile(ctx)
		t.Reset(wait)
	}
}

// tick is one read-modify-write of the lease table.
func (m *Manager) tick(ctx context.Context) error {
	b, v, err := m.store.Read(ctx, m.cfg.Table)
	var cur *table
	switch {
	case errors.Is(err, cas.ErrNotExist):
		cur, v = &table{Version: tableVersion, Members: map[string]member{}}, ""
	case err != nil:
		m.selfFence()
		return err
	default:
		if cur, err = decodeTable(b); errors.Is(err, errTableVersion) {
			m.selfFence()
			return fmt.Errorf("%s: %w (written by another bucketq version? it is left alone; every consumer must run one version)", m.cfg.Table, err)
		} else if err != nil {
			// The table is soft state: safety rests on each
			// partition's manifest epoch, so a damaged table is
			// replaced (conditionally on the damaged version, so a
			// good write by another consumer wins) instead of
			// stalling every consumer for ever.
			m.m.TableErrors.Inc()
			m.log.Error("LEASE TABLE DAMAGED: replacing it with a fresh one; consumers re-join and re-balance", "table", m.cfg.Table, "bytes", len(b), "error", err)
			cur = &table{Version: tableVersion, Members: map[string]member{}}
		}
	}
	if len(cur.Owners) > m.cfg.Partitions && len(cur.Owners) != m.wider {
		// Another consumer runs with more partitions: they are not
		// ours to serve, and balancing over different counts can
		// leave some unserved. Say so once per size seen.
		m.wider = len(cur.Owners)
		m.m.TableErrors.Inc()
		m.log.Error("lease table lists more partitions than this consumer serves: give every consumer the same partitions",
			"table", m.cfg.Table, "table_partitions", len(cur.Owners), "partitions", m.cfg.Partitions)
	}
	now := m.now()
	m.mu.Lock()
	next := cur.clone()
	// Liveness by observation: a beat that has not moved for Timeout on
	// our clock is a dead member.
	live := []string{m.cfg.ID}
	for id, mem := range cur.Members {
		if id == m.cfg.ID {
			continue
		}
		s, ok := m.others[id]
		if !ok || s.beat != mem.Beat {
			s = seen{beat: mem.Beat, changed: now}
			m.others[id] = s
		}
		if now.Sub(s.changed) >= m.cfg.Timeout {
			delete(next.Members, id)
			continue
		}
		live = append(live, id)
	}
	for id := range m.others {
		if _, ok := cur.Members[id]; !ok {
			delete(m.others, id)
		}
	}
	slices.Sort(live)
	next.Members[m.cfg.ID] = member{Beat: cur.Members[m.cfg.ID].Beat + 1, Partitions: m.cfg.Partitions}
	if len(next.Owners) < m.cfg.Partitions {
		next.Owners = append(next.Owners, make([]string, m.cfg.Partitions-len(next.Owners))...)
	}
	var stolen []int
	for p, o := range next.Owners {
		if o != "" && o != m.cfg.ID {
			if _, ok := next.Members[o]; !ok {
				next.Owners[p] = "" // its owner is dead
				stolen = append(stolen, p)
			}
		}
	}
	target := assign(next.Owners, live, m.cfg.Partitions, func(id string) int {
		if k := next.Members[id].Partitions; k > 0 {
			return k
		}
		return m.cfg.Partitions // a member that does not say
	})
	m.want = map[int]bool{}
	for p := range m.cfg.Partitions {
		want := target[p] == m.cfg.ID
		if want {
			m.want[p] = true
		}
		switch o := next.Owners[p]; {
		case want && o == "":
			next.Owners[p] = m.cfg.ID
		case !want && o == m.cfg.ID && m.stoppedLocked(p):
			next.Owners[p] = "" // handed over; its runner has stopped
		}
	}
	m.mu.Unlock()

	if _, err := m.store.WriteIf(ctx, m.cfg.Table, next.encode(), v); err != nil {
		m.selfFence()
		if errors.Is(err, cas.ErrConflict) {
			m.m.TableConflicts.Inc()
		}
		return err
	}
	m.mu.Lock()
	old := m.held
	m.held = next.owned(m.cfg.ID, m.cfg.Partitions)
	m.lastWrite = now
	m.mu.Unlock()
	m.m.Held.Set(float64(len(m.held)))
	m.m.Members.Set(float64(len(next.Members)))
	if len(stolen) > 0 {
		m.log.Info("lease timeout: partitions of dead members freed", "partitions", stolen)
	}
	if !slices.Equal(old, m.held) {
		m.m.LeaseChanges.Inc()
		m.log.Info("partitions held", "partitions", m.held, "live_members", len(live))
	}
	return nil
}

// selfFence gives up every partition when the table could not be written
// for half the lease timeout: the others will take them after Timeout.
func (m *Manager) selfFence() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.held) > 0 && m.now().Sub(m.lastWrite) >= m.cfg.Timeout/2 {
		m.log.Warn("lease table not renewed for half the lease timeout; stopping every partition", "partitions", m.held)
		m.held = nil
		m.m.Held.Set(0)
	}
}

// reconcile starts a runner for every held partition without one and stops
// the runners of partitions no longer held or to be handed over.
func (m *Manager) reconcile(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hold := map[int]bool{}
	for _, p := range m.held {
		hold[p] = true
	}
	for p, r := range m.running {
		select {
		case <-r.done:
			delete(m.running, p)
			if errors.Is(r.err, manifest.ErrFenced) {
				// Someone outside the table fenced it (a consumer run
				// without partitions, say): do not fence back at once.
				m.pause[p] = m.now().Add(m.cfg.Timeout)
				m.log.Error("partition fenced by a consumer that holds no lease; pausing it", "partition", p, "error", r.err)
			} else if r.err != nil {
				m.pause[p] = m.now().Add(m.cfg.Renew)
				m.log.Error("partition runner failed; restarting", "partition", p, "error", r.err)
			}
			continue
		default:
		}
		if !hold[p] || !m.want[p] {
			r.cancel()
		}
	}
	for _, p := range m.held {
		if m.running[p] != nil || m.now().Before(m.pause[p]) || !m.want[p] {
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &runner{cancel: cancel, done: make(chan struct{})}
		m.running[p] = r
		go func() {
			defer close(r.done)
			r.err = m.run(rctx, p)
		}()
	}
	m.m.Running.Set(float64(len(m.running)))
}

// stoppedLocked reports whether partition p has no runner or only one that
// has returned.
func (m *Manager) stoppedLocked(p int) bool {
	r := m.running[p]
	if r == nil {
		return true
	}
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// leave stops every runner, waits for them, and removes this member from
// the table, freeing its partitions (best effort, bounded).
func (m *Manager) leave() {
	m.mu.Lock()
	rs := make([]*runner, 0, len(m.running))
	for _, r := range m.running {
		r.cancel()
		rs = append(rs, r)
	}
	m.mu.Unlock()
	for _, r := range rs {
		<-r.done
	}
	m.mu.Lock()
	m.running = map[int]*runner{}
	m.held = nil
	m.mu.Unlock()
	m.m.Held.Set(0)
	m.m.Running.Set(0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		b, v, err := m.store.Read(ctx, m.cfg.Table)
		if err != nil {
			break
		}
		t, err := decodeTable(b)
		if err != nil {
			break
		}
		if _, ok := t.Members[m.cfg.ID]; !ok {
			return
		}
		delete(t.Members, m.cfg.ID)
		for p, o := range t.Owners {
			if o == m.cfg.ID {
				t.Owners[p] = ""
			}
		}
		if _, err = m.store.WriteIf(ctx, m.cfg.Table, t.encode(), v); err == nil {
			return
		} else if !errors.Is(err, cas.ErrConflict) {
			m.log.Warn("leaving the lease table failed; the others take its partitions after the lease timeout", "error", err)
			return
		}
	}
}

// assign is the balanced assignment of partitions 0..n-1 over the live
// members (sorted ids; serves(id) is how many partitions a member runs, nil
// for all n) that moves fewest partitions from owners: every live
// member's share is n/len(live), n%len(live) of them one more. A partition
// stays with its owner while the owner is live and within its share
// (partitions in order); the rest go, in order, to the live member holding
// fewest (ties: the lowest id). Moving only what must move matters because
// each move stops a runner, whose sink requests in flight and the entries
// delivered behind an unfinished one are redelivered by the next owner; a
// stateless rule (p mod len(live)) moved every partition whose index no
// longer matched, typically twice as many as a crash freed.
//
// Every member computes it from the same table; members that see different
// live sets (one has not yet timed out a dead member) may disagree for a
// lease timeout, which is safe: a member claims only free partitions and
// frees one only after its runner stopped.
func assign(owners, live []string, n int, serves func(id string) int) []string {
	out := make([]string, n)
	if len(live) == 0 {
		return out
	}
	if serves == nil {
		serves = func(string) int { return n }
	}
	share, extra := n/len(live), n%len(live)
	isLive := make(map[string]bool, len(live))
	for _, id := range live {
		isLive[id] = true
	}
	count := make(map[string]int, len(live))
	// room reports whether a member holding c may take one more within
	// the shares.
	full := 0 // members at share+1
	room := func(c int) bool { return c < share || (c == share && full < extra) }
	take := func(id string) {
		if count[id] == share {
			full++
		}
		count[id]++
	}
	for p := range min(n, len(owners)) {
		if o := owners[p]; isLive[o] && p < serves(o) && room(count[o]) {
			out[p] = o
			take(o)
		}
	}
	for p := range n {
		if out[p] != "" {
			continue
		}
		// The live member holding fewest that serves p, within the
		// shares if one can; beyond them if only members that serve
		// fewer partitions have room (consumers configured with
		// different partitions: each serves what it can).
		best, bestRoom := "", false
		for _, id := range live {
			if p >= serves(id) {
				continue
			}
			r := room(count[id])
			if best == "" || (r && !bestRoom) || (r == bestRoom && count[id] < count[best]) {
				best, bestRoom = id, r
			}
		}
		if best != "" {
			out[p] = best
			take(best)
		}
	}
	return out
}
