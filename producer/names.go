package producer

import (
	"time"

	"github.com/bucketq/bucketq/internal/objname"
)

// ObjectStoreMinSealInterval is the cost cap (Config.MinSealInterval) that
// min_seal_interval's "auto" picks on an object store: at most 10 seals a
// second per producer (about $260 a month of S3 PUTs when busy all month),
// while a client sending a request every 100 ms or less often never waits
// for the cap (README: group commit and its cost). On a directory bucket,
// where a seal costs nothing but a file, auto is 0 (no cap).
const ObjectStoreMinSealInterval = 100 * time.Millisecond

// AutoMinSealInterval is min_seal_interval's "auto": 0 on a directory
// bucket, ObjectStoreMinSealInterval on an object store.
func AutoMinSealInterval(objectStore bool) time.Duration {
	if objectStore {
		return ObjectStoreMinSealInterval
	}
	return 0
}

// AutoPipelineDepth is the Config.PipelineDepth for a store: on an object
// store DefaultPipelineDepth (2), so the next batch's PUT overlaps the
// commit before it; on a directory bucket 1, where overlapping the two
// stages only splits the same requests into more batches, each costing
// two new files and four fsyncs of CPU (BENCHMARKS.md §2e).
func AutoPipelineDepth(objectStore bool) int {
	if objectStore {
		return DefaultPipelineDepth
	}
	return 1
}

// CheckManifestPath reports why p cannot be a manifest path (the object
// name rules of the bucketq command's manifest_path), or nil.
func CheckManifestPath(p string) error { return objname.Check(p) }

// CleanDataPrefix validates a data prefix as the bucketq command's
// data_prefix does and returns it without a trailing "/".
func CleanDataPrefix(p string) (string, error) { return objname.Prefix(p) }
