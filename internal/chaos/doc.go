// Package chaos holds bucketq's chaos tests, separate bucketq processes over
// one real S3 bucket behind a fault-injecting proxy, a misbehaving metering
// API and a process killer, checking that no acked event is lost:
//
//   - TestChaos (chaos_test.go): three producers and one consumer, any of
//     them killed; duplicates stay within the redelivery bound per
//     consumer kill (sinkrec_test.go). `make chaos` runs it at 1M events,
//     `make test` at 100k (BUCKETQ_CHAOS_EVENTS sets the size).
//   - TestChaosPartitions (partitions_test.go): partitions: 4 (RFC 0005),
//     three producers and two consumers sharing the partitions through the
//     lease table, consumers SIGKILLed; it also checks that leases move and
//     every partition drains. Clients send for BUCKETQ_CHAOS_PART_SECONDS
//     (default 15; about 30 s in all).
package chaos
