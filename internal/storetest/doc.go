// Package storetest finds the test object-store servers that
// scripts/with-services.sh starts (S3, GCS and Azure emulators) from the
// environment, for tests only: it skips a test when a server is not
// configured, and fails it when CI=true. It lives outside the store
// packages so that production binaries do not link package testing.
package storetest
