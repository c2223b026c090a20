// Package defaults holds the defaults that the producer and the consumer
// must agree on, so that each takes them from one place: where batch files
// are written (and collected), and how old an unreferenced one must be
// before GC may delete it. producer.DefaultConfig and consumer.DefaultConfig
// (and through them the bucketq command) expose them.
package defaults

import "time"

const (
	// DataPrefix is where the producer writes batch files and the
	// consumer's GC looks for orphans.
	DataPrefix = "ingest/data"
	// GCGracePeriod is how old an unreferenced batch file must be before
	// the consumer's GC deletes it; the producer re-uploads or gives up on
	// batches well within it.
	GCGracePeriod = 10 * time.Minute
)
