package storetest

import (
	"context"
	"github.com/bucketq/bucketq/manifest/cas/azurestore"
	"os"
	"strings"
	"testing"
	"time"
)

// Environment variables naming the Azurite emulator tests run against
// (scripts/services/azurite.sh writes them; `make test` sources them).
const (
	AzureEnvEndpoint  = "BUCKETQ_TEST_AZURE_ENDPOINT" // blob service URL, e.g. http://127.0.0.1:10000/devstoreaccount1
	AzureEnvAccount   = "BUCKETQ_TEST_AZURE_ACCOUNT"
	AzureEnvKey       = "BUCKETQ_TEST_AZURE_KEY"
	AzureEnvContainer = "BUCKETQ_TEST_AZURE_CONTAINER"
)

// AzureEnvConfig is the emulator named by the environment.
type AzureEnvConfig struct {
	Endpoint, Account, Key, Container string
}

// ConnectionString is the Azure connection string for the emulator, usable
// as storage_connection_string in the thanos AZURE config.
func (c AzureEnvConfig) ConnectionString() string {
	proto := "https"
	if strings.HasPrefix(c.Endpoint, "http://") {
		proto = "http"
	}
	return "DefaultEndpointsProtocol=" + proto + ";AccountName=" + c.Account + ";AccountKey=" + c.Key + ";BlobEndpoint=" + c.Endpoint + ";"
}

// AzureEnv returns the emulator's settings. When the environment does not
// name an emulator it skips t, or fails it when CI=true.
func AzureEnv(t testing.TB) AzureEnvConfig {
	t.Helper()
	c := AzureEnvConfig{
		Endpoint: strings.TrimRight(os.Getenv(AzureEnvEndpoint), "/"), Account: os.Getenv(AzureEnvAccount),
		Key: os.Getenv(AzureEnvKey), Container: os.Getenv(AzureEnvContainer),
	}
	var missing []string
	for k, v := range map[string]string{AzureEnvEndpoint: c.Endpoint, AzureEnvAccount: c.Account, AzureEnvKey: c.Key, AzureEnvContainer: c.Container} {
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

// AzureStore opens a store on the emulator named by the environment
// (see AzureEnv), creating the container if needed.
func AzureStore(t testing.TB, opts ...azurestore.Option) *azurestore.Store {
	t.Helper()
	e := AzureEnv(t)
	c := azurestore.Config{StorageAccountName: e.Account, StorageAccountKey: e.Key, ContainerName: e.Container}
	s, err := azurestore.New(context.Background(), c, append([]azurestore.Option{azurestore.WithServiceURL(e.Endpoint)}, opts...)...)
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
