package storetest

import (
	"errors"
	"sync"
)

// ErrKilled is what every write of a process a KillSwitch killed returns.
var ErrKilled = errors.New("injected: the process is dead")

// KillSwitch makes one process "die" at its At-th write to the store (all
// the writes it routes through Write, counted together): just before the
// write (it never lands) or, with After, just after it landed (the answer
// is lost). From then on every write it attempts fails with ErrKilled: a
// dead process changes nothing. Crash tests wrap a bucket's or a CAS
// store's writes in Write and run the process once per (At, After).
type KillSwitch struct {
	At    int
	After bool

	mu    sync.Mutex
	n     int
	dead  bool
	steps []string
}

// Write runs do as the process's next write, named what, unless it is
// dead or this is the write it dies at.
func (k *KillSwitch) Write(what string, do func() error) error {
	k.mu.Lock()
	if k.dead {
		k.mu.Unlock()
		return ErrKilled
	}
	k.n++
	k.steps = append(k.steps, what)
	kill := k.n == k.At
	if kill && !k.After {
		k.dead = true
		k.mu.Unlock()
		return ErrKilled
	}
	k.mu.Unlock()
	err := do()
	if kill {
		k.mu.Lock()
		k.dead = true
		k.mu.Unlock()
		return ErrKilled
	}
	return err
}

// Dead reports whether the process has died.
func (k *KillSwitch) Dead() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dead
}

// Steps lists the writes attempted, in order, for a failure message.
func (k *KillSwitch) Steps() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.steps...)
}
