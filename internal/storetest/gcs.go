package storetest

import (
	"context"
	"github.com/bucketq/bucketq/manifest/cas/gcsstore"
	"os"
	"strings"
	"testing"
)

// Environment variables naming the GCS emulator tests run against
// (scripts/services/gcs.sh writes them; `make test` sources them).
const (
	GCSEnvEndpoint = "BUCKETQ_TEST_GCS_ENDPOINT" // base URL, e.g. http://127.0.0.1:4443
	GCSEnvBucket   = "BUCKETQ_TEST_GCS_BUCKET"
)

// GCSEnv returns the emulator's base URL and bucket. When the environment
// does not name an emulator it skips t, or fails it when CI=true.
func GCSEnv(t testing.TB) (endpoint, bucket string) {
	t.Helper()
	endpoint, bucket = os.Getenv(GCSEnvEndpoint), os.Getenv(GCSEnvBucket)
	var missing []string
	if endpoint == "" {
		missing = append(missing, GCSEnvEndpoint)
	}
	if bucket == "" {
		missing = append(missing, GCSEnvBucket)
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

// GCSStore opens a store on the emulator named by the environment
// (see GCSEnv) and closes it when t ends.
func GCSStore(t testing.TB, opts ...gcsstore.Option) *gcsstore.Store {
	t.Helper()
	endpoint, bucket := GCSEnv(t)
	s, err := gcsstore.New(context.Background(), gcsstore.Config{Bucket: bucket}, append([]gcsstore.Option{gcsstore.WithEndpoint(endpoint + "/storage/v1/")}, opts...)...)
	if err != nil {
		t.Fatalf("gcsstore.New on emulator %s: %v", endpoint, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
