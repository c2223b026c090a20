// Package benchsuite measures bucketq end to end with the real parts: HTTP
// ingest (CloudEvents and OTLP logs) into producers over the filesystem
// bucket and the real S3 server, in process and as a separate
// `bucketq produce` process built from this checkout (whose peak RSS is the
// memory figure), consumer delivery into the fake OpenMeter
// (internal/openmetertest), end-to-end latency at a moderate rate, and how
// object and manifest (CAS) writes grow with the number of producers.
//
// Every figure is reported beside a baseline measured in the same run (the
// same HTTP front door with an Appender that discards; the same binary
// without a Go memory limit; the same events posted straight to the sink;
// one producer), as a ratio, because the machines these
// run on are noisy. The benchmarks live in the _test.go files; this file and
// load.go hold the load generators and measuring helpers they share.
//
//	make bench                       # with the S3 server (scripts/with-services.sh)
//	make bench BENCH_SERVICES=       # without any server: the S3 variants skip
//	go test -run '^$' -bench . -benchtime=2x ./internal/benchsuite
//
// BENCHMARKS.md at the repository root has the results and how to read them.
package benchsuite
