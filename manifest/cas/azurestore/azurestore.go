// Package azurestore is a cas.Store over Azure Blob Storage: an object's
// version is its blob ETag, and conditional writes use If-Match (or
// If-None-Match: * for create-only).
package azurestore

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/manifest/cas"
)

// The Azurite emulator's fixed development account and its well-known key.
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Config is the subset of thanos objstore's AZURE provider config (the
// "config:" block under "type: AZURE") that a CAS store needs. Other keys of
// that block are accepted and ignored, so one YAML opens both the objstore
// bucket and this store.
//
// Authentication: storage_account_key (shared key) or
// storage_connection_string (which can also point at Azurite:
// "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=...;
// BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"). Azure AD token
// credentials are used otherwise, chosen as thanos does (client_secret with
// az_tenant_id and client_id, user_assigned_id, else the default chain), or
// passed in with WithCredential.
type Config struct {
	StorageAccountName      string `yaml:"storage_account"`
	StorageAccountKey       string `yaml:"storage_account_key"`
	StorageConnectionString string `yaml:"storage_connection_string"`
	ContainerName           string `yaml:"container"`
	// Endpoint is the blob service domain; the container URL is
	// https://<storage_account>.<endpoint>/<container> as in thanos.
	// Default "blob.core.windows.net".
	Endpoint       string `yaml:"endpoint"`
	AzTenantID     string `yaml:"az_tenant_id"`
	ClientID       string `yaml:"client_id"`
	ClientSecret   string `yaml:"client_secret"`
	UserAssignedID string `yaml:"user_assigned_id"`
	MaxRetries     int    `yaml:"max_retries"`
	PipelineConfig struct {
		MaxTries int32 `yaml:"max_tries"`
	} `yaml:"pipeline_config"`
}

// ParseConfig parses the AZURE provider config block. It accepts either the
// bare block or a full objstore config ("type: AZURE" plus "config:").
func ParseConfig(confYAML []byte) (Config, error) {
	var full struct {
		Type   string    `yaml:"type"`
		Config yaml.Node `yaml:"config"`
	}
	if err := yaml.Unmarshal(confYAML, &full); err != nil {
		return Config{}, fmt.Errorf("azurestore: parse config: %w", err)
	}
	var c Config
	if full.Type != "" || !full.Config.IsZero() {
		if full.Type != "" && full.Type != "AZURE" {
			return Config{}, fmt.Errorf("azurestore: config type is %q, want AZURE", full.Type)
		}
		if err := full.Config.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("azurestore: parse config block: %w", err)
		}
	} else if err := yaml.Unmarshal(confYAML, &c); err != nil {
		return Config{}, fmt.Errorf("azurestore: parse config: %w", err)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []string
	if c.ContainerName == "" {
		errs = append(errs, "config field container is required")
	}
	if c.StorageConnectionString == "" && c.StorageAccountName == "" {
		errs = append(errs, "config field storage_account is required (or storage_connection_string)")
	}
	if (c.AzTenantID != "" || c.ClientSecret != "" || c.ClientID != "") && (c.AzTenantID == "" || c.ClientSecret == "" || c.ClientID == "") {
		errs = append(errs, "config fields az_tenant_id, client_id and client_secret must be set together")
	}
	if c.UserAssignedID != "" && (c.StorageAccountKey != "" || c.StorageConnectionString != "" || c.ClientID != "") {
		errs = append(errs, "config field user_assigned_id cannot be combined with storage_account_key, storage_connection_string or client_id")
	}
	if c.StorageAccountKey != "" && c.StorageConnectionString != "" {
		errs = append(errs, "config fields storage_account_key and storage_connection_string cannot both be set")
	}
	if len(errs) > 0 {
		return errors.New("azurestore: " + strings.Join(errs, "; "))
	}
	return nil
}

// Option adjusts how Open connects.
type Option func(*settings)

type settings struct {
	serviceURL string
	cred       azcore.TokenCredential
	transport  policy.Transporter
}

// WithServiceURL replaces the https://<account>.<endpoint> service URL, e.g.
// with Azurite's "http://127.0.0.1:10000/devstoreaccount1". The shared key
// from the config still signs the requests.
func WithServiceURL(url string) Option {
	return func(s *settings) { s.serviceURL = strings.TrimRight(url, "/") }
}

// WithCredential authenticates with this Azure AD token credential instead
// of one built from the config, when the config has neither a key nor a
// connection string.
func WithCredential(cred azcore.TokenCredential) Option {
	return func(s *settings) { s.cred = cred }
}

// WithTransport sends requests through t (tests inject faults this way).
func WithTransport(t policy.Transporter) Option {
	return func(s *settings) { s.transport = t }
}

// Store implements cas.Store on one Azure blob container.
type Store struct {
	cont *container.Client
}

// Open parses a thanos-style AZURE config and returns a store.
func Open(ctx context.Context, confYAML []byte, opts ...Option) (*Store, error) {
	c, err := ParseConfig(confYAML)
	if err != nil {
		return nil, err
	}
	return New(ctx, c, opts...)
}

// New returns a store for the container in c.
func New(_ context.Context, c Config, opts ...Option) (*Store, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	var s settings
	for _, o := range opts {
		o(&s)
	}
	copts := &container.ClientOptions{}
	if n := c.PipelineConfig.MaxTries; n > 0 {
		copts.Retry.MaxRetries = n
	} else if c.MaxRetries > 0 {
		copts.Retry.MaxRetries = int32(c.MaxRetries)
	}
	if s.transport != nil {
		copts.Transport = s.transport
	}
	if c.StorageConnectionString != "" {
		cl, err := container.NewClientFromConnectionString(c.StorageConnectionString, c.ContainerName, copts)
		if err != nil {
			return nil, fmt.Errorf("azurestore: config field storage_connection_string: %w", err)
		}
		return &Store{cont: cl}, nil
	}
	svc := s.serviceURL
	if svc == "" {
		ep := c.Endpoint
		if ep == "" {
			ep = "blob.core.windows.net"
		}
		svc = fmt.Sprintf("https://%s.%s", c.StorageAccountName, ep)
	}
	contURL := svc + "/" + c.ContainerName
	switch {
	case c.StorageAccountKey != "":
		cred, err := container.NewSharedKeyCredential(c.StorageAccountName, c.StorageAccountKey)
		if err != nil {
			return nil, fmt.Errorf("azurestore: config field storage_account_key: %w", err)
		}
		cl, err := container.NewClientWithSharedKeyCredential(contURL, cred, copts)
		if err != nil {
			return nil, fmt.Errorf("azurestore: container %s: %w", contURL, err)
		}
		return &Store{cont: cl}, nil
	}
	cred := s.cred
	if cred == nil {
		var err error
		if cred, err = tokenCredential(c); err != nil {
			return nil, fmt.Errorf("azurestore: Azure AD credential: %w", err)
		}
	}
	cl, err := container.NewClient(contURL, cred, copts)
	if err != nil {
		return nil, fmt.Errorf("azurestore: container %s: %w", contURL, err)
	}
	return &Store{cont: cl}, nil
}

// tokenCredential picks the Azure AD credential as thanos does: a client
// secret when az_tenant_id, client_id and client_secret are set, a
// user-assigned managed identity for user_assigned_id, else the default
// credential chain (environment, workload identity, managed identity, CLI).
func tokenCredential(c Config) (azcore.TokenCredential, error) {
	if c.ClientSecret != "" && c.AzTenantID != "" && c.ClientID != "" {
		return azidentity.NewClientSecretCredential(c.AzTenantID, c.ClientID, c.ClientSecret, nil)
	}
	if c.UserAssignedID != "" {
		return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
			ID: azidentity.ClientID(c.UserAssignedID),
		})
	}
	return azidentity.NewDefaultAzureCredential(nil)
}

// CreateContainer creates the store's container if it does not exist (setup
// for emulators and tests).
func (s *Store) CreateContainer(ctx context.Context) error {
	_, err := s.cont.Create(ctx, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("azurestore: create container: %w", err)
	}
	return nil
}

// Read implements cas.Store. The version is the blob's ETag.
func (s *Store) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	resp, err := s.cont.NewBlobClient(name).DownloadStream(ctx, nil)
	if bloberror.HasCode(err, bloberror.BlobNotFound) {
		return nil, "", fmt.Errorf("azurestore: read %s: %w", name, cas.ErrNotExist)
	}
	if err != nil {
		return nil, "", fmt.Errorf("azurestore: read %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", fmt.Errorf("azurestore: read %s body: %w", name, err)
	}
	if resp.ETag == nil || *resp.ETag == "" {
		return nil, "", fmt.Errorf("azurestore: read %s: response has no ETag", name)
	}
	return b, cas.Version(*resp.ETag), nil
}

// WriteIf implements cas.Store: If-None-Match: * when v is empty, else
// If-Match: v. The body goes in one Put Blob request with its MD5, so the
// blob is replaced whole or not at all.
//
// The request is sent exactly once (the SDK's retries are switched off for
// it): a retry of an attempt that landed fails its precondition although
// the blob is ours, and "412 but the stored bytes equal ours" cannot be
// taken as success either, since two consumers fencing from the same epoch
// write byte-identical manifests and both would believe they won. So a
// conflict always means "not written by this call", and a 5xx or transport
// error is returned as an unknown outcome, which the manifest queue
// resolves by re-reading.
func (s *Store) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	mac := &blob.ModifiedAccessConditions{}
	if v == "" {
		star := azcore.ETagAny
		mac.IfNoneMatch = &star
	} else {
		et := azcore.ETag(v)
		mac.IfMatch = &et
	}
	sum := md5.Sum(data)
	once := policy.WithRetryOptions(ctx, policy.RetryOptions{MaxRetries: -1})
	resp, err := s.cont.NewBlockBlobClient(name).Upload(once, nopCloser{bytes.NewReader(data)}, &blockblob.UploadOptions{
		AccessConditions:        &blob.AccessConditions{ModifiedAccessConditions: mac},
		TransactionalValidation: blob.TransferValidationTypeMD5(sum[:]),
		HTTPHeaders:             &blob.HTTPHeaders{BlobContentType: ptr("application/octet-stream")},
	})
	if err == nil {
		if resp.ETag == nil || *resp.ETag == "" {
			return "", fmt.Errorf("azurestore: write %s: response has no ETag", name)
		}
		return cas.Version(*resp.ETag), nil
	}
	if isConflict(err, v != "") {
		return "", fmt.Errorf("%w: azurestore: write %s (if %s): %v", cas.ErrConflict, name, describe(v), err)
	}
	return "", fmt.Errorf("azurestore: write %s (if %s), outcome unknown: %w", name, describe(v), err)
}

// isConflict reports whether err means the precondition failed: 412
// ConditionNotMet, 409 BlobAlreadyExists, or, for If-Match, 404 BlobNotFound
// (the blob was deleted). A missing container is not a conflict.
func isConflict(err error, ifMatch bool) bool {
	if bloberror.HasCode(err, bloberror.ConditionNotMet, bloberror.BlobAlreadyExists) {
		return true
	}
	if ifMatch && bloberror.HasCode(err, bloberror.BlobNotFound) {
		return true
	}
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusPreconditionFailed
}

func describe(v cas.Version) string {
	if v == "" {
		return "absent"
	}
	return "etag " + string(v)
}

func ptr[T any](v T) *T { return &v }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
