package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bucketq/bucketq/manifest/cas"
)

// CheckpointVersion is the version of the checkpoint objects written.
const CheckpointVersion = 1

// Checkpoint is the JSON body of a job's checkpoint object (RFC 0006,
// "Imported rows"): per source object, how far the import got. It is
// written only after the rows it counts are durable in the queue, and with
// a conditional write, so two imports of one job at once fail instead of
// overwriting each other's progress.
type Checkpoint struct {
	Version int                    `json:"version"`
	Job     string                 `json:"job"`
	Objects map[string]ObjectState `json:"objects"`
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

// checkpointer keeps the checkpoint and writes it, group-committing the
// updates of concurrent workers: a caller returns once a write holding its
// update succeeded.
type checkpointer struct {
	store cas.Store
	name  string
	dry   bool

	mu      sync.Mutex
	ck      Checkpoint
	gen     uint64
	written uint64
	version cas.Version

	wmu sync.Mutex // one write at a time
}

func loadCheckpoint(ctx context.Context, store cas.Store, name, job string, dry bool) (*checkpointer, error) {
	c := &checkpointer{store: store, name: name, dry: dry, ck: Checkpoint{Version: CheckpointVersion, Job: job, Objects: map[string]ObjectState{}}}
	b, v, err := store.Read(ctx, name)
	switch {
	case errors.Is(err, cas.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("read checkpoint %s: %w", name, err)
	}
	var ck Checkpoint
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt (hand-edited, bit-flipped) key must not silently reset a field
	if err := dec.Decode(&ck); err != nil {
		return nil, fmt.Errorf("checkpoint %s is not a checkpoint (%v): delete it to start job %q over", name, err, job)
	}
	if dec.More() {
		return nil, fmt.Errorf("checkpoint %s is not a checkpoint (data after its JSON object): delete it to start job %q over", name, job)
	}
	if ck.Version != CheckpointVersion {
		return nil, fmt.Errorf("checkpoint %s has version %d, this bucketq reads %d", name, ck.Version, CheckpointVersion)
	}
	if ck.Job != job {
		return nil, fmt.Errorf("checkpoint %s is of job %q, not %q: it was edited or copied; delete it to start job %q over", name, ck.Job, job, job)
	}
	for obj, st := range ck.Objects {
		if st.Rows < 0 || st.Size < 0 {
			return nil, fmt.Errorf("checkpoint %s: object %q has rows %d, size %d (negative): the checkpoint was edited or damaged; delete it to start job %q over", name, obj, st.Rows, st.Size, job)
		}
	}
	if ck.Objects == nil {
		ck.Objects = map[string]ObjectState{}
	}
	c.ck, c.version = ck, v
	return c, nil
}

func (c *checkpointer) get(name string) (ObjectState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.ck.Objects[name]
	return s, ok
}

// set records st for object name and returns once it is written.
func (c *checkpointer) set(ctx context.Context, name string, st ObjectState) error {
	c.mu.Lock()
	c.ck.Objects[name] = st
	c.gen++
	my := c.gen
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
	data, err := json.Marshal(c.ck)
	gen := c.gen
	c.mu.Unlock()
	if err != nil {
		return err
	}
	wait := 50 * time.Millisecond
	for {
		v, err := c.store.WriteIf(ctx, c.name, data, c.version)
		if err == nil {
			c.mu.Lock()
			c.version, c.written = v, gen
			c.mu.Unlock()
			return nil
		}
		if errors.Is(err, cas.ErrConflict) {
			// A retry of a write that landed but whose reply was lost
			// conflicts with itself: the stored bytes tell.
			if b, v, rerr := c.store.Read(ctx, c.name); rerr == nil && string(b) == string(data) {
				c.mu.Lock()
				c.version, c.written = v, gen
				c.mu.Unlock()
				return nil
			}
			return fmt.Errorf("checkpoint %s was changed by someone else (another import of job %q running?): %w", c.name, c.ck.Job, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("write checkpoint %s: %w", c.name, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("write checkpoint %s: %w", c.name, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
