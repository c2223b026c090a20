//go:build !unix

package fsstore

import (
	"context"
	"errors"
)

func lockFile(ctx context.Context, path string) (func(), error) {
	return nil, errors.New("fsstore: file locking is only implemented on unix systems")
}
