// Package otelcole2e holds the end-to-end test of the collector
// distribution (otelcol-bucketq, built by `make otelcol`): OTLP clients →
// the built collector with the bucketq exporter → the S3 test server →
// the consumer → a fake OpenMeter: telemetrygen's logs, metrics and
// traces through the collector and through bucketq produce's OTLP receiver
// give the same CloudEvents with the same ids, and the collector killed by
// SIGKILL under load loses no acknowledged export. The tests need the S3
// test server (they skip without it, fail without it when CI=true) and
// build the distribution and telemetrygen on first use with
// scripts/otelcol.sh (cached; minutes the first time), unless
// BUCKETQ_OTELCOL_BIN / BUCKETQ_TELEMETRYGEN_BIN name them. They import
// nothing from the exporter module. There is no non-test code.
package otelcole2e
