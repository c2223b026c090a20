// Package otelcole2e holds the end-to-end test of the collector
// distribution (otelcol-bucketq, built by `make otelcol`): OTLP clients →
// the built collector with the bucketq exporter → the S3 test server →
// the consumer → a fake OpenMeter, with the collector killed by SIGKILL
// under load. It needs the binary, so it runs from `scripts/otelcol.sh
// e2e` (BUCKETQ_OTELCOL_BIN); elsewhere it skips. It imports nothing from
// the exporter module. It has no non-test code.
package otelcole2e
