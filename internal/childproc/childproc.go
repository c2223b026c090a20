// Package childproc starts child processes that die with the process that
// started them: a test binary killed from outside (SIGKILL, a CI timeout, a
// crash) takes the bucketq processes it started with it, instead of leaving
// them running and holding ports, buckets and CPU.
//
// On Linux a child gets SysProcAttr.Pdeathsig = SIGKILL. The kernel sends
// that signal when the *thread* that forked the child exits, not the process,
// and the Go runtime may end threads (one whose goroutine exits while locked
// to it), so every child is started from one goroutine locked to its own OS
// thread for the life of the process. Elsewhere Start is exec.Cmd.Start.
package childproc

import "os/exec"

// Start starts cmd like cmd.Start, arranging (on Linux) that the child is
// killed with SIGKILL when this process dies. It keeps the cmd.SysProcAttr
// fields already set. Wait, Process and the I/O copying work as usual.
func Start(cmd *exec.Cmd) error { return start(cmd) }
