//go:build !linux

package benchpair

import "time"

var cpuStart = time.Now()

// ThreadCPU falls back to wall time where per-thread CPU time is not read.
func ThreadCPU() time.Duration { return time.Since(cpuStart) }
