package deadletter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/thanos-io/objstore"
	"golang.org/x/sync/errgroup"
)

// Reader defaults.
const (
	DefaultChunk    = 1000 // objects read (and re-driven) per round
	DefaultParallel = 8    // GETs and DELETEs in flight
)

// Reader lists and reads the dead letters under Prefix, verifying each.
type Reader struct {
	Bucket objstore.Bucket
	// Prefix is the dead-letter prefix; a trailing "/" is optional.
	Prefix string
	// Reason keeps only the dead letters with this reason (and every
	// unreadable one); "" keeps all.
	Reason string
	// Chunk is how many objects Each reads per round (DefaultChunk);
	// Parallel how many GETs run at once (DefaultParallel).
	Chunk, Parallel int
	// OnListed, if set, is called every 10000 objects listed;
	// OnProgress after each round when there are several.
	OnListed   func(listed int)
	OnProgress func(done, total int)
}

// Item is one dead-letter object as read.
type Item struct {
	Name   string
	Letter Letter
	Err    error // the object could not be read or decoded
	// Damaged: Err wraps ErrDamaged (a checksum mismatch, not JSON, an
	// unknown version): never sent, deleted or rewritten.
	Damaged bool
	// Unverified: a version 1 object (no checksum), read as before.
	Unverified bool
}

// Dir is the prefix with its trailing "/".
func (r *Reader) Dir() string { return strings.Trim(r.Prefix, "/") + "/" }

func (r *Reader) parallel() int {
	if r.Parallel > 0 {
		return r.Parallel
	}
	return DefaultParallel
}

// Names lists the dead-letter objects (the .json ones; batch copies are
// reached through their marker), in name order, which is sequence order.
// With a reason filter, objects whose name says another reason are left
// out without being read.
func (r *Reader) Names(ctx context.Context) ([]string, error) {
	var out []string
	seen := 0
	dir := r.Dir()
	err := r.Bucket.Iter(ctx, dir, func(name string) error {
		seen++
		if seen%10000 == 0 && r.OnListed != nil {
			r.OnListed(seen)
		}
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(path.Base(name), ".") {
			return nil
		}
		if rn := ReasonFromName(name); r.Reason != "" && rn != "" && rn != r.Reason {
			return nil
		}
		out = append(out, name)
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	sort.Strings(out)
	return out, nil
}

// Read gets and decodes names with a few parallel GETs, in order.
func (r *Reader) Read(ctx context.Context, names []string) []Item {
	items := make([]Item, len(names))
	var g errgroup.Group
	g.SetLimit(r.parallel())
	for i := range names {
		g.Go(func() error { items[i] = r.ReadOne(ctx, names[i]); return nil })
	}
	_ = g.Wait()
	return items
}

// ReadOne gets and decodes one dead letter.
func (r *Reader) ReadOne(ctx context.Context, name string) Item {
	it := Item{Name: name}
	b, err := r.Get(ctx, name)
	if err != nil {
		it.Err = err
		return it
	}
	it.Letter, it.Err = Decode(b)
	if it.Err != nil {
		it.Damaged = errors.Is(it.Err, ErrDamaged)
		return it
	}
	it.Unverified = it.Letter.Version == 0
	return it
}

// Get reads one object's bytes.
func (r *Reader) Get(ctx context.Context, name string) ([]byte, error) {
	rc, err := r.Bucket.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Each reads the dead letters in rounds of Chunk objects and calls fn
// with the ones that match the reason filter (and every unreadable one).
// It returns how many of the total objects were processed.
func (r *Reader) Each(ctx context.Context, fn func([]Item) error) (processed, total int, err error) {
	names, err := r.Names(ctx)
	if err != nil {
		return 0, 0, err
	}
	chunk := r.Chunk
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	for start := 0; start < len(names); start += chunk {
		end := min(start+chunk, len(names))
		items := r.Read(ctx, names[start:end])
		if err := ctx.Err(); err != nil {
			return start, len(names), err
		}
		kept := items[:0]
		for _, it := range items {
			if it.Err == nil && r.Reason != "" && it.Letter.Reason != r.Reason {
				continue
			}
			kept = append(kept, it)
		}
		if err := fn(kept); err != nil {
			return end, len(names), err
		}
		if len(names) > chunk && r.OnProgress != nil {
			r.OnProgress(end, len(names))
		}
	}
	return len(names), len(names), nil
}
