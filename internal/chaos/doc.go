// Package chaos holds bucketq's chaos test (chaos_test.go): three producers
// and one consumer as separate processes over one real S3 bucket behind a
// fault-injecting proxy, a misbehaving metering API and a process killer;
// it checks that no acked event is lost. `make chaos` runs it at 1M events,
// `make test` at 100k (BUCKETQ_CHAOS_EVENTS sets the size).
package chaos
