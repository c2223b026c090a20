// Package otele2e holds the end-to-end test of the OTLP path: real
// OpenTelemetry Go SDK exporters → ingest/otlp receivers → producer →
// bucket + manifest → consumer with the otlpconv converters → a fake
// OpenMeter. It has no non-test code.
package otele2e
