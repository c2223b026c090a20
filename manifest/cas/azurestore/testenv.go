package azurestore

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// Environment variables naming the Azurite emulator tests run against
// (scripts/services/azurite.sh writes them; `make test` sources them).
const (
	EnvEndpoint  = "BUCKETQ_TEST_AZURE_ENDPOINT" // blob service URL, e.g. http://127.0.0.1:10000/devstoreaccount1
	EnvAccount   = "BUCKETQ_TEST_AZURE_ACCOUNT"
	EnvKey       = "BUCKETQ_TEST_AZURE_KEY"
	EnvContainer = "BUCKETQ_TEST_AZURE_CONTAINER"
)

// TestEnvConfig is the emulator named by the environment.
type TestEnvConfig struct {
	Endpoint, Account, Key, Container string
}

// ConnectionString is the Azure connection string for the emulator, usable
// as storage_connection_string in the thanos AZURE config.
func (c TestEnvConfig) ConnectionString() string {
	proto := "https"
	if strings.HasPrefix(c.Endpoint, "http://") {
		proto = "http"
	}
	return "DefaultEndpointsProtocol=" + proto + ";AccountName=" + c.Account + ";AccountKey=" + c.Key + ";BlobEndpoint=" + c.Endpoint + ";"
}

// TestEnv returns the emulator's settings. When the environment does not
// name an emulator it skips t, or fails it when CI=true.
func TestEnv(t testing.TB) TestEnvConfig {
	t.Helper()
	c := TestEnvConfig{
		Endpoint: strings.TrimRight(os.Getenv(EnvEndpoint), "/"), Account: os.Getenv(EnvAccount),
		Key: os.Getenv(EnvKey), Container: os.Getenv(EnvContainer),
	}
	var missing []string
	for k, v := range map[string]string{EnvEndpoint: c.Endpoint, EnvAccount: c.Account, EnvKey: c.Key, EnvContainer: c.Container} {
		if v == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		msg := "Azure emulator not configured (" + strings.Join(missing, ", ") + " unset); run `make test` or `./scripts/with-services.sh go test ...`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return c
}

// TestStoreFromEnv opens a store on the emulator named by the environment
// (see TestEnv), creating the container if needed.
func TestStoreFromEnv(t testing.TB, opts ...Option) *Store {
	t.Helper()
	e := TestEnv(t)
	c := Config{StorageAccountName: e.Account, StorageAccountKey: e.Key, ContainerName: e.Container}
	s, err := New(context.Background(), c, append([]Option{WithServiceURL(e.Endpoint)}, opts...)...)
	if err != nil {
		t.Fatalf("azurestore.New on emulator %s: %v", e.Endpoint, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateContainer(ctx); err != nil {
		t.Fatalf("emulator %s: %v", e.Endpoint, err)
	}
	return s
}
