package gcsstore

import (
	"context"
	"os"
	"strings"
	"testing"
)

// Environment variables naming the GCS emulator tests run against
// (scripts/services/gcs.sh writes them; `make test` sources them).
const (
	EnvEndpoint = "BUCKETQ_TEST_GCS_ENDPOINT" // base URL, e.g. http://127.0.0.1:4443
	EnvBucket   = "BUCKETQ_TEST_GCS_BUCKET"
)

// TestEnv returns the emulator's base URL and bucket. When the environment
// does not name an emulator it skips t, or fails it when CI=true.
func TestEnv(t testing.TB) (endpoint, bucket string) {
	t.Helper()
	endpoint, bucket = os.Getenv(EnvEndpoint), os.Getenv(EnvBucket)
	var missing []string
	if endpoint == "" {
		missing = append(missing, EnvEndpoint)
	}
	if bucket == "" {
		missing = append(missing, EnvBucket)
	}
	if len(missing) > 0 {
		msg := "GCS emulator not configured (" + strings.Join(missing, ", ") + " unset); run `make test` or `./scripts/with-services.sh go test ...`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return strings.TrimRight(endpoint, "/"), bucket
}

// TestStoreFromEnv opens a store on the emulator named by the environment
// (see TestEnv) and closes it when t ends.
func TestStoreFromEnv(t testing.TB, opts ...Option) *Store {
	t.Helper()
	endpoint, bucket := TestEnv(t)
	s, err := New(context.Background(), Config{Bucket: bucket}, append([]Option{WithEndpoint(endpoint + "/storage/v1/")}, opts...)...)
	if err != nil {
		t.Fatalf("gcsstore.New on emulator %s: %v", endpoint, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
