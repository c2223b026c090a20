package keptdir

import (
	"os"
	"path/filepath"
	"testing"
)

// TestKeptUntilRemoveAll: a directory from New survives the end of the test
// that made it, and RemoveAll removes it.
func TestKeptUntilRemoveAll(t *testing.T) {
	var dir string
	t.Run("maker", func(t *testing.T) {
		dir = New(t)
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(filepath.Join(dir, "f")); err != nil {
		t.Fatalf("file gone after its test ended: %v", err)
	}
	other := New(t)
	if other == dir {
		t.Fatalf("New returned %s twice", dir)
	}
	RemoveAll()
	for _, d := range []string{dir, other} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("%s after RemoveAll: %v", d, err)
		}
	}
}
