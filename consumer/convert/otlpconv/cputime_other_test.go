//go:build !linux

package otlpconv

import "time"

var cpuStart = time.Now()

// threadCPU falls back to wall time where per-thread CPU time is not read.
func threadCPU() time.Duration { return time.Since(cpuStart) }
