// Package keptdir gives benchmarks directories that outlive each benchmark:
// New makes one under a per-process root, and RemoveAll, called from
// TestMain after m.Run, removes them all at the end.
//
// testing's TempDir removes a benchmark's files as it ends. On ext4 without
// a journal (this project's CI machines) a new inode is allocated past every
// inode freed in the last minute or more, one buffer lookup each, so the
// tens of thousands of batch files one benchmark deletes made every file
// the next benchmarks created several times dearer in CPU (BENCHMARKS.md
// §2e): the order of the benchmarks changed their results. The price: a
// package's benchmark files all stay on disk until its TestMain ends
// (for internal/benchsuite, every bucket its ingest benchmarks filled).
package keptdir

import (
	"os"
	"sync"
	"testing"
)

var (
	mu   sync.Mutex
	root string
)

// New returns a new empty directory, kept until RemoveAll.
func New(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if root == "" {
		r, err := os.MkdirTemp("", "bucketq-kept-")
		if err != nil {
			tb.Fatalf("keptdir: %v", err)
		}
		root = r
	}
	d, err := os.MkdirTemp(root, "d")
	if err != nil {
		tb.Fatalf("keptdir: %v", err)
	}
	return d
}

// RemoveAll removes every directory New returned in this process. Call it
// from TestMain after m.Run.
func RemoveAll() {
	mu.Lock()
	defer mu.Unlock()
	if root != "" {
		_ = os.RemoveAll(root)
		root = ""
	}
}
