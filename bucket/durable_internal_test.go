package bucket

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDurableUploadFsyncOrder records the fsyncs of an Upload: each
// directory Upload creates is fsynced into its parent first, then the
// temporary file (the object not yet visible under its name), then, after
// the rename, the object's directory.
func TestDurableUploadFsyncOrder(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	bkt, err := NewDurableFilesystem(root)
	if err != nil {
		t.Fatal(err)
	}
	b := bkt.(*durableFS)
	target := filepath.Join(root, "a", "b", "x.batch")
	var got []string
	exists := func() string {
		if _, err := os.Stat(target); err == nil {
			return "+target"
		}
		return "-target"
	}
	oldFile, oldDir := b.syncFile, b.syncDir
	b.syncFile = func(f *os.File) error {
		name := "file:" + filepath.Base(filepath.Dir(f.Name())) + "/"
		if strings.HasPrefix(filepath.Base(f.Name()), TempPrefix) {
			name += "TEMP"
		} else {
			name += filepath.Base(f.Name())
		}
		got = append(got, name+exists())
		return oldFile(f)
	}
	b.syncDir = func(dir string) error {
		rel, _ := filepath.Rel(root, dir)
		got = append(got, "dir:"+filepath.ToSlash(rel)+exists())
		return oldDir(dir)
	}

	ctx := context.Background()
	if err := b.Upload(ctx, "a/b/x.batch", bytes.NewReader([]byte("one"))); err != nil {
		t.Fatal(err)
	}
	if err := b.Upload(ctx, "a/b/x.batch", bytes.NewReader([]byte("two"))); err != nil {
		t.Fatal(err)
	}
	want := []string{
		// First upload: a and a/b are new.
		"dir:.-target", "dir:a-target", "file:b/TEMP-target", "dir:a/b+target",
		// Second: the directories exist.
		"file:b/TEMP+target", "dir:a/b+target",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("fsyncs:\n got %q\nwant %q", got, want)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "two" {
		t.Fatalf("object holds %q, %v; want \"two\"", b, err)
	}
}
