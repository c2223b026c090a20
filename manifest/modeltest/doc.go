// Package modeltest checks the manifest queue protocol against a model:
// concurrent producers, competing consumers, injected conflicts, transient
// errors, lost responses and crashes, first in one process over memstore,
// then in separate OS processes killed with SIGKILL over the filesystem
// store (and S3 when configured). It holds tests only.
package modeltest
