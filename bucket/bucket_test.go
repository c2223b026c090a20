package bucket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/thanos-io/objstore"

	"github.com/bucketq/bucketq/bucket"
	"github.com/bucketq/bucketq/internal/storetest"
	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
)

// checkSameNamespace proves the data bucket and the manifest store see
// the same objects: a manifest appended through the store is read back
// through the bucket, and an object uploaded through the bucket is read
// through the store.
func checkSameNamespace(t *testing.T, bkt objstore.Bucket, store cas.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := manifest.NewQueue(store, "ingest/manifest", manifest.Options{})
	if _, err := q.Append(ctx, manifest.NewEntry{Location: "ingest/data/batch-1"}); err != nil {
		t.Fatalf("append through the store: %v", err)
	}
	rc, err := bkt.Get(ctx, "ingest/manifest")
	if err != nil {
		t.Fatalf("the manifest written through the store is not visible through the bucket: %v", err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 1 || m.Entries[0].Location != "ingest/data/batch-1" {
		t.Fatalf("manifest through the bucket: %+v", m.Entries)
	}

	if err := bkt.Upload(ctx, "ingest/data/hand-made", bytes.NewReader([]byte("payload"))); err != nil {
		t.Fatal(err)
	}
	b, v, err := store.Read(ctx, "ingest/data/hand-made")
	if err != nil || string(b) != "payload" {
		t.Fatalf("object uploaded through the bucket, read through the store: %q, %v", b, err)
	}
	if _, err := store.WriteIf(ctx, "ingest/data/hand-made", []byte("next"), v); err != nil {
		t.Fatalf("CAS on an object the bucket wrote: %v", err)
	}
	if _, err := store.WriteIf(ctx, "ingest/data/hand-made", []byte("stale"), v); !errors.Is(err, cas.ErrConflict) {
		t.Fatalf("stale CAS: %v, want ErrConflict", err)
	}
}

func TestOpenFilesystem(t *testing.T) {
	for _, prefix := range []string{"", "tenant/a", "/slashy/"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			dir := t.TempDir()
			y := fmt.Sprintf("type: FILESYSTEM\nconfig:\n  directory: %s\nprefix: %q\n", dir, prefix)
			bkt, store, err := bucket.Open(context.Background(), []byte(y), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("Open(%s): %v", y, err)
			}
			defer bkt.Close()
			checkSameNamespace(t, bkt, store)
			// The store's files are where objstore's are.
			want := filepath.Join(dir, strings.Trim(prefix, "/"), "ingest", "manifest")
			if _, err := filepath.Glob(want); err != nil {
				t.Fatal(err)
			}
			if matches, _ := filepath.Glob(want); len(matches) != 1 {
				t.Fatalf("manifest file not at %s", want)
			}
		})
	}
}

func TestOpenDir(t *testing.T) {
	dir := t.TempDir()
	bkt, store, err := bucket.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	checkSameNamespace(t, bkt, store)
	if _, _, err := bucket.OpenDir(""); err == nil {
		t.Fatal("OpenDir(\"\") succeeded")
	}
}

// TestOpenS3 runs against the real S3 server (versitygw under make test),
// with a unique prefix.
func TestOpenS3(t *testing.T) {
	y := storetest.S3BucketYAML(t)
	bkt, store, err := bucket.Open(context.Background(), y, nil)
	if err != nil {
		t.Fatalf("Open(%s): %v", y, err)
	}
	defer bkt.Close()
	checkSameNamespace(t, bkt, store)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, yaml string
		want       []string // substrings the error must contain
	}{
		{"empty", "", []string{"empty"}},
		{"no type", "config:\n  directory: " + dir + "\n", []string{`"type"`}},
		{"unknown top key", "type: FILESYSTEM\nconfig:\n  directory: " + dir + "\nprefx: p\n", []string{"prefx"}},
		{"provider without CAS", "type: SWIFT\nconfig: {}\n", []string{`"SWIFT"`, "FILESYSTEM", "S3"}},
		{"bogus provider", "type: NOPE\n", []string{`"NOPE"`}},
		{"filesystem without directory", "type: FILESYSTEM\nconfig: {}\n", []string{"directory"}},
		{"s3 without bucket", "type: S3\nconfig:\n  endpoint: 127.0.0.1:1\n", []string{"bucket"}},
		{"s3 misspelt key", "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:1\n  acess_key: x\n", []string{"acess_key"}},
		{"not yaml", "type: [", []string{"bucket config"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := bucket.Open(context.Background(), []byte(tc.yaml), nil)
			if err == nil {
				t.Fatalf("Open(%q) succeeded", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestWithCAS: an opener given to Open is used (and gets the whole YAML),
// the prefix is applied to its store by Open, and other Open calls keep the
// built-in one (no global state: the test may run in parallel).
func TestWithCAS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var got []byte
	rec := &recordingStore{}
	withRec := bucket.WithCAS("filesystem", func(ctx context.Context, confYAML []byte) (cas.Store, error) {
		got = confYAML
		return rec, nil
	})
	y := "type: FILESYSTEM\nconfig:\n  directory: " + dir + "\nprefix: pre\n"
	plainBkt, plain, err := bucket.Open(context.Background(), []byte(y), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plainBkt.Close()
	_, _, _ = plain.Read(context.Background(), "m")
	if rec.last != "" {
		t.Fatal("an Open without WithCAS used the opener given to another Open")
	}
	bkt, store, err := bucket.Open(context.Background(), []byte(y), nil, withRec)
	if err != nil {
		t.Fatal(err)
	}
	defer bkt.Close()
	if string(got) != y {
		t.Fatalf("opener got %q, want the whole YAML", got)
	}
	_, _, _ = store.Read(context.Background(), "m")
	if rec.last != "pre/m" {
		t.Fatalf("registered store was asked for %q, want \"pre/m\"", rec.last)
	}
}

type recordingStore struct{ last string }

func (r *recordingStore) Read(_ context.Context, name string) ([]byte, cas.Version, error) {
	r.last = name
	return nil, "", cas.ErrNotExist
}

func (r *recordingStore) WriteIf(_ context.Context, name string, _ []byte, _ cas.Version) (cas.Version, error) {
	r.last = name
	return "", cas.ErrConflict
}
