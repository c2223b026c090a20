package importer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

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
	return fmt.Sprintf("%s.d/%08d-%s", checkpoint, seq, sum)
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
	sealed, err := readSegments(ctx, store, name, head)
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

func checkStates(objs map[string]ObjectState, what, name, job string) error {
	for obj, st := range objs {
		if st.Rows < 0 || st.Size < 0 {
			return fmt.Errorf("%s: object %q has rows %d, size %d (negative): %s", what, obj, st.Rows, st.Size, startOver(name, job))
		}
	}
	return nil
}

// decodeHead decodes and checks the checkpoint object name of job.
func decodeHead(b []byte, name, job string) (Checkpoint, error) {
	var ck Checkpoint
	if err := decodeStrict(b, &ck); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s is not a checkpoint (%v): delete it to start job %q over", name, err, job)
	}
	switch ck.Version {
	case 1:
		if ck.Segments != 0 || ck.Last != "" {
			return Checkpoint{}, fmt.Errorf("checkpoint %s of version 1 has segments: %s", name, startOver(name, job))
		}
	case CheckpointVersion:
	default:
		return Checkpoint{}, fmt.Errorf("checkpoint %s has version %d, this bucketq reads 1 and %d", name, ck.Version, CheckpointVersion)
	}
	if ck.Job != job {
		return Checkpoint{}, fmt.Errorf("checkpoint %s is of job %q, not %q: it was edited or copied; delete it to start job %q over", name, ck.Job, job, job)
	}
	if ck.Partition < 0 {
		return Checkpoint{}, fmt.Errorf("checkpoint %s has partition %d: %s", name, ck.Partition, startOver(name, job))
	}
	if ck.Segments < 0 || (ck.Segments == 0) != (ck.Last == "") || (ck.Last != "" && !isSum(ck.Last)) {
		return Checkpoint{}, fmt.Errorf("checkpoint %s has segments %d, last %q (want 0 and \"\", or a count and a hex SHA-256): %s", name, ck.Segments, ck.Last, startOver(name, job))
	}
	if err := checkStates(ck.Objects, "checkpoint "+name, name, job); err != nil {
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
		return Segment{}, fmt.Errorf("checkpoint segment %s is damaged (its SHA-256 is not the one its name and %s record): %s", seg, name, startOver(name, job))
	}
	var s Segment
	if err := decodeStrict(b, &s); err != nil {
		return Segment{}, fmt.Errorf("checkpoint segment %s is not a segment (%v): %s", seg, err, startOver(name, job))
	}
	if s.Version != CheckpointVersion || s.Job != job || s.Seq != seq || (seq == 1) != (s.Prev == "") || (s.Prev != "" && !isSum(s.Prev)) {
		return Segment{}, fmt.Errorf("checkpoint segment %s has version %d, job %q, seq %d, prev %q (want %d, %q, %d, and a prev iff seq > 1): %s",
			seg, s.Version, s.Job, s.Seq, s.Prev, CheckpointVersion, job, seq, startOver(name, job))
	}
	if err := checkStates(s.Objects, "checkpoint segment "+seg, name, job); err != nil {
		return Segment{}, err
	}
	return s, nil
}

// readSegments reads the chain of segments head refers to, newest first,
// and returns every object's newest state in them.
func readSegments(ctx context.Context, store cas.Store, name string, head Checkpoint) (map[string]ObjectState, error) {
	sealed := map[string]ObjectState{}
	sum := head.Last
	for seq := head.Segments; seq >= 1; seq-- {
		seg := SegmentName(name, seq, sum)
		b, _, err := store.Read(ctx, seg)
		if errors.Is(err, cas.ErrNotExist) {
			return nil, fmt.Errorf("checkpoint %s refers to segment %s, which does not exist: %s", name, seg, startOver(name, head.Job))
		}
		if err != nil {
			return nil, fmt.Errorf("read checkpoint segment %s: %w", seg, err)
		}
		s, err := decodeSegment(b, name, head.Job, seq, sum)
		if err != nil {
			return nil, err
		}
		for obj, st := range s.Objects {
			if _, newer := sealed[obj]; !newer {
				sealed[obj] = st
			}
		}
		sum = s.Prev
	}
	return sealed, nil
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
	name      string
	job       string
	partition int
	dry       bool
	window    int

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

func loadCheckpoint(ctx context.Context, store cas.Store, name, job string, partition, window int, dry bool) (*checkpointer, error) {
	c := &checkpointer{store: store, name: name, job: job, partition: partition, dry: dry, window: window,
		sealed: map[string]ObjectState{}, open: map[string]open{}, busy: map[string]bool{}}
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
	if c.sealed, err = readSegments(ctx, store, name, head); err != nil {
		return nil, err
	}
	for obj, st := range head.Objects {
		c.open[obj] = open{st: st}
	}
	c.segs, c.last, c.version = head.Segments, head.Last, v
	return c, nil
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
	defer c.mu.Unlock()
	c.version, c.written = v, gen
	if seal != nil {
		c.segs, c.last = head.Segments, head.Last
		for obj, o := range seal {
			c.sealed[obj] = o.st
			if c.open[obj].gen == o.gen { // not updated since
				delete(c.open, obj)
			}
		}
	}
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
