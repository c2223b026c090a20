// Package cas defines the one small interface bucketq needs from object
// storage for its manifest: read an object with an opaque version token, and
// write it only if that version is still current (compare-and-swap). Each
// provider lives in its own subpackage; castest is the acceptance suite that
// every provider must pass.
package cas

import (
	"context"
	"errors"
)

// Version is an opaque token that identifies one stored content of an object
// (an ETag, a generation, a content hash). The empty Version means "the object
// does not exist" when passed to WriteIf.
type Version string

var (
	// ErrConflict is returned by WriteIf when the precondition failed: the
	// object exists although create-only was asked, or its version is no
	// longer the one given. The caller re-reads and retries.
	ErrConflict = errors.New("cas: conditional write conflict")
	// ErrNotExist is returned by Read when the object does not exist.
	ErrNotExist = errors.New("cas: object does not exist")
)

// Store reads and conditionally writes whole objects by name.
//
// Implementations must be safe for concurrent use, and WriteIf must be atomic
// with respect to every other writer of the same object, also in other
// processes and on other machines where the backend allows it.
type Store interface {
	// Read returns the object's bytes and version, or ErrNotExist.
	Read(ctx context.Context, name string) ([]byte, Version, error)
	// WriteIf stores data if the object's current version is v, or, when v
	// is empty, only if the object does not exist. It returns the new
	// version, or an error wrapping ErrConflict when the precondition
	// failed. Any other error leaves the outcome unknown: the write may or
	// may not have landed.
	WriteIf(ctx context.Context, name string, data []byte, v Version) (Version, error)
}
