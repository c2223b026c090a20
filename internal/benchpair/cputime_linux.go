package benchpair

import (
	"time"

	"golang.org/x/sys/unix"
)

// ThreadCPU is the CPU time the calling OS thread has used, in nanoseconds
// (CLOCK_THREAD_CPUTIME_ID). Benchmarks lock their goroutine to a thread and
// compare codec and baseline by CPU time, which other processes on a busy
// machine do not inflate.
func ThreadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
