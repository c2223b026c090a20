// Package modeltest checks the manifest queue protocol against a model:
// concurrent producers, competing consumers, injected conflicts, transient
// errors, lost responses and crashes, first in one process over memstore,
// then in separate OS processes killed with SIGKILL over the filesystem
// store (and S3 when configured). It holds tests only.
//
// How the invariants map onto the checks (model_test.go). Every
// write that lands is recorded with its writer and classified against the
// manifest it replaced:
//
//   - "Sequences strictly increase and never repeat": each landed append
//     must assign prev.next_sequence, +1, ... in order, and no sequence is
//     ever given to two locations ("append by ... gave ... sequence",
//     "sequence ... reused"). A location is never in the manifest twice
//     ("appended while still queued").
//   - "Every successfully appended location is either still in the manifest
//     or was returned by a dequeue of the current-epoch consumer": a landed
//     dequeue must remove a prefix and nothing else, at the epoch of the
//     lease that wrote it ("fenced consumer dequeued"), and may only remove
//     locations a consumer delivered ("removed ... which no consumer
//     delivered: LOST"). At the end a final consumer drains the queue, and
//     every location a producer was told was appended must have been
//     delivered with the sequence Append returned ("acked ... was never
//     delivered: LOST"), and returned by as many dequeues as it was
//     appended. Together these are the invariant: nothing acknowledged
//     leaves the manifest except through a current-epoch dequeue, after
//     delivery.
//   - "A fenced consumer can never dequeue": besides the epoch check on
//     every landed dequeue, a fence must change the epoch alone (epoch+1,
//     same entries), and no two Fence calls return the same epoch.
package modeltest
