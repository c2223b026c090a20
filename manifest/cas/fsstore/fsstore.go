// Package fsstore is a cas.Store on a plain local directory, safe for
// concurrent writers in several processes on one machine.
//
// An object name maps to the file at that slash-separated path under the
// root. The version of an object is the hex SHA-256 of its content, so the
// store keeps no side state: a directory copied elsewhere, or a manifest put
// there by hand, is read as is and can be updated with compare-and-swap. (A
// Store remembers the bytes it last wrote or read, and their version, only
// to skip hashing them again when a file holds exactly those bytes.)
//
// Content-hash versions are safe for the bucketq manifest because:
//
//   - The manifest's content never repeats: every write either appends
//     entries (next_sequence grows), fences (epoch grows) or dequeues
//     (entries shrink while next_sequence and epoch stay). No sequence of
//     writes returns to an earlier (next_sequence, epoch, entries), so a
//     hash seen once identifies one point in the manifest's history.
//   - Even where content does repeat (an ABA on some other object), a CAS
//     whose version matches the current hash was computed from content
//     byte-for-byte equal to the current content, so applying it has exactly
//     the effect it would have had on the content it read: a "stale" CAS
//     over equal content is harmless.
//
// Writing the same content twice returns the same version.
//
// Conditional writes serialise on an exclusive flock(2) of "<path>.lock",
// created on demand next to the object. The lock file holds no state and may
// be deleted when no writer runs; object names ending in ".lock" are
// rejected so they cannot collide with it. Updates write a temporary file in
// the same directory, fsync it, rename it over the object and fsync the
// directory, so a reader sees the old or the new content, never a mix, and a
// crash after WriteIf returns cannot lose the write. Create-only links the
// temporary file to the name, which fails if the name exists.
//
// flock is advisory and per machine: several machines sharing the directory
// over NFS or similar are not supported.
package fsstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/bucketq/bucketq/manifest/cas"
)

// LockSuffix is appended to an object's path to name its lock file.
const LockSuffix = ".lock"

// tmpPrefix starts the base name of temporary files; names whose last
// element starts with it are rejected.
const tmpPrefix = ".bucketq-tmp-"

// Store is a cas.Store on a directory. It is safe for concurrent use.
type Store struct {
	root string

	// The content last written or read, to skip re-hashing it: a
	// producer reads the manifest it last wrote and WriteIf reads it again
	// to check the version, so comparing with the bytes last seen (a
	// memcmp) replaces two of the three SHA-256 sums per commit. Equal
	// bytes have the same hash, so a version taken from here is exactly
	// VersionOf(content).
	mu       sync.Mutex
	lastPath string
	lastData []byte // reused: at most maxKnown bytes, one copy per Store
	lastV    cas.Version
}

// maxKnown bounds the content a Store keeps to skip re-hashing: one copy
// of the manifest at most this large.
const maxKnown = 4 << 20

// versionOf returns VersionOf(b) for the content b of file p, without
// hashing when b is the content last seen there.
func (s *Store) versionOf(p string, b []byte) cas.Version {
	s.mu.Lock()
	if s.lastV != "" && s.lastPath == p && bytes.Equal(s.lastData, b) {
		v := s.lastV
		s.mu.Unlock()
		return v
	}
	s.mu.Unlock()
	v := VersionOf(b)
	s.remember(p, b, v)
	return v
}

// remember keeps a copy of b, the content of p at version v.
func (s *Store) remember(p string, b []byte, v cas.Version) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(b) > maxKnown {
		s.lastPath, s.lastData, s.lastV = "", nil, ""
		return
	}
	s.lastPath, s.lastData, s.lastV = p, append(s.lastData[:0], b...), v
}

// New returns a store rooted at dir, creating dir if needed.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("fsstore: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("fsstore: directory %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("fsstore: create directory %q: %w", abs, err)
	}
	return &Store{root: abs}, nil
}

// Root is the store's absolute directory.
func (s *Store) Root() string { return s.root }

// VersionOf returns the version the store gives to content b.
func VersionOf(b []byte) cas.Version {
	sum := sha256.Sum256(b)
	return cas.Version(hex.EncodeToString(sum[:]))
}

// file maps an object name to its file path, rejecting names that could
// escape the root or collide with lock and temporary files.
func (s *Store) file(name string) (string, error) {
	if name == "" {
		return "", errors.New("fsstore: empty object name")
	}
	if strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("fsstore: object name %q: must be a relative slash-separated path", name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return "", fmt.Errorf("fsstore: object name %q: empty, \".\" or \"..\" path element", name)
		}
	}
	base := path.Base(name)
	if strings.HasSuffix(base, LockSuffix) || strings.HasPrefix(base, tmpPrefix) {
		return "", fmt.Errorf("fsstore: object name %q: names ending in %q or starting with %q are reserved", name, LockSuffix, tmpPrefix)
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

// Read implements cas.Store.
func (s *Store) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	p, err := s.file(name)
	if err != nil {
		return nil, "", err
	}
	b, err := readFile(p)
	if err != nil {
		return nil, "", err
	}
	return b, s.versionOf(p, b), nil
}

// readFile reads p; a missing file (or a missing parent) is cas.ErrNotExist.
func readFile(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err := readErr(p, err); err != nil {
		return nil, err
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// readErr is readFile's error for err from reading p.
func readErr(p string, err error) error {
	// A directory is a prefix of other objects, not an object, as in a bucket.
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) {
		return fmt.Errorf("%w: %s", cas.ErrNotExist, p)
	}
	if err != nil {
		return fmt.Errorf("fsstore: read %s: %w", p, err)
	}
	return nil
}

// readPool holds the buffers WriteIf reads the current content into: it
// only checks their version, so a commit allocates no copy of the manifest.
var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readFileInto is readFile into buf (reset first).
func readFileInto(p string, buf *bytes.Buffer) error {
	buf.Reset()
	f, err := os.Open(p)
	if err == nil {
		_, err = buf.ReadFrom(f)
		f.Close()
	}
	return readErr(p, err)
}

// WriteIf implements cas.Store.
func (s *Store) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	p, err := s.file(name)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if err := mkdirAllSynced(dir); err != nil {
		return "", fmt.Errorf("fsstore: create directory for %q: %w", name, err)
	}
	unlock, err := lockFile(ctx, p+LockSuffix)
	if err != nil {
		return "", fmt.Errorf("fsstore: lock %q: %w", name, err)
	}
	defer unlock()

	if v != "" {
		buf := readPool.Get().(*bytes.Buffer)
		defer func() {
			if buf.Cap() <= maxKnown {
				readPool.Put(buf)
			}
		}()
		err := readFileInto(p, buf)
		cur := buf.Bytes()
		if errors.Is(err, cas.ErrNotExist) {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				return "", isDirError(name)
			}
			return "", fmt.Errorf("%w: %s does not exist (expected version %s)", cas.ErrConflict, name, v)
		}
		if err != nil {
			return "", err
		}
		if cv := s.versionOf(p, cur); cv != v {
			return "", fmt.Errorf("%w: %s is at version %s, not %s", cas.ErrConflict, name, cv, v)
		}
	} else if fi, err := os.Lstat(p); err == nil {
		if fi.IsDir() {
			return "", isDirError(name)
		}
		return "", fmt.Errorf("%w: %s exists", cas.ErrConflict, name)
	}

	tmp, err := writeTemp(dir, data)
	if err != nil {
		return "", fmt.Errorf("fsstore: write %q: %w", name, err)
	}
	if v == "" {
		err = os.Link(tmp, p)
		_ = os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("%w: %s exists", cas.ErrConflict, name)
		}
		if err != nil {
			return "", fmt.Errorf("fsstore: create %q: %w", name, err)
		}
	} else if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("fsstore: replace %q: %w", name, err)
	}
	if err := SyncDir(dir); err != nil {
		return "", fmt.Errorf("fsstore: sync directory of %q: %w", name, err)
	}
	nv := VersionOf(data)
	s.remember(p, data, nv)
	return nv, nil
}

// isDirError is the (non-conflict) error for writing an object whose path
// is a directory holding other objects: a directory cannot be both.
func isDirError(name string) error {
	return fmt.Errorf("fsstore: cannot write object %q: its path is a directory of other objects", name)
}

// writeTemp writes data to a new temporary file in dir and fsyncs it.
func writeTemp(dir string, data []byte) (string, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// mkdirAllSynced is os.MkdirAll that also fsyncs the parent of every
// directory it creates, so a crash cannot forget the directory a manifest
// was just written into. When dir exists it costs one stat.
func mkdirAllSynced(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSynced(parent); err != nil {
			return err
		}
	}
	// Created meanwhile by another writer is fine; sync the parent anyway,
	// as that writer may not have yet.
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return SyncDir(parent)
}

// SyncDir fsyncs a directory, making the entries created, renamed or
// removed in it durable. The directory bucket (package bucket) uses it too.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
