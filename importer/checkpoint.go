package importer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"

	"github.com/bucketq/bucketq/manifest/cas"
)

// CheckpointVersion is the version of the checkpoint objects written.
// Version 1 checkpoints (every object in the one object) are read too and
// become version 2 at their first write.
const CheckpointVersion = 2

// ErrOtherPartition is returned by an import whose job's checkpoint was
// taken importing into another partition.
var ErrOtherPartition = errors.New("import: the job's checkpoint is of another partition")

// DefaultCheckpointWindow is the default of Config.CheckpointWindow.
const DefaultCheckpointWindow = 128

// maxStateError bounds ObjectState.Error, so that an entry, and with it
// the checkpoint, has a size bound.
const maxStateError = 256

// Checkpoint is the JSON body of a job's checkpoint object (RFC 0006,
// "Imported rows"): the progress of the objects not yet sealed into a
// segment (at most CheckpointWindow-1 idle ones plus one per worker),
// and the newest of the job's segments, which hold every other object's
// last state. It is written only after the rows it counts are durable in
// the queue, and with a conditional write, so two imports of one job at
// once fail instead of overwriting each other's progress.
type Checkpoint struct {
	Version int    `json:"version"`
	Job     string `json:"job"`
	// Segments is the number of segments; Last the hex SHA-256 of the
	// bytes of segment number Segments ("" when there is none).
	Segments int64  `json:"segments,omitempty"`
	Last     string `json:"last,omitempty"`
	// Partition is the partition (RFC 0005) whose queue the job appends
	// to. Its rows up to this checkpoint are queued there, so a resume
	// into another partition is refused. Absent (0) in checkpoints of
	// imports before partitions, which all appended to partition 0.
	Partition int                    `json:"partition,omitempty"`
	Objects   map[string]ObjectState `json:"objects"`
}

// Segment is the JSON body of a sealed checkpoint segment: write-once,
// named by its sequence number and content hash (SegmentName), and
// chained to the segment before it by that one's hash.
type Segment struct {
	Version int                    `json:"version"`
	Job     string                 `json:"job"`
	Seq     int64                  `json:"seq"`  // from 1
	Prev    string                 `json:"prev"` // hex SHA-256 of segment Seq-1; "" for segment 1
	Objects map[string]ObjectState `json:"objects"`
}

// SegmentName is the object of segment seq, whose bytes have the hex
// SHA-256 sum, of the checkpoint named checkpoint.
func SegmentName(checkpoint string, seq int64, sum string) string {
	return fmt.Sprintf("%s%08d-%s", segmentDir(checkpoint), seq, sum)
}

// ObjectState is the progress of one source object.
type ObjectState struct {
	// Size and Modified identify the object's version: a changed object is
	// imported again from its first row (rows whose content did not
	// change keep their derived ids).
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
	// Rows: rows 1..Rows are committed to the queue or dead-lettered.
	Rows int64 `json:"rows"`
	// Done: every row is handled; Error says why the object ended early
	// (an unreadable tail, also dead-lettered), "" if it was read whole.
	Done  bool   `json:"done,omitempty"`
	Error string `json:"error,omitempty"`
}

func (s ObjectState) sameVersion(size int64, mod time.Time) bool {
	return s.Size == size && s.Modified.Equal(mod)
}

// stateError cuts an object's error to maxStateError bytes, at a rune
// boundary.
func stateError(s string) string {
	if len(s) <= maxStateError {
		return s
	}
	cut := maxStateError - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// CheckpointState is a job's progress as its checkpoint and segments
// record it.
type CheckpointState struct {
	Head    Checkpoint             // the checkpoint object
	Objects map[string]ObjectState // every object's last state: the head's over the segments'
}

// ReadCheckpoint reads the checkpoint name of job and the segments it
// refers to, checking them as an import does before it starts. It returns
// an error wrapping cas.ErrNotExist if there is no checkpoint.
func ReadCheckpoint(ctx context.Context, store cas.Store, name, job string) (CheckpointState, error) {
	b, _, err := store.Read(ctx, name)
	if err != nil {
		return CheckpointState{}, fmt.Errorf("read checkpoint %s: %w", name, err)
	}
	head, err := decodeHead(b, name, job)
	if err != nil {
		return CheckpointState{}, err
	}
	sealed, _, err := readSegments(ctx, store, name, head, nil)
	if err != nil {
		return CheckpointState{}, err
	}
	all := make(map[string]ObjectState, len(sealed)+len(head.Objects))
	for k, v := range sealed {
		all[k] = v
	}
	for k, v := range head.Objects {
		all[k] = v
	}
	return CheckpointState{Head: head, Objects: all}, nil
}

// startOver is the advice of every refusal of a damaged checkpoint.
func startOver(name, job string) string {
	return fmt.Sprintf("the checkpoint was edited or damaged; delete %s (and the segments under %s.d/) to start job %q over", name, name, job)
}

// CorruptError is the refusal of a damaged or edited checkpoint: the
// checkpoint object or one of its segments does not decode, or does not
// fit the hash chain the checkpoint names (RFC 0006, "Imported rows",
// decode rules). The job stops: going on would skip objects whose states
// are lost (rows never imported) or import everything again.
type CorruptError struct {
	Checkpoint string // the job's checkpoint object
	Job        string
	// Object is the object at fault: Checkpoint or one of its segments
	// (for a missing segment, the name the chain gives it).
	Object string
	// Field is the JSON key at fault ("version", "job", "segments",
	// "last", "seq", "prev", "objects"), "" when the whole object is (not
	// JSON, bytes that do not hash to its name, missing).
	Field  string
	Detail string // what is wrong, naming Object
	Err    error  // the decode error, if any
}

func (e *CorruptError) Error() string { return e.Detail + ": " + startOver(e.Checkpoint, e.Job) }

func (e *CorruptError) Unwrap() error { return e.Err }

func corrupt(name, job, object, field string, err error, format string, args ...any) *CorruptError {
	return &CorruptError{Checkpoint: name, Job: job, Object: object, Field: field, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// decodeStrict decodes one JSON object into v, refusing unknown keys (a
// misspelt, hand-edited or bit-flipped key must not silently reset a
// field) and data after it.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after its JSON object")
	}
	return nil
}

func isSum(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func checkStates(objs map[string]ObjectState, what, object, name, job string) error {
	for obj, st := range objs {
		if st.Rows < 0 || st.Size < 0 {
			return corrupt(name, job, object, "objects", nil, "%s: object %q has rows %d, size %d (negative)", what, obj, st.Rows, st.Size)
		}
	}
	return nil
}

// decodeHead decodes and checks the checkpoint object name of job.
func decodeHead(b []byte, name, job string) (Checkpoint, error) {
	var ck Checkpoint
	if err := decodeStrict(b, &ck); err != nil {
		return Checkpoint{}, corrupt(name, job, name, "", err, "checkpoint %s is not a checkpoint (%v)", name, err)
	}
	switch ck.Version {
	case 1:
		if ck.Segments != 0 || ck.Last != "" {
			return Checkpoint{}, corrupt(name, job, name, "segments", nil, "checkpoint %s of version 1 has segments", name)
		}
	case CheckpointVersion:
	default:
		return Checkpoint{}, fmt.Errorf("checkpoint %s has version %d, this bucketq reads 1 and %d", name, ck.Version, CheckpointVersion)
	}
	if ck.Job != job {
		return Checkpoint{}, corrupt(name, job, name, "job", nil, "checkpoint %s is of job %q, not %q (copied or edited)", name, ck.Job, job)
	}
	if ck.Partition < 0 {
		return Checkpoint{}, corrupt(name, job, name, "partition", nil, "checkpoint %s has partition %d", name, ck.Partition)
	}
	if ck.Segments < 0 || (ck.Segments == 0) != (ck.Last == "") {
		return Checkpoint{}, corrupt(name, job, name, "segments", nil, "checkpoint %s has segments %d, last %q (want 0 and \"\", or a count and a hex SHA-256)", name, ck.Segments, ck.Last)
	}
	if ck.Last != "" && !isSum(ck.Last) {
		return Checkpoint{}, corrupt(name, job, name, "last", nil, "checkpoint %s has segments %d, last %q (want 0 and \"\", or a count and a hex SHA-256)", name, ck.Segments, ck.Last)
	}
	if err := checkStates(ck.Objects, "checkpoint "+name, name, name, job); err != nil {
		return Checkpoint{}, err
	}
	if ck.Objects == nil {
		ck.Objects = map[string]ObjectState{}
	}
	return ck, nil
}

// decodeSegment decodes and checks segment seq of checkpoint name, whose
// bytes must have the hex SHA-256 sum.
func decodeSegment(b []byte, name, job string, seq int64, sum string) (Segment, error) {
	seg := SegmentName(name, seq, sum)
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
		return Segment{}, corrupt(name, job, seg, "", nil, "checkpoint segment %s is damaged (its %d bytes have SHA-256 %x, not the one its name and the chain of %s record)", seg, len(b), got, name)
	}
	var s Segment
	if err := decodeStrict(b, &s); err != nil {
		return Segment{}, corrupt(name, job, seg, "", err, "checkpoint segment %s is not a segment (%v)", seg, err)
	}
	// Each field on its own, so that the error names the one at fault.
	bad := func(field string, got any, want string) error {
		return corrupt(name, job, seg, field, nil, "checkpoint segment %s has %s %v, want %s (it has version %d, job %q, seq %d, prev %q)",
			seg, field, got, want, s.Version, s.Job, s.Seq, s.Prev)
	}
	switch {
	case s.Version != CheckpointVersion:
		return Segment{}, bad("version", s.Version, fmt.Sprint(CheckpointVersion))
	case s.Job != job:
		return Segment{}, bad("job", fmt.Sprintf("%q", s.Job), fmt.Sprintf("%q", job))
	case s.Seq != seq:
		return Segment{}, bad("seq", s.Seq, fmt.Sprintf("%d, its place in the chain and its name", seq))
	case (seq == 1) != (s.Prev == ""):
		return Segment{}, bad("prev", fmt.Sprintf("%q", s.Prev), "a prev iff seq > 1")
	case s.Prev != "" && !isSum(s.Prev):
		return Segment{}, bad("prev", fmt.Sprintf("%q", s.Prev), "a hex SHA-256")
	}
	if err := checkStates(s.Objects, "checkpoint segment "+seg, seg, name, job); err != nil {
		return Segment{}, err
	}
	return s, nil
}

// segmentReadAhead bounds the segments a start reads at once, and so the
// segment bytes it holds: read, being read, or waiting for the chain
// check to reach them.
const segmentReadAhead = 8

// segmentDir is the folder of the segments of checkpoint name.
func segmentDir(name string) string { return name + ".d/" }

// parseSegmentName returns the seq and sum of obj if it is the name
// SegmentName gives a segment of checkpoint name, and ok false for any
// other object (never touched).
func parseSegmentName(name, obj string) (seq int64, sum string, ok bool) {
	rest, found := strings.CutPrefix(obj, segmentDir(name))
	if !found {
		return 0, "", false
	}
	num, sum, found := strings.Cut(rest, "-")
	if !found || !isSum(sum) || len(num) < 8 || len(num) > 18 {
		return 0, "", false
	}
	seq, err := strconv.ParseInt(num, 10, 64)
	if err != nil || seq < 1 || SegmentName(name, seq, sum) != obj {
		return 0, "", false
	}
	return seq, sum, true
}

// listedSegments are the segment objects of a checkpoint found by a
// listing, by seq: normally the chain's one, plus segments no checkpoint
// refers to (a seal cut short, the loser of two imports of one job).
type listedSegments map[int64][]string

// listSegments lists the segments of checkpoint name in bkt.
func listSegments(ctx context.Context, bkt objstore.BucketReader, name string) (listedSegments, error) {
	l := listedSegments{}
	err := bkt.Iter(ctx, segmentDir(name), func(obj string) error {
		if seq, _, ok := parseSegmentName(name, obj); ok {
			l[seq] = append(l[seq], obj)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the segments of checkpoint %s: %w", name, err)
	}
	return l, nil
}

// prefetched is a segment read ahead of the chain check.
type prefetched struct {
	name string
	b    []byte
	err  error
}

// prefetcher reads the segments a listing found, newest first, at most
// segmentReadAhead of them at once and held, ahead of the chain check
// (readSegments), which takes them in the same order. Only a seq with one
// listed segment is read ahead: which of several is the chain's is known
// only once the segment after it is checked.
type prefetcher struct {
	ctx    context.Context
	slots  map[int64]chan prefetched
	tokens chan struct{} // one per segment read or held
	cancel context.CancelFunc
	done   chan struct{}
	g      errgroup.Group
}

func startPrefetch(ctx context.Context, store cas.Store, listed listedSegments, upTo int64) *prefetcher {
	var seqs []int64
	for seq, names := range listed {
		if seq <= upTo && len(names) == 1 {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	slices.Reverse(seqs)
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher{ctx: ctx, slots: make(map[int64]chan prefetched, len(seqs)), tokens: make(chan struct{}, segmentReadAhead), cancel: cancel, done: make(chan struct{})}
	p.g.SetLimit(segmentReadAhead)
	for _, seq := range seqs {
		p.slots[seq] = make(chan prefetched, 1)
	}
	go func() {
		defer close(p.done)
		for _, seq := range seqs {
			select {
			case p.tokens <- struct{}{}:
			case <-ctx.Done():
				return
			}
			slot, name := p.slots[seq], listed[seq][0]
			p.g.Go(func() error {
				b, _, err := store.Read(ctx, name)
				slot <- prefetched{name: name, b: b, err: err}
				return nil
			})
		}
	}()
	return p
}

// take returns the bytes of segment seq read ahead if it is the one named
// want; ok false means the caller reads want itself.
func (p *prefetcher) take(seq int64, want string) (b []byte, ok bool, err error) {
	slot, has := p.slots[seq]
	if !has {
		return nil, false, nil
	}
	var r prefetched
	select {
	case r = <-slot:
		<-p.tokens
	case <-p.ctx.Done(): // the read may never have started
		return nil, true, p.ctx.Err()
	}
	if r.name != want {
		return nil, false, nil
	}
	return r.b, true, r.err
}

// stop ends the reads ahead and waits for them.
func (p *prefetcher) stop() {
	p.cancel()
	<-p.done
	_ = p.g.Wait()
}

// readSegments reads the chain of segments head refers to, newest first,
// and returns every object's newest state in them. With listed (nil: no
// listing), the segments are read ahead in parallel, and it also returns
// the listed segments at seqs up to head.Segments that are not the
// chain's: no checkpoint written from now on can refer to them (RFC 0006,
// "Imported rows").
func readSegments(ctx context.Context, store cas.Store, name string, head Checkpoint, listed listedSegments) (map[string]ObjectState, []string, error) {
	var p *prefetcher
	if len(listed) > 0 {
		p = startPrefetch(ctx, store, listed, head.Segments)
		defer p.stop()
	}
	sealed := map[string]ObjectState{}
	var orphans []string
	sum, referrer := head.Last, name
	for seq := head.Segments; seq >= 1; seq-- {
		seg := SegmentName(name, seq, sum)
		var (
			b   []byte
			err error
			ok  bool
		)
		if p != nil {
			b, ok, err = p.take(seq, seg)
		}
		if !ok {
			b, _, err = store.Read(ctx, seg)
		}
		if errors.Is(err, cas.ErrNotExist) {
			return nil, nil, missingSegment(name, head.Job, referrer, seq, sum, listed)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read checkpoint segment %s: %w", seg, err)
		}
		s, err := decodeSegment(b, name, head.Job, seq, sum)
		if err != nil {
			return nil, nil, err
		}
		for obj, st := range s.Objects {
			if _, newer := sealed[obj]; !newer {
				sealed[obj] = st
			}
		}
		for _, other := range listed[seq] {
			if other != seg {
				orphans = append(orphans, other)
			}
		}
		sum, referrer = s.Prev, seg
	}
	return sealed, orphans, nil
}

// missingSegment is the error of segment seq with hash sum, which the
// chain needs (referrer, the checkpoint or segment seq+1, names it) and
// which does not exist. A listing tells whether the hash is that of a
// segment of another seq: then referrer's "segments" or "prev" was edited.
func missingSegment(name, job, referrer string, seq int64, sum string, listed listedSegments) error {
	seg := SegmentName(name, seq, sum)
	field := "prev"
	if referrer == name {
		field = "segments"
	}
	for other, names := range listed {
		for _, n := range names {
			if _, s, _ := parseSegmentName(name, n); s == sum && other != seq {
				return corrupt(name, job, referrer, field, nil,
					"checkpoint %s refers to segment %s, which does not exist: %s gives hash %s to seq %d, but that is the hash of segment %s, of seq %d",
					name, seg, referrer, sum, seq, n, other)
			}
		}
	}
	return corrupt(name, job, seg, "", nil, "checkpoint %s refers to segment %s, which does not exist", name, seg)
}

// open is an object's state not sealed into a segment yet; gen is the
// update that set it.
type open struct {
	st  ObjectState
	gen uint64
}

// checkpointer keeps the checkpoint and writes it, group-committing the
// updates of concurrent workers: a caller returns once a write holding its
// update succeeded. When CheckpointWindow or more objects no worker is
// importing have states in the checkpoint, a write first seals them into
// a new segment and leaves them out of the checkpoint: its size is
// bounded by the window plus the workers, whatever the job's object count.
type checkpointer struct {
	store     cas.Store
	bkt       objstore.Bucket // deletes unreferenced segments; nil: none
	log       *slog.Logger
	name      string
	job       string
	partition int
	dry       bool
	window    int

	// pending are the segments listed at start with a seq above the
	// chain's, by seq (changed under wmu and mu).
	pending map[int64][]string

	mu      sync.Mutex
	sealed  map[string]ObjectState // the segments' states
	open    map[string]open        // states in the checkpoint itself (they override sealed)
	busy    map[string]bool        // objects being imported
	segs    int64                  // segments; changed under wmu and mu
	last    string                 // hex SHA-256 of the last segment
	gen     uint64
	written uint64
	version cas.Version

	wmu sync.Mutex // one write at a time
}

// loadCheckpoint reads the checkpoint name of job and its segments. With
// bkt (nil: a dry run without a queue), it lists the segments to read
// them in parallel, and, unless dry, deletes those the chain proves
// unreferenced and keeps the newer ones for a later seal to decide.
func loadCheckpoint(ctx context.Context, store cas.Store, bkt objstore.Bucket, log *slog.Logger, name, job string, partition, window int, dry bool) (*checkpointer, error) {
	c := &checkpointer{store: store, name: name, job: job, partition: partition, dry: dry, window: window, log: log,
		sealed: map[string]ObjectState{}, open: map[string]open{}, busy: map[string]bool{}}
	if !dry {
		c.bkt = bkt
	}
	b, v, err := store.Read(ctx, name)
	switch {
	case errors.Is(err, cas.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("read checkpoint %s: %w", name, err)
	}
	head, err := decodeHead(b, name, job)
	if err != nil {
		return nil, err
	}
	if head.Partition != partition {
		return nil, fmt.Errorf("%w: checkpoint %s of job %q was taken importing into partition %d, not %d: the rows it counts are queued in partition %d; "+
			"resume with --partition %d, or import into partition %d as another job (--job NAME)", ErrOtherPartition, name, job, head.Partition, partition, head.Partition, head.Partition, partition)
	}
	var listed listedSegments
	if bkt != nil && head.Segments > 0 {
		// The listing only speeds the reads up and finds orphans: the
		// chain is read by the names it gives whatever the listing says.
		if listed, err = listSegments(ctx, bkt, name); err != nil {
			log.Warn("reading the checkpoint's segments one by one, and deleting no unreferenced one", "error", err)
		}
	}
	var orphans []string
	if c.sealed, orphans, err = readSegments(ctx, store, name, head, listed); err != nil {
		return nil, err
	}
	for obj, st := range head.Objects {
		c.open[obj] = open{st: st}
	}
	c.segs, c.last, c.version = head.Segments, head.Last, v
	c.deleteOrphans(ctx, orphans)
	for seq, names := range listed {
		if seq > head.Segments {
			// Newer than the chain: possibly the segment of a seal by
			// another import of the job whose checkpoint write is still
			// to come, or one that a seal of the same states creates
			// again. Deleted once a seal of ours puts another one at
			// its seq (set).
			if c.pending == nil {
				c.pending = map[int64][]string{}
			}
			c.pending[seq] = names
		}
	}
	return c, nil
}

// deleteOrphans deletes segments no checkpoint can refer to any more.
// A failure is only logged: an orphan left in place is never read.
func (c *checkpointer) deleteOrphans(ctx context.Context, orphans []string) {
	if c.bkt == nil {
		return
	}
	for _, o := range orphans {
		if err := c.bkt.Delete(ctx, o); err != nil && !c.bkt.IsObjNotFoundErr(err) {
			c.log.Warn("could not delete a checkpoint segment no checkpoint refers to (it is never read; the next run tries again)", "segment", o, "error", err)
			continue
		}
		c.log.Info("deleted a checkpoint segment no checkpoint refers to (a seal cut short, or the loser of two imports of the job)", "segment", o)
	}
}

func (c *checkpointer) get(name string) (ObjectState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.open[name]; ok {
		return o.st, true
	}
	s, ok := c.sealed[name]
	return s, ok
}

// claim marks name as being imported (its state stays in the checkpoint
// object, unsealed) until release.
func (c *checkpointer) claim(name string) {
	c.mu.Lock()
	c.busy[name] = true
	c.mu.Unlock()
}

func (c *checkpointer) release(name string) {
	c.mu.Lock()
	delete(c.busy, name)
	c.mu.Unlock()
}

// set records st for object name and returns once it is written.
func (c *checkpointer) set(ctx context.Context, name string, st ObjectState) error {
	st.Error = stateError(st.Error)
	c.mu.Lock()
	c.gen++
	my := c.gen
	c.open[name] = open{st: st, gen: my}
	c.mu.Unlock()
	if c.dry {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.written >= my {
		c.mu.Unlock()
		return nil // a write after our update carried it
	}
	head := Checkpoint{Version: CheckpointVersion, Job: c.job, Partition: c.partition, Segments: c.segs, Last: c.last, Objects: make(map[string]ObjectState, len(c.open))}
	idle := 0
	for obj := range c.open {
		if !c.busy[obj] {
			idle++
		}
	}
	var seal map[string]open
	if idle >= c.window {
		seal = make(map[string]open, idle)
	}
	for obj, o := range c.open {
		if seal != nil && !c.busy[obj] {
			seal[obj] = o
		} else {
			head.Objects[obj] = o.st
		}
	}
	gen := c.gen
	c.mu.Unlock()

	if seal != nil {
		seg := Segment{Version: CheckpointVersion, Job: c.job, Seq: c.segs + 1, Prev: c.last, Objects: make(map[string]ObjectState, len(seal))}
		for obj, o := range seal {
			seg.Objects[obj] = o.st
		}
		data, err := json.Marshal(seg)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		head.Segments, head.Last = seg.Seq, hex.EncodeToString(sum[:])
		// Create-only: a segment is never overwritten. Its name holds
		// its hash, so a segment left by a crash before its checkpoint
		// write, or written by a concurrent import of the job, has
		// another name, unless it has these very bytes.
		if _, err := c.write(ctx, SegmentName(c.name, seg.Seq, head.Last), data, ""); err != nil {
			return err
		}
	}
	data, err := json.Marshal(head)
	if err != nil {
		return err
	}
	v, err := c.write(ctx, c.name, data, c.version)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.version, c.written = v, gen
	var orphans []string
	if seal != nil {
		c.segs, c.last = head.Segments, head.Last
		for obj, o := range seal {
			c.sealed[obj] = o.st
			if c.open[obj].gen == o.gen { // not updated since
				delete(c.open, obj)
			}
		}
		// The checkpoint now has segment Segments: any other segment of
		// that seq is unreferenced for good (every later checkpoint
		// extends this chain).
		mine := SegmentName(c.name, head.Segments, head.Last)
		for _, n := range c.pending[head.Segments] {
			if n != mine {
				orphans = append(orphans, n)
			}
		}
		delete(c.pending, head.Segments)
	}
	c.mu.Unlock()
	c.deleteOrphans(ctx, orphans)
	return nil
}

// write writes data to name if its version is v (create-only if v is
// ""), retrying transient errors.
func (c *checkpointer) write(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	wait := 50 * time.Millisecond
	for {
		nv, err := c.store.WriteIf(ctx, name, data, v)
		if err == nil {
			return nv, nil
		}
		if errors.Is(err, cas.ErrConflict) {
			// A retry of a write that landed but whose reply was lost
			// conflicts with itself: the stored bytes tell.
			if b, nv, rerr := c.store.Read(ctx, name); rerr == nil && bytes.Equal(b, data) {
				return nv, nil
			}
			return "", fmt.Errorf("checkpoint %s was changed by someone else (another import of job %q running?): %w", name, c.job, err)
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("write checkpoint %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("write checkpoint %s: %w", name, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
