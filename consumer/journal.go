package consumer

import (
	"context"

	"github.com/bucketq/bucketq/manifest"
)

// journal writes the complete entries through `through` that are not yet
// journaled to one segment. It runs before every dequeue; without a
// journal it does nothing. Every entry this run dequeues is in r.done:
// a run starts at the manifest head after its fence and appends only add
// sequences above next_sequence, so each entry at or below through still
// in the manifest was read and completed by this run (RFC 0004).
func (r *run) journal(ctx context.Context, through uint64) error {
	j := r.c.cfg.Journal
	if j == nil || (r.haveJournaled && through <= r.journaledThrough) {
		return nil
	}
	var seg []manifest.Entry
	for _, e := range r.done {
		if e.Sequence > through {
			break
		}
		if !r.haveJournaled || e.Sequence > r.journaledThrough {
			seg = append(seg, e)
		}
	}
	if len(seg) > 0 {
		name, err := j.Write(ctx, seg, r.lease.Epoch())
		if err != nil {
			return err
		}
		r.c.log.Debug("journaled", "segment", name, "entries", len(seg))
	}
	r.haveJournaled, r.journaledThrough = true, through
	return nil
}

// journaled drops the dequeued entries from r.done and cross-checks
// Dequeue's answer: an entry it removed that this run did not journal
// cannot happen by the protocol; if it does, it is logged and journaled
// now (late, but not lost).
func (r *run) journaled(ctx context.Context, through uint64, removed []manifest.Entry) {
	j := r.c.cfg.Journal
	if j == nil {
		return
	}
	have := make(map[uint64]bool, len(r.done))
	i := 0
	for ; i < len(r.done) && r.done[i].Sequence <= through; i++ {
		have[r.done[i].Sequence] = true
	}
	r.done = append(r.done[:0:0], r.done[i:]...)
	var missing []manifest.Entry
	for _, e := range removed {
		if !have[e.Sequence] {
			missing = append(missing, e)
		}
	}
	if len(missing) == 0 {
		return
	}
	r.c.log.Error("dequeue removed entries this consumer had not journaled; journaling them now", "manifest", r.c.q.Path(),
		"first_sequence", missing[0].Sequence, "entries", len(missing))
	if _, err := j.Write(ctx, missing, r.lease.Epoch()); err != nil {
		r.c.log.Error("catch-up journal write failed; these entries are missing from the journal", "first_sequence", missing[0].Sequence, "last_sequence", missing[len(missing)-1].Sequence, "error", err)
	}
}
