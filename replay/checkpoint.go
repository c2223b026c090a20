package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// checkpoint is the file that lets an interrupted replay resume: the
// selection it belongs to and the highest sequence through which every
// selected event was sent. It is replaced atomically (write, fsync,
// rename), so a crash leaves the old or the new one, never a torn one.
type checkpoint struct {
	path     string
	Version  int    `json:"version"`
	Select   string `json:"selection"`
	Have     bool   `json:"have_through"`
	Through  uint64 `json:"through_sequence"`
	Complete bool   `json:"complete"`
}

// openCheckpoint starts a checkpoint for selection key. With resume it
// reads the existing file, which must be of the same selection; without,
// an existing file of an unfinished replay is refused rather than
// overwritten (the operator chooses --resume or removes it).
func openCheckpoint(path, key string, resume bool) (*checkpoint, error) {
	c := &checkpoint{path: path, Version: 1, Select: key}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if resume {
			return nil, fmt.Errorf("%w: --resume but %s does not exist", ErrBadCheckpoint, path)
		}
		return c, c.save()
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	var old checkpoint
	if err := json.Unmarshal(b, &old); err != nil || old.Version != 1 {
		return nil, fmt.Errorf("%w: %s is not a replay checkpoint (version 1 JSON)", ErrBadCheckpoint, path)
	}
	if !resume {
		if old.Complete {
			return c, c.save()
		}
		return nil, fmt.Errorf("%w: %s holds an unfinished replay of %q; pass --resume to continue it, or remove the file", ErrBadCheckpoint, path, old.Select)
	}
	if old.Select != key {
		return nil, fmt.Errorf("%w: %s belongs to the replay of %q, not %q; resume with the same selection and filters", ErrBadCheckpoint, path, old.Select, key)
	}
	if old.Complete {
		return nil, fmt.Errorf("%w: %s says that replay finished; nothing to resume", ErrBadCheckpoint, path)
	}
	old.path = path
	return &old, nil
}

func (c *checkpoint) save() error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), filepath.Base(c.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("replay: checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	// A failed write or sync must fail the checkpoint: a resume would
	// otherwise start from a state that never reached the disk.
	if _, err = tmp.Write(append(b, '\n')); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path)
	}
	if err != nil {
		return fmt.Errorf("replay: checkpoint %s: %w", c.path, err)
	}
	return nil
}
