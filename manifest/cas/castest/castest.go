// Package castest is the acceptance suite every cas.Store provider must
// pass: Run checks the read/create-only/compare-and-swap semantics the
// manifest protocol relies on, including under concurrent writers.
package castest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketq/bucketq/manifest/cas"
)

// timeout bounds every case; a provider that hangs fails instead of
// stalling the whole test binary.
const timeout = 3 * time.Minute

// Run runs the acceptance suite. newStore is called once per case and may
// return a store shared with other cases: every case uses object names
// under its own random prefix.
func Run(t *testing.T, newStore func(t *testing.T) cas.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s cas.Store, p string)
	}{
		{"ReadMissing", testReadMissing},
		{"CreateOnlyTwice", testCreateOnlyTwice},
		{"WriteIfCurrent", testWriteIfCurrent},
		{"WriteIfStale", testWriteIfStale},
		{"WriteIfVersionOnMissing", testWriteIfVersionOnMissing},
		{"NamesWithSlashes", testNamesWithSlashes},
		{"Payloads", testPayloads},
		{"RaceSameVersion", testRaceSameVersion},
		{"Counter", testCounter},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			s := newStore(t)
			c.fn(t, ctx, s, uniquePrefix(c.name))
		})
	}
}

func uniquePrefix(name string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "castest-" + hex.EncodeToString(b[:]) + "/" + name + "/"
}

// mustRead reads name and fails the test on any error.
func mustRead(t *testing.T, ctx context.Context, s cas.Store, name string) ([]byte, cas.Version) {
	t.Helper()
	b, v, err := s.Read(ctx, name)
	if err != nil {
		t.Fatalf("Read(%q): %v", name, err)
	}
	if v == "" {
		t.Fatalf("Read(%q) returned the empty version for an existing object", name)
	}
	return b, v
}

// mustWrite writes name at version v and fails the test on any error.
func mustWrite(t *testing.T, ctx context.Context, s cas.Store, name string, data []byte, v cas.Version) cas.Version {
	t.Helper()
	nv, err := s.WriteIf(ctx, name, data, v)
	if err != nil {
		t.Fatalf("WriteIf(%q, %d bytes, version %q): %v", name, len(data), v, err)
	}
	if nv == "" {
		t.Fatalf("WriteIf(%q) succeeded but returned the empty version", name)
	}
	return nv
}

// wantContent checks that name holds data at version v (v may be empty to
// skip the version check).
func wantContent(t *testing.T, ctx context.Context, s cas.Store, name string, data []byte, v cas.Version) {
	t.Helper()
	got, gv := mustRead(t, ctx, s, name)
	if !bytes.Equal(got, data) {
		t.Fatalf("Read(%q) = %d bytes %q..., want %d bytes %q...", name, len(got), head(got), len(data), head(data))
	}
	if v != "" && gv != v {
		t.Fatalf("Read(%q) version = %q, want %q (the version WriteIf returned)", name, gv, v)
	}
}

func head(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

func testReadMissing(t *testing.T, ctx context.Context, s cas.Store, p string) {
	for _, name := range []string{p + "missing", p + "deep/er/missing"} {
		b, v, err := s.Read(ctx, name)
		if !errors.Is(err, cas.ErrNotExist) {
			t.Fatalf("Read(%q) error = %v, want ErrNotExist", name, err)
		}
		if b != nil || v != "" {
			t.Fatalf("Read(%q) of a missing object returned data %q version %q", name, b, v)
		}
	}
}

func testCreateOnlyTwice(t *testing.T, ctx context.Context, s cas.Store, p string) {
	name := p + "obj"
	v1 := mustWrite(t, ctx, s, name, []byte("first"), "")
	wantContent(t, ctx, s, name, []byte("first"), v1)
	for _, data := range [][]byte{[]byte("second"), []byte("first")} {
		_, err := s.WriteIf(ctx, name, data, "")
		if !errors.Is(err, cas.ErrConflict) {
			t.Fatalf("second create-only WriteIf(%q, %q) error = %v, want ErrConflict", name, data, err)
		}
		wantContent(t, ctx, s, name, []byte("first"), v1)
	}
}

func testWriteIfCurrent(t *testing.T, ctx context.Context, s cas.Store, p string) {
	name := p + "obj"
	v := mustWrite(t, ctx, s, name, []byte("gen-0"), "")
	seen := map[cas.Version]int{v: 0}
	for i := 1; i <= 5; i++ {
		data := []byte("gen-" + strconv.Itoa(i))
		nv := mustWrite(t, ctx, s, name, data, v)
		if j, dup := seen[nv]; dup {
			t.Fatalf("WriteIf generation %d returned version %q, already returned by generation %d", i, nv, j)
		}
		seen[nv] = i
		wantContent(t, ctx, s, name, data, nv)
		v = nv
	}
}

func testWriteIfStale(t *testing.T, ctx context.Context, s cas.Store, p string) {
	name := p + "obj"
	v0 := mustWrite(t, ctx, s, name, []byte("zero"), "")
	v1 := mustWrite(t, ctx, s, name, []byte("one"), v0)
	v2 := mustWrite(t, ctx, s, name, []byte("two"), v1)
	for _, stale := range []cas.Version{v0, v1} {
		_, err := s.WriteIf(ctx, name, []byte("stale write"), stale)
		if !errors.Is(err, cas.ErrConflict) {
			t.Fatalf("WriteIf with stale version %q error = %v, want ErrConflict", stale, err)
		}
		wantContent(t, ctx, s, name, []byte("two"), v2)
	}
}

func testWriteIfVersionOnMissing(t *testing.T, ctx context.Context, s cas.Store, p string) {
	// A real version of another object, and one the store never issued.
	other := mustWrite(t, ctx, s, p+"other", []byte("other"), "")
	for _, v := range []cas.Version{other, "0123456789abcdef"} {
		name := p + "missing"
		_, err := s.WriteIf(ctx, name, []byte("data"), v)
		if !errors.Is(err, cas.ErrConflict) {
			t.Fatalf("WriteIf(%q, version %q) on a missing object error = %v, want ErrConflict", name, v, err)
		}
		if _, _, err := s.Read(ctx, name); !errors.Is(err, cas.ErrNotExist) {
			t.Fatalf("after the failed WriteIf, Read(%q) error = %v, want ErrNotExist", name, err)
		}
	}
}

func testNamesWithSlashes(t *testing.T, ctx context.Context, s cas.Store, p string) {
	names := []string{p + "a/b/manifest", p + "a/manifest", p + "a/b/c/d/manifest"}
	vs := make([]cas.Version, len(names))
	for i, n := range names {
		vs[i] = mustWrite(t, ctx, s, n, []byte(n), "")
	}
	for i, n := range names {
		wantContent(t, ctx, s, n, []byte(n), vs[i])
		nv := mustWrite(t, ctx, s, n, []byte(n+"+1"), vs[i])
		wantContent(t, ctx, s, n, []byte(n+"+1"), nv)
	}
	if _, _, err := s.Read(ctx, p+"a/b"); !errors.Is(err, cas.ErrNotExist) {
		t.Fatalf("Read of a name that is only a prefix (%q) error = %v, want ErrNotExist", p+"a/b", err)
	}
}

func testPayloads(t *testing.T, ctx context.Context, s cas.Store, p string) {
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	big2 := append([]byte(nil), big...)
	big2[len(big2)/2] ^= 0xff
	tests := []struct {
		name        string
		first, next []byte
	}{
		{"empty-then-1MiB", []byte{}, big},
		{"1MiB-then-empty", big, []byte{}},
		{"1MiB-then-1MiB-one-byte-changed", big, big2},
		{"binary", []byte{0, 1, 2, 0xff, '\n', 0}, []byte{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := p + tc.name
			v := mustWrite(t, ctx, s, name, tc.first, "")
			wantContent(t, ctx, s, name, tc.first, v)
			nv := mustWrite(t, ctx, s, name, tc.next, v)
			wantContent(t, ctx, s, name, tc.next, nv)
		})
	}
}

// testRaceSameVersion: of N writers racing from one version exactly one
// wins. Rounds 3 and 4 have every writer write identical bytes, as two
// consumers fencing from the same epoch do: a store that reports success
// because "the stored bytes equal mine" (a tempting way to paper over a
// retried request answered 412) lets both believe they won.
func testRaceSameVersion(t *testing.T, ctx context.Context, s cas.Store, p string) {
	const n = 8
	for round := 0; round < 5; round++ {
		identical := round >= 3
		payload := func(i int) []byte {
			if identical {
				return []byte("identical")
			}
			return []byte("writer-" + strconv.Itoa(i))
		}
		name := fmt.Sprintf("%srace-%d", p, round)
		v := mustWrite(t, ctx, s, name, []byte("base"), "")
		var (
			wg       sync.WaitGroup
			start    = make(chan struct{})
			wins     atomic.Int32
			winner   atomic.Int32
			winnerV  = make([]cas.Version, n)
			failures = make([]error, n)
		)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				nv, err := s.WriteIf(ctx, name, payload(i), v)
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store(int32(i))
					winnerV[i] = nv
				case !errors.Is(err, cas.ErrConflict):
					failures[i] = err
				}
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range failures {
			if err != nil {
				t.Fatalf("round %d writer %d: error %v, want success or ErrConflict", round, i, err)
			}
		}
		if got := wins.Load(); got != 1 {
			t.Fatalf("round %d (identical payloads: %v): %d of %d writers racing from the same version won, want exactly 1", round, identical, got, n)
		}
		w := winner.Load()
		wantContent(t, ctx, s, name, payload(int(w)), winnerV[w])
	}
}

func testCounter(t *testing.T, ctx context.Context, s cas.Store, p string) {
	const workers, increments = 8, 20
	name := p + "counter"
	mustWrite(t, ctx, s, name, []byte("0"), "")
	var (
		wg        sync.WaitGroup
		conflicts atomic.Int64
		errs      = make(chan error, workers)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < increments; i++ {
				if err := Increment(ctx, s, name, &conflicts); err != nil {
					errs <- fmt.Errorf("worker %d increment %d: %w", w, i, err)
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
	b, _ := mustRead(t, ctx, s, name)
	if got, want := string(b), strconv.Itoa(workers*increments); got != want {
		t.Fatalf("counter = %s after %d×%d CAS increments, want %s (lost or doubled updates; %d conflicts seen)",
			got, workers, increments, want, conflicts.Load())
	}
	t.Logf("counter reached %s with %d conflicts", b, conflicts.Load())
}

// Increment adds one to the decimal counter at name with a CAS loop,
// counting conflicts in conflicts (which may be nil). Multi-process tests of
// providers use it too.
func Increment(ctx context.Context, s cas.Store, name string, conflicts *atomic.Int64) error {
	for {
		b, v, err := s.Read(ctx, name)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(string(b))
		if err != nil {
			return fmt.Errorf("counter content %q: %w", b, err)
		}
		_, err = s.WriteIf(ctx, name, []byte(strconv.Itoa(n+1)), v)
		if err == nil {
			return nil
		}
		if !errors.Is(err, cas.ErrConflict) {
			return err
		}
		if conflicts != nil {
			conflicts.Add(1)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// LandedWriteIsNeverAConflict checks a store whose transport lets the first
// conditional write land and then loses its response: WriteIf must report
// an unknown outcome (not ErrConflict, which would claim "not written"),
// must have sent the write exactly once (sent reports how many were sent),
// and afterwards the object must hold the write and behave normally.
func LandedWriteIsNeverAConflict(t *testing.T, s cas.Store, name string, sent func() int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.WriteIf(ctx, name, []byte("mine"), "")
	if err == nil || errors.Is(err, cas.ErrConflict) {
		t.Fatalf("WriteIf whose response was lost: error %v, want an unknown-outcome error (not ErrConflict)", err)
	}
	if n := sent(); n != 1 {
		t.Fatalf("conditional write sent %d times, want exactly once", n)
	}
	got, v, err := s.Read(ctx, name)
	if err != nil || string(got) != "mine" {
		t.Fatalf("Read after the landed write = %q, %v; want %q", got, err, "mine")
	}
	// Now a real conflict: same bytes, create-only again.
	if _, err := s.WriteIf(ctx, name, []byte("mine"), ""); !errors.Is(err, cas.ErrConflict) {
		t.Fatalf("create-only on the existing object: %v, want ErrConflict", err)
	}
	if _, err := s.WriteIf(ctx, name, []byte("next"), v); err != nil {
		t.Fatalf("WriteIf at the read version %q: %v", v, err)
	}
}

// RoundTrip creates name and reads it back: the content and the version
// WriteIf returned must come back. It is the smoke test for a store opened
// from configuration (the full suite runs on the store built directly).
func RoundTrip(t *testing.T, ctx context.Context, s cas.Store, name string) {
	t.Helper()
	data := []byte("hello")
	wantContent(t, ctx, s, name, data, mustWrite(t, ctx, s, name, data, ""))
}
