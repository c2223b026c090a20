// Package objname validates the object names and prefixes a user gives
// bucketq (config keys, command-line arguments), so that one name always
// means one object: only names already in clean form are accepted, and
// overlap between prefixes is decided on those clean names.
//
// A clean name is what path.Clean returns for it, relative and non-empty:
// no leading "/", no trailing "/", no empty ("//"), "." or ".." segments,
// no NUL, backslash or other control character. "ingest/./data",
// "ingest/data/.." and "./ingest" are refused rather than cleaned, because
// every store (S3 keys are opaque strings) and every comparison must see
// the same name; "../x" is refused because on a directory bucket it leaves
// the bucket.
package objname

import (
	"fmt"
	"path"
	"strings"
)

// Check reports why name is not a clean object name, or nil. The error
// names the value.
func Check(name string) error {
	if why := problem(name); why != "" {
		return fmt.Errorf("invalid object name %q: %s", name, why)
	}
	return nil
}

// Prefix validates an object name prefix and returns it without its
// trailing "/": a prefix may be written "ingest/data" or "ingest/data/"
// (both mean the objects under "ingest/data/"; bucketq has always trimmed
// that slash), but otherwise must be a clean name.
func Prefix(p string) (string, error) {
	trimmed := strings.TrimSuffix(p, "/")
	if why := problem(trimmed); why != "" {
		return "", fmt.Errorf("invalid object name %q: %s", p, why)
	}
	return trimmed, nil
}

func problem(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case strings.HasPrefix(name, "/"):
		return "must not start with / (names are relative to the bucket)"
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }):
		return "must not contain a backslash or control character"
	}
	for _, seg := range strings.Split(name, "/") {
		switch seg {
		case "":
			return "empty path segment (// or a trailing /)"
		case ".", "..":
			return fmt.Sprintf("%q path segment (%s)", seg, cleanHint(name))
		}
	}
	return ""
}

// Within reports whether the clean name is the clean prefix itself or an
// object under it.
func Within(name, prefix string) bool {
	return name == prefix || strings.HasPrefix(name, prefix+"/")
}

// Overlap reports whether two clean prefixes share any object name.
func Overlap(a, b string) bool { return Within(a, b) || Within(b, a) }

// cleanHint says what name would mean cleaned, for the error message only.
func cleanHint(name string) string {
	c := path.Clean(name)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") || strings.HasPrefix(c, "/") {
		return "it does not name an object inside the bucket"
	}
	return fmt.Sprintf("write the clean name %q", c)
}

// TempPrefix starts the base name of the temporary file a directory bucket
// (package bucket, fsstore) writes before renaming it into place. A file
// with it is never an object of ours: it is an upload in progress, or one
// left by a process killed mid-upload.
const TempPrefix = ".bucketq-tmp-"

// IsTemp reports whether name's last segment starts with TempPrefix.
func IsTemp(name string) bool {
	return strings.HasPrefix(path.Base(name), TempPrefix)
}
