// Package memstore is an in-memory cas.Store with fault-injection hooks, for
// tests and for the model-based protocol test.
package memstore

import (
	"context"
	"fmt"
	"sync"

	"github.com/bucketq/bucketq/manifest/cas"
)

// Store keeps objects in memory. The zero value is not usable; call New.
type Store struct {
	mu      sync.Mutex
	objs    map[string]object
	counter uint64

	// BeforeWrite, if set, is called before each WriteIf takes effect; a
	// non-nil error is returned to the caller and nothing is written.
	BeforeWrite func(name string) error
	// AfterWrite, if set, is called after a WriteIf has taken effect; a
	// non-nil error is returned to the caller although the write landed
	// (a lost response, or a client retry that came back 412).
	AfterWrite func(name string) error
	// BeforeRead, if set, may fail a Read.
	BeforeRead func(name string) error
}

type object struct {
	data    []byte
	version cas.Version
}

// New returns an empty store.
func New() *Store { return &Store{objs: map[string]object{}} }

// Read implements cas.Store.
func (s *Store) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if s.BeforeRead != nil {
		if err := s.BeforeRead(name); err != nil {
			return nil, "", err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objs[name]
	if !ok {
		return nil, "", cas.ErrNotExist
	}
	return append([]byte(nil), o.data...), o.version, nil
}

// WriteIf implements cas.Store.
func (s *Store) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if s.BeforeWrite != nil {
		if err := s.BeforeWrite(name); err != nil {
			return "", err
		}
	}
	s.mu.Lock()
	o, exists := s.objs[name]
	switch {
	case v == "" && exists:
		s.mu.Unlock()
		return "", fmt.Errorf("%w: %s exists", cas.ErrConflict, name)
	case v != "" && (!exists || o.version != v):
		s.mu.Unlock()
		return "", fmt.Errorf("%w: %s is not at version %s", cas.ErrConflict, name, v)
	}
	s.counter++
	nv := cas.Version(fmt.Sprintf("v%d", s.counter))
	s.objs[name] = object{data: append([]byte(nil), data...), version: nv}
	s.mu.Unlock()
	if s.AfterWrite != nil {
		if err := s.AfterWrite(name); err != nil {
			return "", err
		}
	}
	return nv, nil
}

// Put stores data unconditionally (test setup).
func (s *Store) Put(name string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counter++
	s.objs[name] = object{data: append([]byte(nil), data...), version: cas.Version(fmt.Sprintf("v%d", s.counter))}
}
