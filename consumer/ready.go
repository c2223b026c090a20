package consumer

import (
	"errors"
	"fmt"
	"sync"
)

// ErrNotReady wraps every error Ready returns.
var ErrNotReady = errors.New("consumer not ready")

// leaseState is where a consumer stands with the queue's lease.
type leaseState uint8

const (
	leaseNone    leaseState = iota // Run not called yet
	leaseFencing                   // Run is fencing the queue (retrying)
	leaseHeld                      // Run holds the lease: it delivers
	leaseFenced                    // a newer consumer fenced this one
	leaseStopped                   // Run returned
)

// leaseStatus is the consumer's lease state for Ready, written by Run.
type leaseStatus struct {
	mu      sync.Mutex
	state   leaseState
	epoch   uint64
	lastErr error // the last fencing failure while leaseFencing
}

func (c *Consumer) setLease(s leaseState, epoch uint64, err error) {
	c.lease.mu.Lock()
	c.lease.state, c.lease.epoch, c.lease.lastErr = s, epoch, err
	c.lease.mu.Unlock()
}

// Ready returns nil while Run holds the queue's lease (it fenced the queue
// and no newer consumer has fenced it since), and otherwise an error
// wrapping ErrNotReady that says why: Run not started, still fencing (with
// the last failure), fenced by a newer consumer, or stopped. Only the
// consumer holding the lease delivers, so only that one is ready.
func (c *Consumer) Ready() error {
	c.lease.mu.Lock()
	defer c.lease.mu.Unlock()
	switch c.lease.state {
	case leaseHeld:
		return nil
	case leaseFencing:
		if c.lease.lastErr != nil {
			return fmt.Errorf("%w: fencing the queue (taking the lease) failed, retrying: %v", ErrNotReady, c.lease.lastErr)
		}
		return fmt.Errorf("%w: fencing the queue (taking the lease)", ErrNotReady)
	case leaseFenced:
		return fmt.Errorf("%w: fenced by a newer consumer (this one held epoch %d); it stops", ErrNotReady, c.lease.epoch)
	case leaseStopped:
		return fmt.Errorf("%w: stopped", ErrNotReady)
	}
	return fmt.Errorf("%w: not started", ErrNotReady)
}
