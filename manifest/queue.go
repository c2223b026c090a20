package manifest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bucketq/bucketq/internal/backoff"
	"github.com/bucketq/bucketq/manifest/cas"
)

// ErrFenced is returned to a consumer whose epoch is no longer the
// manifest's: a newer consumer has opened the queue.
var ErrFenced = errors.New("manifest: consumer fenced by a newer epoch")

// Options tune the retry loop of every queue operation. Zero fields take
// their defaults.
type Options struct {
	// MinBackoff and MaxBackoff bound the jittered exponential backoff
	// between attempts after a conflict or error. Defaults 5ms and 1s.
	MinBackoff, MaxBackoff time.Duration
	// RetryTimeout bounds one operation when the caller's context has no
	// earlier deadline. Default 30s.
	RetryTimeout time.Duration
	// OnWrite and OnConflict, if set, are called for every write attempt
	// and every conflict (metrics hooks).
	OnWrite, OnConflict func()
	// Version is the manifest version every write produces: Version2
	// (checksummed, the default when zero) or Version1 for readers of the
	// opendata Buffer layout. Reads accept both.
	Version uint16
}

func (o *Options) defaults() {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 5 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Second
	}
	if o.RetryTimeout <= 0 {
		o.RetryTimeout = 30 * time.Second
	}
	if o.Version == 0 {
		o.Version = Version
	}
}

// Queue is the queue protocol on one manifest object. It is safe for
// concurrent use. Besides its configuration it keeps only the manifest its
// last Append wrote (see appendEntries), a hint the store's conditional
// write checks: never trusted without it.
type Queue struct {
	store cas.Store
	path  string
	opts  Options

	mu sync.Mutex
	// last is the content and version of the manifest as this queue's
	// last successful Append wrote it. The next Append builds on it
	// without reading, so a producer that is the manifest's only writer
	// since then commits with one conditional write instead of a read and
	// a write (on S3 one request instead of two per ack). A stale last
	// only costs a conflict, after which the Append reads as before.
	last     []byte
	lastV    cas.Version
	coldRuns int // Appends left that read first, after a guess conflicted
	coldLen  int // coldRuns after the next stale guess; 0: afterConflict
}

// afterConflict is how many Appends read the manifest first after one
// built on last conflicted: with several writers on one manifest (other
// producers, the consumer's dequeues) a guess would often be stale, and
// each stale guess is a wasted write (a billed PUT of the whole manifest
// on S3), so guessing resumes only after this many. Each further stale
// guess in a row doubles it, up to maxCold, so under sustained contention
// (many producers on one manifest) at most one Append in maxCold wastes a
// write; a guess that lands sets it back.
const (
	afterConflict = 16
	maxCold       = 1024
)

// NewQueue returns the queue on the manifest object at path. It panics on
// an unknown opts.Version (a programming error).
func NewQueue(store cas.Store, path string, opts Options) *Queue {
	if opts.Version != 0 && FooterLen(opts.Version) == 0 {
		panic(fmt.Sprintf("manifest: unknown version %d", opts.Version))
	}
	opts.defaults()
	return &Queue{store: store, path: path, opts: opts}
}

// Path is the manifest object's name.
func (q *Queue) Path() string { return q.path }

// read returns the raw manifest and its version; a missing object is the
// encoded empty manifest with the empty version. An existing empty object
// is returned as it is, and fails to decode: it is damage, not an empty
// queue (a queue overwriting it would orphan every batch it listed).
func (q *Queue) read(ctx context.Context) ([]byte, cas.Version, error) {
	b, v, err := q.store.Read(ctx, q.path)
	if errors.Is(err, cas.ErrNotExist) {
		return Empty(q.opts.Version), "", nil
	}
	if err == nil && b == nil {
		b = []byte{}
	}
	return b, v, err
}

// Read returns the decoded manifest.
func (q *Queue) Read(ctx context.Context) (*Manifest, error) {
	b, _, err := q.read(ctx)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", q.path, err)
	}
	m, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", q.path, err)
	}
	return m, nil
}

// retry runs attempt until it reports done, backing off with jitter between
// attempts, until ctx or the retry timeout ends. A *CorruptError or ErrFenced
// from attempt ends the loop at once: retrying cannot mend either.
func (q *Queue) retry(ctx context.Context, op string, attempt func(ctx context.Context, n int) (done bool, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, q.opts.RetryTimeout)
	defer cancel()
	bo := backoff.New(q.opts.MinBackoff, q.opts.MaxBackoff)
	var last error
	for n := 0; ; n++ {
		done, err := attempt(ctx, n)
		if done {
			return err
		}
		var ce *CorruptError
		if errors.As(err, &ce) || errors.Is(err, ErrFenced) {
			return err
		}
		// Keep the last error that says why the store refused; an attempt
		// cut short by our own deadline only says that time ran out.
		if err != nil && (ctx.Err() == nil || !errors.Is(err, ctx.Err()) || last == nil) {
			last = err
		}
		if backoff.Sleep(ctx, bo.Next()) != nil {
			return fmt.Errorf("%s on %s gave up after %d attempts: %w (last error: %v)", op, q.path, n+1, ctx.Err(), last)
		}
	}
}

// write is one conditional write, counted for metrics. A Fence or Dequeue
// writes through it, which also drops the Append guess: the consumer's
// writes are not Appends, and the guess is only ever what an Append wrote.
func (q *Queue) write(ctx context.Context, b []byte, v cas.Version) error {
	q.forget(false)
	_, err := q.writeV(ctx, b, v)
	return err
}

// writeV is write without touching the guess, returning the new version.
func (q *Queue) writeV(ctx context.Context, b []byte, v cas.Version) (cas.Version, error) {
	if q.opts.OnWrite != nil {
		q.opts.OnWrite()
	}
	nv, err := q.store.WriteIf(ctx, q.path, b, v)
	if errors.Is(err, cas.ErrConflict) && q.opts.OnConflict != nil {
		q.opts.OnConflict()
	}
	return nv, err
}

// Append adds entries to the end of the queue in one conditional write
// (group commit) and returns their sequences, in order. On a conflict it
// re-reads and retries. After any failed write whose outcome is unknown it
// first checks whether the entries are already in the manifest (a write that
// landed although its response was lost or a client retry saw 412), so an
// entry is never appended twice while it is still queued. Producers never
// change the epoch.
func (q *Queue) Append(ctx context.Context, entries ...NewEntry) ([]uint64, error) {
	return q.appendEntries(ctx, false, entries)
}

// Recommit is Append for a caller retrying an earlier Append of the same
// entries that failed with an unknown outcome: it first checks whether that
// earlier write landed, and only appends the entries if it did not.
func (q *Queue) Recommit(ctx context.Context, entries ...NewEntry) ([]uint64, error) {
	return q.appendEntries(ctx, true, entries)
}

func (q *Queue) appendEntries(ctx context.Context, uncertain bool, entries []NewEntry) ([]uint64, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	st := appendState{uncertain: uncertain}
	err := q.retry(ctx, "append", func(ctx context.Context, n int) (bool, error) {
		// The first attempt of a certain Append builds on the manifest
		// this queue last wrote, if it has it; every other attempt reads.
		// (Only a certain Append guesses, so the uncertain check below
		// always runs on what was read.)
		if b, v, ok := q.guess(n == 0 && !st.uncertain); ok {
			out, seqs, err := AppendEntries(b, entries, q.opts.Version)
			if err == nil {
				f, _ := ReadFooter(b) // AppendEntries read it already
				return q.commitAppend(ctx, &st, out, v, f.NextSequence, seqs, true)
			}
			// A guess that does not decode is not the manifest's damage:
			// drop it and read.
			q.forget(false)
		}
		b, v, err := q.read(ctx)
		if err != nil {
			return false, err
		}
		f, err := ReadFooter(b)
		if err != nil {
			return false, err
		}
		if st.uncertain && !(st.sinceKnown && f.NextSequence == st.since) {
			if found, err := findLocations(b, entries); err != nil {
				return false, err
			} else if found != nil {
				st.seqs = found
				return true, nil
			}
		}
		out, seqs, err := AppendEntries(b, entries, q.opts.Version)
		if err != nil {
			return true, err
		}
		return q.commitAppend(ctx, &st, out, v, f.NextSequence, seqs, false)
	})
	return st.seqs, err
}

// appendState is what the attempts of one Append share.
type appendState struct {
	seqs      []uint64 // the entries' sequences, once known
	uncertain bool     // a write of ours may have landed
	// since is the next_sequence of the manifest the first write of
	// unknown outcome was based on. next_sequence only grows and a landed
	// write moves it, so while it is unchanged nothing of ours can be
	// there. (Recommit starts uncertain with no base: since stays 0, and
	// 0 never matches a manifest that holds the entries.)
	since      uint64
	sinceKnown bool
}

// commitAppend is the write of one Append attempt: out, built on the
// manifest at version v whose next_sequence was base, gives the entries
// sequences seqs. guessed says v is the queue's last write, not a read.
func (q *Queue) commitAppend(ctx context.Context, st *appendState, out []byte, v cas.Version, base uint64, seqs []uint64, guessed bool) (bool, error) {
	nv, err := q.writeV(ctx, out, v)
	if err != nil {
		q.forget(guessed && errors.Is(err, cas.ErrConflict))
		// Our stores send a conditional write once, so a conflict is a
		// refusal; but a store whose client retries can answer 412 to a
		// write that landed (RFC 0002), so every failed write is treated
		// as possibly landed. The check costs a walk over the locations,
		// and nothing when next_sequence has not moved. (A guess holds a
		// footer that was current at its version, so its next_sequence is
		// as good a base as a read's.)
		if !st.uncertain {
			st.uncertain, st.since, st.sinceKnown = true, base, true
		}
		return false, err
	}
	q.remember(out, nv)
	if guessed {
		q.landed()
	}
	st.seqs = seqs
	return true, nil
}

// guess returns the manifest this queue last wrote, if want and it has one
// and no recent guess conflicted.
func (q *Queue) guess(want bool) ([]byte, cas.Version, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !want || q.last == nil {
		return nil, "", false
	}
	if q.coldRuns > 0 {
		q.coldRuns--
		return nil, "", false
	}
	return q.last, q.lastV, true
}

// remember keeps b, just written at version v, for the next Append's
// guess. AppendEntries returns a new slice every time and nothing writes
// to it after the write, so it is kept without a copy.
func (q *Queue) remember(b []byte, v cas.Version) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.last, q.lastV = b, v
}

// landed notes that a guess was right: the next stale one makes only
// afterConflict Appends read first again.
func (q *Queue) landed() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.coldLen = 0
}

// forget drops the guess after any failed write (its outcome may have
// changed the manifest); conflicted says a guess was stale, and then the
// next afterConflict Appends read first.
func (q *Queue) forget(conflicted bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.last, q.lastV = nil, ""
	if conflicted {
		if q.coldLen == 0 {
			q.coldLen = afterConflict
		}
		q.coldRuns = q.coldLen
		q.coldLen = min(2*q.coldLen, maxCold)
	}
}

// findLocations returns the sequences of entries if the write that
// appended them landed, nil if none of them is in the manifest, and an error
// if the manifest contradicts a single group write. One write appends the
// whole group with consecutive sequences, and the consumer may since have
// dequeued a head of it, so finding any suffix of the group proves the write
// landed; the sequences of the dequeued head follow from those of the rest.
// It walks the manifest's locations without decoding entries, and keeps
// only the group's own locations in memory.
func findLocations(b []byte, entries []NewEntry) ([]uint64, error) {
	pos := make(map[string]int, len(entries))
	for i, e := range entries {
		pos[e.Location] = i
	}
	bySeq := make(map[string]uint64, len(entries))
	if err := scanLocations(b, func(seq uint64, loc []byte) {
		if _, ok := pos[string(loc)]; ok {
			bySeq[string(loc)] = seq
		}
	}); err != nil {
		return nil, err
	}
	first := -1
	var base uint64
	for i, e := range entries {
		s, ok := bySeq[e.Location]
		switch {
		case !ok && first < 0:
			continue
		case !ok:
			return nil, corrupt(ErrEntryMalformed, "appended location %s found but the later %s is missing", entries[first].Location, e.Location)
		case first < 0:
			if s < uint64(i) {
				return nil, corrupt(ErrEntryMalformed, "appended location %s has sequence %d, too low for position %d of its group", e.Location, s, i)
			}
			first, base = i, s-uint64(i)
		case s != base+uint64(i):
			return nil, corrupt(ErrEntryMalformed, "appended location %s has sequence %d, want %d after %s", e.Location, s, base+uint64(i), entries[first].Location)
		}
	}
	if first < 0 {
		return nil, nil
	}
	seqs := make([]uint64, len(entries))
	for i := range seqs {
		seqs[i] = base + uint64(i)
	}
	return seqs, nil
}

// Lease is a consumer's hold on the queue, valid while the manifest's epoch
// is the lease's.
type Lease struct {
	q     *Queue
	epoch uint64
}

// Epoch is the epoch this lease wrote.
func (l *Lease) Epoch() uint64 { return l.epoch }

// Fence opens the queue for a consumer: it writes epoch+1, which makes every
// older consumer's next dequeue fail with ErrFenced. If a write's outcome is
// unknown the next attempt simply fences again with a higher epoch.
func (q *Queue) Fence(ctx context.Context) (*Lease, error) {
	var epoch uint64
	err := q.retry(ctx, "fence", func(ctx context.Context, _ int) (bool, error) {
		b, v, err := q.read(ctx)
		if err != nil {
			return false, err
		}
		m, err := Decode(b)
		if err != nil {
			return false, err
		}
		m.Epoch++
		m.Version = q.opts.Version
		if err := q.write(ctx, m.Encode(), v); err != nil {
			return false, err
		}
		epoch = m.Epoch
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &Lease{q: q, epoch: epoch}, nil
}

// Read returns the manifest, or ErrFenced if the lease is no longer current.
func (l *Lease) Read(ctx context.Context) (*Manifest, error) {
	m, err := l.q.Read(ctx)
	if err != nil {
		return nil, err
	}
	if m.Epoch != l.epoch {
		return nil, fmt.Errorf("%w: manifest epoch %d, ours %d", ErrFenced, m.Epoch, l.epoch)
	}
	return m, nil
}

// Dequeue removes every entry with a sequence up to and including through,
// in one conditional write, and returns the removed entries (for the journal
// and for garbage collection). It fails with ErrFenced when the manifest's
// epoch is not the lease's; nothing is removed then.
func (l *Lease) Dequeue(ctx context.Context, through uint64) ([]Entry, error) {
	var removed []Entry
	err := l.q.retry(ctx, "dequeue", func(ctx context.Context, _ int) (bool, error) {
		b, v, err := l.q.read(ctx)
		if err != nil {
			return false, err
		}
		m, err := Decode(b)
		if err != nil {
			return false, err
		}
		if m.Epoch != l.epoch {
			return false, fmt.Errorf("%w: manifest epoch %d, ours %d", ErrFenced, m.Epoch, l.epoch)
		}
		keep := m.From(through + 1)
		if through == ^uint64(0) {
			keep = nil
		}
		gone := m.Entries[:len(m.Entries)-len(keep)]
		// Only this lease dequeues, so what an earlier attempt saw and is
		// missing now was removed by an earlier attempt of ours whose
		// response was lost: it stays in removed. What is gone now is
		// added, including entries appended since an earlier attempt
		// when through lies beyond what that attempt saw.
		for _, e := range gone {
			if len(removed) == 0 || e.Sequence > removed[len(removed)-1].Sequence {
				removed = append(removed, e)
			}
		}
		if len(gone) == 0 {
			return true, nil
		}
		m.Entries = keep
		m.Version = l.q.opts.Version
		if err := l.q.write(ctx, m.Encode(), v); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}
