// Package benchpair times a benchmark body and its baseline alternately in
// one loop on one locked OS thread, so both see the same CPU, cache and GC
// conditions, and returns the figures the benchmarks report as ratios
// (BENCHMARKS.md). It is used only by benchmarks.
package benchpair

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// Result is per iteration of body unless said otherwise.
type Result struct {
	N          int           // iterations
	Wall       time.Duration // body's wall time, total over N
	CPU        time.Duration // body's thread CPU time, total over N
	BaseCPU    time.Duration // baseline's thread CPU time, total over N
	AllocBytes float64       // bytes allocated by one body call
	Allocs     float64       // allocations of one body call
}

// Ratio is body CPU time over baseline CPU time (0 without a baseline time).
func (r Result) Ratio() float64 {
	if r.BaseCPU <= 0 {
		return 0
	}
	return r.CPU.Seconds() / r.BaseCPU.Seconds()
}

// Run measures body's allocations alone, then runs body and baseline once
// each per iteration, alternating which goes first, with the collector off
// inside a pair and run between pairs (a GC cycle would charge its assist
// work to whichever side triggered it). It calls b.SetBytes(bytes) and
// resets the timer; the caller reports the metrics it wants from the
// Result.
func Run(b *testing.B, bytes int, body, baseline func()) Result {
	b.Helper()
	var m0, m1 runtime.MemStats
	const allocRuns = 3
	runtime.ReadMemStats(&m0)
	for range allocRuns {
		body()
	}
	runtime.ReadMemStats(&m1)
	baseline()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	b.SetBytes(int64(bytes))
	b.ResetTimer()
	r := Result{N: b.N,
		AllocBytes: float64(m1.TotalAlloc-m0.TotalAlloc) / allocRuns,
		Allocs:     float64(m1.Mallocs-m0.Mallocs) / allocRuns}
	for i := 0; i < b.N; i++ {
		runtime.GC()
		first, second := body, baseline
		if i%2 == 1 {
			first, second = baseline, body
		}
		w0, c0 := time.Now(), ThreadCPU()
		first()
		w1, c1 := time.Now(), ThreadCPU()
		second()
		w2, c2 := time.Now(), ThreadCPU()
		if i%2 == 0 {
			r.Wall += w1.Sub(w0)
			r.CPU += c1 - c0
			r.BaseCPU += c2 - c1
		} else {
			r.Wall += w2.Sub(w1)
			r.CPU += c2 - c1
			r.BaseCPU += c1 - c0
		}
	}
	b.StopTimer()
	return r
}
