package storetest

import (
	"crypto/rand"
	"encoding/hex"
	"github.com/bucketq/bucketq/manifest/cas/s3store"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/thanos-io/objstore/providers/s3"
)

// Environment variables naming the S3-compatible server tests run against
// (scripts/services/s3.sh writes them; `make test` sources them).
const (
	S3EnvEndpoint  = "BUCKETQ_TEST_S3_ENDPOINT" // host:port, plain HTTP
	S3EnvAccessKey = "BUCKETQ_TEST_S3_ACCESS_KEY"
	S3EnvSecretKey = "BUCKETQ_TEST_S3_SECRET_KEY"
	S3EnvBucket    = "BUCKETQ_TEST_S3_BUCKET"
)

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// S3Config returns the config of the test S3 server, with a prefix
// unique to this call so tests never see each other's objects. When the
// environment does not name a server it skips t, or fails it when CI=true.
func S3Config(t testing.TB) s3store.Config {
	t.Helper()
	env := map[string]string{}
	var missing []string
	for _, k := range []string{S3EnvEndpoint, S3EnvAccessKey, S3EnvSecretKey, S3EnvBucket} {
		env[k] = os.Getenv(k)
		if env[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		msg := "S3 test server not configured (" + strings.Join(missing, ", ") + " unset); run `make test` or `./scripts/with-services.sh go test ...`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c := s3.DefaultConfig
	c.PutUserMetadata = map[string]string{}
	c.Bucket = env[S3EnvBucket]
	c.Endpoint = env[S3EnvEndpoint]
	c.AccessKey = env[S3EnvAccessKey]
	c.SecretKey = env[S3EnvSecretKey]
	c.Insecure = true
	c.Region = "us-east-1"
	c.BucketLookupType = s3.PathLookup
	return s3store.Config{S3: c, Prefix: UniquePrefix(t)}
}

// UniquePrefix returns "bucketq-test/<test name>-<random>".
func UniquePrefix(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Trim(unsafeChars.ReplaceAllString(t.Name(), "_"), "_")
	if len(name) > 60 {
		name = name[:60]
	}
	return "bucketq-test/" + name + "-" + hex.EncodeToString(b[:])
}

// S3BucketYAML returns the objstore bucket YAML (type S3, with a unique
// prefix) of the test S3 server; see S3Config.
func S3BucketYAML(t testing.TB) []byte {
	t.Helper()
	return S3Config(t).YAML()
}
