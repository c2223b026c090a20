package bucket

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/bucketq/bucketq/internal/objname"
	"github.com/bucketq/bucketq/manifest/cas/fsstore"
)

// TempPrefix starts the base name of the temporary file an Upload to a
// directory bucket writes before renaming it into place. It is the prefix
// fsstore uses for its own temporary files (and rejects as an object name),
// so one rule covers both. A file left behind by a crash is listed by Iter
// under its own hidden name, is referenced by no manifest entry, and is
// therefore deleted by the consumer's GC once it is older than the grace
// period, like any orphan.
const TempPrefix = objname.TempPrefix

// NewDurableFilesystem returns a FILESYSTEM bucket on dir whose Upload is
// crash-safe: the object is written to a temporary file in its target
// directory, fsynced, renamed into place, and the directory is fsynced, so
// once Upload returns the object survives an OS crash or power loss whole,
// and a reader never sees it half written. Parent directories Upload
// creates are fsynced into their own parents too.
//
// Delete removes the object and then only parent directories that are
// empty at that instant (rmdir), so it cannot remove an object another
// process uploads into the same directory meanwhile; objstore's filesystem
// Delete checks emptiness and then removes the directory recursively, which
// can.
//
// Everything else is objstore's filesystem bucket.
func NewDurableFilesystem(dir string) (objstore.Bucket, error) {
	fsb, err := filesystem.NewBucket(dir)
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &durableFS{Bucket: fsb, root: root, syncFile: (*os.File).Sync, syncDir: fsstore.SyncDir}, nil
}

// durableFS is objstore's filesystem bucket with a crash-safe Upload and a
// race-free Delete.
type durableFS struct {
	objstore.Bucket
	root string
	// syncFile and syncDir are the two fsyncs, per bucket so that a test
	// can record them (that they happen, and in which order) on its own
	// bucket while other tests run.
	syncFile func(*os.File) error
	syncDir  func(dir string) error
}

// path maps an object name to its file, refusing names that would land on
// the root itself, outside it, or on a temporary file's name.
func (b *durableFS) path(name string) (string, error) {
	if name == "" {
		return "", errors.New("object name is empty")
	}
	file, err := b.inside(name)
	if err != nil {
		return "", err
	}
	if file == b.root {
		return "", fmt.Errorf("object name %q: not a path inside the bucket directory", name)
	}
	if strings.HasPrefix(filepath.Base(file), TempPrefix) {
		return "", fmt.Errorf("object name %q: names starting with %q are reserved for temporary files", name, TempPrefix)
	}
	return file, nil
}

// inside maps an object name (or "" for the root) to its path, refusing
// one that leaves the bucket directory ("../../etc/passwd"): objstore's
// filesystem bucket joins names to its root as they come, so without this
// a name from the command line or a hostile manifest reads or deletes
// files outside the bucket.
func (b *durableFS) inside(name string) (string, error) {
	file := filepath.Join(b.root, name)
	if rel, err := filepath.Rel(b.root, file); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("object name %q: not a path inside the bucket directory", name)
	}
	return file, nil
}

// Get, GetRange, Exists, Attributes, Iter and IterWithAttributes are
// objstore's, after checking that the name stays inside the bucket.
func (b *durableFS) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if _, err := b.inside(name); err != nil {
		return nil, err
	}
	return b.Bucket.Get(ctx, name)
}

func (b *durableFS) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if _, err := b.inside(name); err != nil {
		return nil, err
	}
	return b.Bucket.GetRange(ctx, name, off, length)
}

func (b *durableFS) Exists(ctx context.Context, name string) (bool, error) {
	if _, err := b.inside(name); err != nil {
		return false, err
	}
	return b.Bucket.Exists(ctx, name)
}

func (b *durableFS) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	if _, err := b.inside(name); err != nil {
		return objstore.ObjectAttributes{}, err
	}
	return b.Bucket.Attributes(ctx, name)
}

func (b *durableFS) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	if _, err := b.inside(dir); err != nil {
		return err
	}
	return b.Bucket.Iter(ctx, dir, f, opts...)
}

func (b *durableFS) IterWithAttributes(ctx context.Context, dir string, f func(objstore.IterObjectAttributes) error, opts ...objstore.IterOption) error {
	if _, err := b.inside(dir); err != nil {
		return err
	}
	return b.Bucket.IterWithAttributes(ctx, dir, f, opts...)
}

// Upload writes r to name durably: temp file, fsync, rename, fsync of the
// directory. On any error the temporary file is removed and an existing
// object of that name is left as it was.
func (b *durableFS) Upload(ctx context.Context, name string, r io.Reader, _ ...objstore.ObjectUploadOption) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	file, err := b.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(file)
	tmp, err := b.createTemp(dir)
	if err != nil {
		return fmt.Errorf("upload %s: %w", name, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = os.Remove(tmp.Name())
		}
	}()
	err = copyTo(tmp, r)
	if err != nil {
		_ = tmp.Close()
		return fmt.Errorf("upload %s: copy to %s: %w", name, tmp.Name(), err)
	}
	if err := b.syncFile(tmp); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("upload %s: fsync %s: %w", name, tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("upload %s: close %s: %w", name, tmp.Name(), err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("upload %s: rename into place: %w", name, err)
	}
	committed = true
	if err := b.syncDir(dir); err != nil {
		return fmt.Errorf("upload %s: fsync directory %s: %w", name, dir, err)
	}
	return nil
}

// createTemp creates the temporary file in dir, creating dir (durably) if
// needed. A concurrent Delete may remove dir or a parent once empty,
// between creating it and creating the file in it; that is retried.
func (b *durableFS) createTemp(dir string) (*os.File, error) {
	var err error
	for range 10 {
		if err = b.mkdirDurable(dir); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		var f *os.File
		// 0o666 before umask, as objstore's os.Create.
		f, err = os.OpenFile(filepath.Join(dir, TempPrefix+hex.EncodeToString(rnd[:])), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

// copyBufs holds copyTo's buffers.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyTo copies r to f. A reader that can write itself (a file: sendfile or
// splice; a bytes.Reader) does; any other reader (a producer's batch comes
// wrapped by objstore's metrics) is copied through a pooled buffer, where
// io.Copy would have f.ReadFrom allocate 32 KiB per upload.
func copyTo(f *os.File, r io.Reader) error {
	if _, ok := r.(io.WriterTo); ok {
		_, err := io.Copy(f, r)
		return err
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	_, err := io.CopyBuffer(struct{ io.Writer }{f}, r, *buf)
	return err
}

// mkdirDurable creates dir and its missing parents, and fsyncs the parent
// of each directory it had to create so the new entries survive a crash.
// dir itself is fsynced by the Upload after its rename.
func (b *durableFS) mkdirDurable(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return &fs.PathError{Op: "mkdir", Path: d, Err: errors.New("not a directory")}
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, os.ModePerm); err != nil {
		return err
	}
	// Top down: a directory's entry is durable before its children's.
	for i := len(missing) - 1; i >= 0; i-- {
		if err := b.syncDir(filepath.Dir(missing[i])); err != nil {
			return fmt.Errorf("fsync directory %s: %w", filepath.Dir(missing[i]), err)
		}
	}
	return nil
}

// Delete removes name (recursively, as objstore's filesystem Delete does
// for a directory name), then removes parent directories below the root
// while they are empty. rmdir fails on a directory that is not empty, so an
// object uploaded meanwhile is never removed with its directory.
func (b *durableFS) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	file, err := b.inside(name)
	if err != nil {
		return err
	}
	if file == b.root {
		return nil // objstore's filesystem Delete does nothing here either
	}
	if err := os.RemoveAll(file); err != nil {
		return fmt.Errorf("rm %s: %w", file, err)
	}
	for dir := filepath.Dir(file); dir != b.root && strings.HasPrefix(dir, b.root+string(filepath.Separator)); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break // not empty (or already gone): leave it and its parents
		}
	}
	return nil
}
