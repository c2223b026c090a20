package journal

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bucketq/bucketq/internal/objname"
	"github.com/bucketq/bucketq/manifest"
	"github.com/thanos-io/objstore/providers/filesystem"
)

// A writer killed mid-upload on a directory bucket leaves a temporary file
// under the journal prefix. It is no stray object (replay must not fail on
// it) and Sweep deletes it once it is older than the retention, so a crash
// leaves nothing behind for ever.
func TestSweepDeletesAbandonedTempFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bkt, err := filesystem.NewBucket(dir)
	if err != nil {
		t.Fatal(err)
	}
	j, err := New(bkt, Config{Prefix: "ingest/journal", Retention: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seg, err := j.Write(ctx, []manifest.Entry{{Sequence: 1, Location: "ingest/data/a.batch"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "ingest/journal", objname.TempPrefix+"old")
	fresh := filepath.Join(dir, "ingest/journal", objname.TempPrefix+"fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(old, time.Now().Add(-2*time.Hour), time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}

	segs, stray, err := j.ListStray(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 || segs[0].Name != seg || len(stray) != 0 {
		t.Fatalf("ListStray = %v, stray %v; want only %s and no stray object", segs, stray, seg)
	}
	if _, _, err := j.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("abandoned temporary file older than the retention still there (stat: %v)", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("temporary file younger than the retention (maybe an upload in progress) deleted: %v", err)
	}
	if segs, err := j.List(ctx); err != nil || len(segs) != 1 {
		t.Errorf("live segment gone after Sweep: %v, %v", segs, err)
	}
}
