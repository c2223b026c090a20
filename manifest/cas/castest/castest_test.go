package castest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/castest"
	"github.com/bucketq/bucketq/manifest/cas/memstore"
)

func TestMemstore(t *testing.T) {
	castest.Run(t, func(t *testing.T) cas.Store { return memstore.New() })
}

// brokenStores are stores with one seeded bug each; the suite must reject
// every one of them (TestSuiteCatchesBrokenStores).
var brokenStores = map[string]func() cas.Store{
	// Ignores the version: last writer wins, lost updates.
	"ignores-version": func() cas.Store { return &unconditional{memstore.New()} },
	// Reports success on a conflict when the stored bytes equal its own.
	"equal-bytes-is-success": func() cas.Store { return &equalIsSuccess{memstore.New()} },
	// Create-only overwrites an existing object.
	"create-overwrites": func() cas.Store { return &createOverwrites{memstore.New()} },
}

type unconditional struct{ *memstore.Store }

func (u *unconditional) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	if _, cur, err := u.Store.Read(ctx, name); err == nil {
		return u.Store.WriteIf(ctx, name, data, cur)
	}
	return u.Store.WriteIf(ctx, name, data, "")
}

type equalIsSuccess struct{ *memstore.Store }

func (e *equalIsSuccess) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	nv, err := e.Store.WriteIf(ctx, name, data, v)
	if errors.Is(err, cas.ErrConflict) {
		if cur, cv, rerr := e.Store.Read(ctx, name); rerr == nil && bytes.Equal(cur, data) {
			return cv, nil
		}
	}
	return nv, err
}

type createOverwrites struct{ *memstore.Store }

func (c *createOverwrites) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	if _, cur, err := c.Store.Read(ctx, name); err == nil && v == "" {
		return c.Store.WriteIf(ctx, name, data, cur)
	}
	return c.Store.WriteIf(ctx, name, data, v)
}

const helperEnv = "CASTTEST_BROKEN_STORE"

// TestBrokenStoreHelper runs the suite against one broken store when the
// test binary is re-executed by TestSuiteCatchesBrokenStores.
func TestBrokenStoreHelper(t *testing.T) {
	kind := os.Getenv(helperEnv)
	if kind == "" {
		t.Skip("helper for TestSuiteCatchesBrokenStores")
	}
	newStore := brokenStores[kind]
	castest.Run(t, func(t *testing.T) cas.Store { return newStore() })
}

func TestSuiteCatchesBrokenStores(t *testing.T) {
	for kind := range brokenStores {
		t.Run(kind, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStoreHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), helperEnv+"="+kind)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a store that %s:\n%s", kind, out)
			}
			if !strings.Contains(string(out), "--- FAIL") {
				t.Fatalf("helper failed without a test failure (%v):\n%s", err, out)
			}
		})
	}
}
