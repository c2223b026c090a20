// Package e2e holds bucketq's end-to-end test: the real binary, run as
// separate producer and consumer processes on one bucket, killed and
// restarted under load, checked event by event against a fake OpenMeter.
package e2e
