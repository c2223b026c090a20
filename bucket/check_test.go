package bucket

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	for _, tc := range []struct {
		yaml, wantErr string
	}{
		{"type: FILESYSTEM\nconfig: {directory: /tmp/x}", ""},
		{"type: s3\nconfig: {bucket: b, endpoint: e}", ""},
		{"type: GCS\nconfig: {bucket: b}", ""},
		{"", "empty YAML"},
		{"config: {}", `"type" is missing`},
		{"type: S3\nconfgi: {}", "confgi"},
		{"type: SWIFT\nconfig: {}", "no conditional-write"},
		{"type: FILESYSTEM\nconfig: {}", `"directory" is missing`},
	} {
		err := CheckConfig([]byte(tc.yaml))
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("CheckConfig(%q) = %v, want error containing %q", tc.yaml, err, tc.wantErr)
		}
	}
}

func TestFilesystemDirectoryAndCheckDir(t *testing.T) {
	dir := t.TempDir()
	if got := FilesystemDirectory([]byte("type: filesystem\nconfig: {directory: " + dir + "/}")); got != dir {
		t.Fatalf("FilesystemDirectory = %q, want %q", got, dir)
	}
	if got := FilesystemDirectory([]byte("type: S3\nconfig: {bucket: b}")); got != "" {
		t.Fatalf("FilesystemDirectory(S3) = %q", got)
	}
	if err := CheckDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(filepath.Join(dir, "missing")); !errors.Is(err, ErrDirMissing) {
		t.Fatalf("missing: %v", err)
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(f); !errors.Is(err, ErrDirNotADir) {
		t.Fatalf("file: %v", err)
	}
}
