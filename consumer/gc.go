package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/thanos-io/objstore"
)

// TimestampSlack is how much older than GCGracePeriod an unreferenced file
// must look before GC deletes it: one second of modification-time
// resolution (S3, GCS and Azure report whole seconds) plus one second of
// clock difference between producers and the store.
const TimestampSlack = 2 * time.Second

// CollectGarbage runs one GC cycle: it takes its cutoff time, reads the
// manifest, then (with a journal) deletes expired journal segments and
// reads the live ones, and then pages through the listing of DataPrefix,
// deleting each listed object that neither the manifest nor a live segment
// references and that is older than the cutoff — dequeued batches and
// orphans uploaded but never committed alike — as the listing streams. It
// decides by reference, never by name, and touches nothing outside
// DataPrefix. Failed deletions are counted and returned; the next cycle
// retries them.
//
// A cycle's memory is the referenced set (the manifest's entries plus the
// live segments' locations, bounded by queue length and journal_retention)
// and one listing page: it does not grow with the number of batch files
// (BenchmarkGCCycle).
func (c *Consumer) CollectGarbage(ctx context.Context) (int, error) {
	c.gcMu.Lock()
	defer c.gcMu.Unlock()
	start := time.Now()
	defer func() { c.m.GCDuration.Observe(time.Since(start).Seconds()) }()

	// Age is measured against the time just before the manifest read: a
	// producer's commit of a file is over at most 3/4 of the grace period
	// after the file's upload began (RFC 0002), so a file older than the
	// grace period then cannot be committed after the read, and one
	// committed before it is referenced (by the manifest, or once dequeued
	// by a journal segment). Stores report modification times in whole
	// seconds (S3's LastModified) and clocks differ a little, so a file must
	// look older than the grace period by TimestampSlack too: without it a
	// grace period of a few seconds deleted a batch that a commit landing
	// just after the read referenced (issue 9, item 4).
	//
	// The listing therefore need not precede the read: anything listed
	// that was uploaded or committed after the read is younger than the
	// cutoff. Listing last lets the cycle decide per name as the listing
	// streams instead of holding every name (issue 12).
	cutoff := c.now().Add(-c.cfg.GCGracePeriod - TimestampSlack)
	man, err := c.q.Read(ctx)
	if err != nil {
		return 0, fmt.Errorf("gc: %w", err)
	}
	refs := make(map[string]struct{}, len(man.Entries))
	for _, e := range man.Entries {
		refs[e.Location] = struct{}{}
	}
	man = nil
	deleted := 0
	var errs []error
	// The journal is read after the manifest (RFC 0004, rule 1): an entry
	// is always in the manifest or in a segment (journal before dequeue),
	// so this order cannot miss it. A live segment that cannot be read
	// leaves GC unable to tell what it references: nothing is deleted.
	if c.cfg.Journal != nil {
		keep, n, err := c.cfg.Journal.Sweep(ctx)
		if keep == nil {
			return 0, fmt.Errorf("gc: %w", err)
		}
		if n > 0 {
			c.log.Info("gc: deleted expired journal segments", "segments", n)
		}
		if err != nil {
			errs = append(errs, err)
		}
		for l := range keep {
			refs[l] = struct{}{}
		}
	}
	fail := func(err error) {
		c.m.GCFilesFailed.Inc()
		errs = append(errs, err)
	}
	dir := c.cfg.DataPrefix + "/"
	err = c.bkt.Iter(ctx, dir, func(name string) error {
		if strings.HasSuffix(name, "/") || !strings.HasPrefix(name, dir) {
			return nil
		}
		if _, ok := refs[name]; ok {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		attrs, err := c.bkt.Attributes(ctx, name)
		if err != nil {
			if !c.bkt.IsObjNotFoundErr(err) {
				fail(fmt.Errorf("gc: attributes of %s: %w", name, err))
			}
			return nil
		}
		if attrs.LastModified.IsZero() {
			c.log.Warn("gc: object has no modification time; keeping it", "object", name)
			return nil
		}
		if attrs.LastModified.After(cutoff) {
			return nil
		}
		if err := c.bkt.Delete(ctx, name); err != nil {
			if !c.bkt.IsObjNotFoundErr(err) {
				fail(fmt.Errorf("gc: delete %s: %w", name, err))
			}
			return nil
		}
		deleted++
		c.m.GCFilesDeleted.Inc()
		c.log.Debug("gc: deleted unreferenced batch", "object", name, "modified", attrs.LastModified)
		return nil
	}, objstore.WithRecursiveIter())
	if err != nil {
		errs = append(errs, fmt.Errorf("gc: list %s: %w", dir, err))
	}
	return deleted, errors.Join(errs...)
}

// gcLoop runs a GC cycle at start and every GCInterval until ctx ends.
func (c *Consumer) gcLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.GCInterval)
	defer t.Stop()
	for {
		n, err := c.CollectGarbage(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.log.Warn("gc cycle incomplete; retrying next cycle", "deleted", n, "error", err)
		} else if n > 0 {
			c.log.Info("gc cycle", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
