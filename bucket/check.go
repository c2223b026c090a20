package bucket

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/thanos-io/objstore"
)

// CheckConfig checks an objstore client YAML without opening anything: it
// parses strictly (a misspelt top-level key is named), needs a type, and
// that type must have a manifest (CAS) store. Provider-specific keys are
// checked by Open.
func CheckConfig(confYAML []byte) error {
	c, err := parse(confYAML)
	if err != nil {
		return err
	}
	if open, known := opener(strings.ToUpper(c.Type), nil); open == nil {
		return fmt.Errorf("bucket config: type %q has no conditional-write (CAS) store for the manifest; supported types: %s", c.Type, strings.Join(known, ", "))
	}
	if strings.EqualFold(c.Type, string(objstore.FILESYSTEM)) {
		if _, err := filesystemDir(c); err != nil {
			return fmt.Errorf("bucket config (type FILESYSTEM): %w", err)
		}
	}
	return nil
}

// FilesystemDirectory returns the directory of a FILESYSTEM objstore YAML,
// or "" if confYAML is not a readable FILESYSTEM config (then Open or
// CheckConfig says what is wrong).
func FilesystemDirectory(confYAML []byte) string {
	c, err := parse(confYAML)
	if err != nil || !strings.EqualFold(c.Type, string(objstore.FILESYSTEM)) {
		return ""
	}
	dir, err := filesystemDir(c)
	if err != nil {
		return ""
	}
	return dir
}

// Errors of CheckDir.
var (
	ErrDirMissing = errors.New("bucket directory does not exist")
	ErrDirNotADir = errors.New("bucket directory is not a directory")
)

// CheckDir reports whether dir can be opened as a directory bucket without
// creating it: opening a missing directory creates it, so a typo would
// start an empty queue. The error wraps ErrDirMissing or ErrDirNotADir, or
// is the stat error.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %q", ErrDirMissing, dir)
	case err != nil:
		return fmt.Errorf("bucket directory %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%w: %q", ErrDirNotADir, dir)
	}
	return nil
}
