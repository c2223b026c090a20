package bucket

import (
	"context"

	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/azurestore"
	"github.com/bucketq/bucketq/manifest/cas/gcsstore"
)

// GCSCAS is the GCS opener: gcsstore from the same config (bucket,
// service_account, use_grpc, max_retries). For an emulator, set
// STORAGE_EMULATOR_HOST as for the data bucket.
func GCSCAS(ctx context.Context, confYAML []byte) (cas.Store, error) {
	return gcsstore.Open(ctx, confYAML)
}

// AzureCAS is the AZURE opener: azurestore from the same config
// (storage_account, storage_account_key or storage_connection_string,
// container, endpoint, Azure AD fields). For Azurite, use a
// storage_connection_string with its BlobEndpoint.
func AzureCAS(ctx context.Context, confYAML []byte) (cas.Store, error) {
	return azurestore.Open(ctx, confYAML)
}
