package fsstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketq/bucketq/manifest"
	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/castest"
	"github.com/bucketq/bucketq/manifest/cas/fsstore"
)

func newStore(t *testing.T, dir string) *fsstore.Store {
	t.Helper()
	s, err := fsstore.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAcceptance(t *testing.T) {
	castest.Run(t, func(t *testing.T) cas.Store { return newStore(t, t.TempDir()) })
}

// TestHandPlacedManifest: a file put in the directory by hand (or a copied
// directory) is read as is and can be updated with its content-hash
// version; the store needs no side state.
func TestHandPlacedManifest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m := &manifest.Manifest{NextSequence: 7, Epoch: 3}
	if err := os.MkdirAll(filepath.Join(dir, "q"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "q", "manifest"), m.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, dir)
	b, v, err := s.Read(ctx, "q/manifest")
	if err != nil {
		t.Fatal(err)
	}
	if v != fsstore.VersionOf(m.Encode()) {
		t.Fatalf("version %s, want the content hash %s", v, fsstore.VersionOf(m.Encode()))
	}
	got, err := manifest.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.NextSequence != 7 || got.Epoch != 3 {
		t.Fatalf("read manifest next_sequence=%d epoch=%d, want 7 and 3", got.NextSequence, got.Epoch)
	}

	// Copy the directory: the copy has the same versions and accepts CAS.
	copyDir := t.TempDir()
	if err := os.CopyFS(copyDir, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	q := manifest.NewQueue(newStore(t, copyDir), "q/manifest", manifest.Options{})
	seqs, err := q.Append(ctx, manifest.NewEntry{Location: "data/a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 1 || seqs[0] != 7 {
		t.Fatalf("append to the copied manifest got sequences %v, want [7]", seqs)
	}
	// The original is untouched and still at its version.
	if _, v2, err := s.Read(ctx, "q/manifest"); err != nil || v2 != v {
		t.Fatalf("original after appending to the copy: version %s err %v, want %s", v2, err, v)
	}
}

// TestLockFileHoldsNoState: deleting the lock file between writes changes
// nothing.
func TestLockFileHoldsNoState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, dir)
	v, err := s.WriteIf(ctx, "a/m", []byte("1"), "")
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, "a", "m"+fsstore.LockSuffix)
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("lock file: %v", err)
	}
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteIf(ctx, "a/m", []byte("2"), v); err != nil {
		t.Fatalf("write after deleting the lock file: %v", err)
	}
	// No temporary files are left behind.
	ents, err := os.ReadDir(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "m" && e.Name() != "m"+fsstore.LockSuffix {
			t.Errorf("unexpected file %s left in the directory", e.Name())
		}
	}
}

func TestBadNames(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, t.TempDir())
	for _, name := range []string{"", "/abs", "../up", "a/../../b", "a//b", "a/./b", "trailing/", "m.lock", "a/.bucketq-tmp-x", `a\b`} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			if _, _, err := s.Read(ctx, name); err == nil || errors.Is(err, cas.ErrNotExist) {
				t.Errorf("Read(%q) error = %v, want a bad-name error", name, err)
			} else if name != "" && !strings.Contains(err.Error(), strconv.Quote(name)) {
				t.Errorf("Read(%q) error %q does not name the object", name, err)
			}
			if _, err := s.WriteIf(ctx, name, []byte("x"), ""); err == nil || errors.Is(err, cas.ErrConflict) {
				t.Errorf("WriteIf(%q) error = %v, want a bad-name error", name, err)
			}
		})
	}
}

func TestDirectoryPaths(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, t.TempDir())
	if _, err := s.WriteIf(ctx, "f", []byte("x"), ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Read(ctx, "f/child"); !errors.Is(err, cas.ErrNotExist) {
		t.Fatalf("Read below a file: %v, want ErrNotExist", err)
	}
	// A directory (prefix of other objects) is not an object: reads say
	// ErrNotExist and writes fail with a plain error, not a conflict that
	// a CAS loop would retry forever.
	if _, err := s.WriteIf(ctx, "d/child", []byte("x"), ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Read(ctx, "d"); !errors.Is(err, cas.ErrNotExist) {
		t.Fatalf("Read of a directory: %v, want ErrNotExist", err)
	}
	for _, v := range []cas.Version{"", fsstore.VersionOf([]byte("x"))} {
		_, err := s.WriteIf(ctx, "d", []byte("y"), v)
		if err == nil || errors.Is(err, cas.ErrConflict) || !strings.Contains(err.Error(), "directory") {
			t.Fatalf("WriteIf on a directory path (version %q): %v, want a non-conflict directory error", v, err)
		}
	}
}

const (
	helperDirEnv  = "FSSTORE_HELPER_DIR"
	helperModeEnv = "FSSTORE_HELPER_MODE"
	helperIDEnv   = "FSSTORE_HELPER_ID"
	procs         = 4
	goroutines    = 2
	incsPerG      = 25
	appendsPerP   = 20
)

// TestHelperProcess is the body of one process of TestMultiProcess; it
// skips unless re-executed by it.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper for TestMultiProcess")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	s := newStore(t, dir)
	id := os.Getenv(helperIDEnv)
	switch os.Getenv(helperModeEnv) {
	case "counter":
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < incsPerG; i++ {
					if err := castest.Increment(ctx, s, "shared/counter", nil); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	case "queue":
		q := manifest.NewQueue(s, "shared/manifest", manifest.Options{RetryTimeout: 40 * time.Second})
		for i := 0; i < appendsPerP; i++ {
			if _, err := q.Append(ctx, manifest.NewEntry{Location: fmt.Sprintf("p%s/%d", id, i)}); err != nil {
				t.Fatal(err)
			}
		}
	default:
		t.Fatalf("unknown helper mode %q", os.Getenv(helperModeEnv))
	}
}

// runHelpers starts procs copies of the test binary in the given mode on
// dir and waits for all of them.
func runHelpers(t *testing.T, dir, mode string) {
	t.Helper()
	var wg sync.WaitGroup
	outs := make([][]byte, procs)
	errs := make([]error, procs)
	for p := 0; p < procs; p++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.timeout=50s")
		cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperModeEnv+"="+mode, helperIDEnv+"="+strconv.Itoa(p))
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[p], errs[p] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for p := range errs {
		if errs[p] != nil {
			t.Fatalf("helper process %d (%s): %v\n%s", p, mode, errs[p], outs[p])
		}
	}
}

// TestMultiProcess: several OS processes CAS-increment one counter and
// append to one manifest; nothing is lost or doubled.
func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, dir)
	if _, err := s.WriteIf(ctx, "shared/counter", []byte("0"), ""); err != nil {
		t.Fatal(err)
	}
	t.Run("counter", func(t *testing.T) {
		runHelpers(t, dir, "counter")
		b, _, err := s.Read(ctx, "shared/counter")
		if err != nil {
			t.Fatal(err)
		}
		if want := strconv.Itoa(procs * goroutines * incsPerG); string(b) != want {
			t.Fatalf("counter = %s after %d processes × %d goroutines × %d increments, want %s", b, procs, goroutines, incsPerG, want)
		}
	})
	t.Run("queue", func(t *testing.T) {
		runHelpers(t, dir, "queue")
		m, err := manifest.NewQueue(s, "shared/manifest", manifest.Options{}).Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Entries) != procs*appendsPerP || m.NextSequence != uint64(procs*appendsPerP) {
			t.Fatalf("manifest has %d entries, next_sequence %d; want %d of each", len(m.Entries), m.NextSequence, procs*appendsPerP)
		}
		seen := map[string]bool{}
		for i, e := range m.Entries {
			if e.Sequence != uint64(i) {
				t.Fatalf("entry %d has sequence %d", i, e.Sequence)
			}
			if seen[e.Location] {
				t.Fatalf("location %s appended twice", e.Location)
			}
			seen[e.Location] = true
		}
		for p := 0; p < procs; p++ {
			for i := 0; i < appendsPerP; i++ {
				if l := fmt.Sprintf("p%d/%d", p, i); !seen[l] {
					t.Fatalf("location %s missing from the manifest", l)
				}
			}
		}
	})
}
