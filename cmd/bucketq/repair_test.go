package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/format"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest"
)

// TestVerifyAndRepairDamagedManifest walks the operator's procedure on a
// directory bucket: inspect --verify names the damage (exit 1), repair
// --dry-run changes nothing, repair keeps every entry whose checksum
// verifies, saves the damaged object, and afterwards --verify passes
// (issue 9, item 11).
func TestVerifyAndRepairDamagedManifest(t *testing.T) {
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		bkt, _, err := bucket.OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		verifyAndRepair(t, bkt, []string{"--bucket-dir", dir})
	})
	t.Run("s3", func(t *testing.T) {
		yaml := storetest.S3BucketYAML(t)
		bkt, _, err := bucket.Open(context.Background(), yaml, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer bkt.Close()
		conf := filepath.Join(t.TempDir(), "s3.yaml")
		indented := "object_store:\n  " + strings.ReplaceAll(strings.TrimSpace(string(yaml)), "\n", "\n  ") + "\n"
		if err := os.WriteFile(conf, []byte(indented), 0o600); err != nil {
			t.Fatal(err)
		}
		verifyAndRepair(t, bkt, []string{"--config", conf})
	})
}

func verifyAndRepair(t *testing.T, bkt objstore.Bucket, bucket []string) {
	ctx := context.Background()
	put := func(name string, b []byte) {
		t.Helper()
		if err := bkt.Upload(ctx, name, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	get := func(name string) []byte {
		t.Helper()
		rc, err := bkt.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	exists := func(name string) bool {
		ok, err := bkt.Exists(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	var entries []manifest.Entry
	for i, name := range []string{"a", "b", "c"} {
		loc := "ingest/data/" + name + ".batch"
		b, err := format.EncodeBatch(format.CompressionNone, [][]byte{[]byte(`{"id":"` + name + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		put(loc, b)
		entries = append(entries, manifest.Entry{Sequence: uint64(10 + i), Location: loc, Metadata: []manifest.Metadata{{Payload: format.EventsHeader.Bytes()}}})
	}
	good := (&manifest.Manifest{NextSequence: 13, Epoch: 4, Entries: entries}).Encode()
	args := func(a ...string) []string { return append(a, bucket...) }

	put("ingest/manifest", good)
	if code, out, errOut := run(t, nil, args("inspect", "manifest", "--verify")...); code != 0 || !strings.Contains(out, "3 of 3 batches read and verified") {
		t.Fatalf("verify of a good manifest: exit %d, %q %q", code, out, errOut)
	}
	// A damaged batch is found by --verify.
	bad := get("ingest/data/c.batch")
	bad[3] ^= 1
	put("ingest/data/c.batch", bad)
	if code, out, _ := run(t, nil, args("inspect", "manifest", "--verify")...); code != 1 || !strings.Contains(out, "batch ingest/data/c.batch") || !strings.Contains(out, "checksum mismatch") {
		t.Fatalf("verify with a damaged batch: exit %d, %q", code, out)
	}
	fixed, _ := format.EncodeBatch(format.CompressionNone, [][]byte{[]byte(`{"id":"c"}`)})
	put("ingest/data/c.batch", fixed)

	// One bit of the second entry's location flipped.
	damaged := bytes.Clone(good)
	damaged[entries[0].EncodedLen()+4+20] ^= 0x01 // inside the second entry's location
	put("ingest/manifest", damaged)
	if code, _, errOut := run(t, nil, args("inspect", "manifest", "--verify")...); code != 1 || !strings.Contains(errOut, "DAMAGED") || !strings.Contains(errOut, "checksum mismatch") {
		t.Fatalf("verify of a damaged manifest: exit %d, %q", code, errOut)
	}
	code, out, errOut := run(t, nil, args("repair", "manifest", "--dry-run")...)
	if code != 0 || !strings.Contains(out, "keep 2 entries") || !strings.Contains(out, "DROP entry") || !strings.Contains(out, "dry run: nothing written") {
		t.Fatalf("repair --dry-run: exit %d, %q %q", code, out, errOut)
	}
	if cur := get("ingest/manifest"); !bytes.Equal(cur, damaged) {
		t.Fatal("repair --dry-run changed the manifest")
	}
	code, out, errOut = run(t, nil, args("repair", "manifest")...)
	if code != 0 || !strings.Contains(out, "repaired ingest/manifest") {
		t.Fatalf("repair: exit %d, %q %q", code, out, errOut)
	}
	var saved []string
	if err := bkt.Iter(ctx, "ingest/", func(name string) error {
		if strings.HasPrefix(name, "ingest/manifest.damaged-") && strings.HasSuffix(name, "Z") {
			saved = append(saved, name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(saved) != 1 {
		t.Fatalf("damaged copies %v, want one", saved)
	}
	if b := get(saved[0]); !bytes.Equal(b, damaged) {
		t.Fatal("the saved copy is not the damaged object")
	}
	m, err := manifest.Decode(get("ingest/manifest"))
	if err != nil {
		t.Fatalf("repaired manifest: %v", err)
	}
	if len(m.Entries) != 2 || m.Entries[0].Location != entries[0].Location || m.Entries[1].Location != entries[2].Location || m.NextSequence != 13 || m.Epoch <= 4 {
		t.Fatalf("repaired manifest %+v", m)
	}
	if code, out, errOut := run(t, nil, args("inspect", "manifest", "--verify")...); code != 0 {
		t.Fatalf("verify after repair: exit %d, %q %q", code, out, errOut)
	}
	if code, out, _ := run(t, nil, args("repair", "manifest")...); code != 0 || !strings.Contains(out, "nothing to repair") {
		t.Fatalf("second repair: exit %d, %q", code, out)
	}

	// A zero-byte manifest: verify fails; repair keeps nothing of it, lists
	// every batch file the queue no longer references (they may hold
	// acknowledged events) and, asked to, queues the CloudEvents ones again;
	// it deletes no batch file. An OTLP batch is listed, not requeued.
	otlp, _ := format.EncodeBatch(format.CompressionNone, [][]byte{{0x0a, 0x02, 0x08, 0x01}})
	put("ingest/data/d-otlp.batch", otlp)
	put("ingest/manifest", nil)
	if code, _, errOut := run(t, nil, args("inspect", "manifest", "--verify")...); code != 1 || !strings.Contains(errOut, "the object is empty") {
		t.Fatalf("verify of a zero-byte manifest: exit %d, %q", code, errOut)
	}
	code, out, errOut = run(t, nil, args("repair", "manifest", "--dry-run")...)
	if code != 0 || !strings.Contains(out, "keep 0 entries") || strings.Count(out, "(--requeue-unreferenced queues it again)") != 3 ||
		!strings.Contains(out, "unreferenced ingest/data/d-otlp.batch") || !strings.Contains(out, "GC deletes such files") {
		t.Fatalf("repair --dry-run of a zero-byte manifest: exit %d, %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, nil, args("repair", "manifest", "--requeue-unreferenced")...); code != 0 || strings.Count(out, "REQUEUE ") != 3 {
		t.Fatalf("repair --requeue-unreferenced: exit %d, %q %q", code, out, errOut)
	}
	m, err = manifest.Decode(get("ingest/manifest"))
	if err != nil {
		t.Fatal(err)
	}
	var requeued []string
	for _, e := range m.Entries {
		requeued = append(requeued, e.Location)
		if len(e.Metadata) != 1 || !bytes.Equal(e.Metadata[0].Payload, format.EventsHeader.Bytes()) {
			t.Fatalf("requeued entry %+v lacks the events header", e)
		}
	}
	if got := strings.Join(requeued, ","); got != "ingest/data/a.batch,ingest/data/b.batch,ingest/data/c.batch" {
		t.Fatalf("requeued %s", got)
	}
	for _, e := range entries {
		if !exists(e.Location) {
			t.Fatalf("repair removed %s", e.Location)
		}
	}
}
