// Package s3store is a cas.Store on an S3-compatible bucket, using the
// conditional PUT headers If-Match (update) and If-None-Match: * (create).
//
// objstore's S3 bucket has no conditional upload and exposes no ETag, so the
// store builds its own minio-go client from the same objstore S3 YAML config
// (bucket, endpoint, region, access_key, secret_key, insecure, http_config,
// bucket_lookup_type, sse_config, ...) and honours the client config's
// prefix, so the manifest lives next to the data objects objstore writes.
//
// The version is the object's ETag. For a single PUT that is, on most
// servers, the MD5 of the content, i.e. a content hash: see package fsstore
// for why that is safe for the manifest.
//
// Conditional writes are sent exactly once (minio-go retries disabled for
// them). A client that retries a conditional PUT whose first attempt landed
// gets 412 for its own write and cannot tell it from a lost race; treating
// "412 but the stored bytes equal ours" as success would be wrong too, since
// two consumers fencing from the same epoch write byte-identical manifests
// and both would believe they won. So a 412/409 here always means "not
// written by this call", and a 5xx or network error is returned as an
// unknown outcome, which the manifest queue resolves by re-reading (Append
// looks for its entries, Fence fences again, Dequeue is idempotent). Reads
// keep minio-go's retries.
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"
	"github.com/thanos-io/objstore/exthttp"
	"github.com/thanos-io/objstore/providers/s3"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/manifest/cas"
)

// Config is objstore's S3 provider config plus the objstore client
// config's prefix.
type Config struct {
	// S3 is the provider config, the "config:" block of an objstore
	// bucket YAML with type S3.
	S3 s3.Config
	// Prefix is the objstore bucket prefix ("prefix:"); object names are
	// stored at Prefix + "/" + name, as objstore.PrefixedBucket does.
	Prefix string
}

// Store is a cas.Store on one S3 bucket. It is safe for concurrent use.
type Store struct {
	read   minio.Core // keeps minio-go's retries
	write  *minio.Client
	bucket string
	prefix string
	sse    encrypt.ServerSide // for PUTs
	getSSE encrypt.ServerSide // for GETs (SSE-C only)
}

// New returns a store for cfg.
func New(cfg Config) (*Store, error) {
	c := cfg.S3
	if c.Bucket == "" {
		return nil, errors.New("s3store: config: bucket is empty")
	}
	if c.Endpoint == "" {
		return nil, errors.New("s3store: config: endpoint is empty")
	}
	if c.AWSSDKAuth && c.AccessKey != "" {
		return nil, errors.New("s3store: config: aws_sdk_auth and access_key are mutually exclusive")
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return nil, errors.New("s3store: config: access_key and secret_key must be set together (or neither, for env/IAM credentials)")
	}
	sse, getSSE, err := serverSide(c.SSEConfig)
	if err != nil {
		return nil, err
	}
	tpt, err := exthttp.DefaultTransport(c.HTTPConfig)
	if err != nil {
		return nil, fmt.Errorf("s3store: config: http_config: %w", err)
	}
	var rt http.RoundTripper = tpt
	if c.HTTPConfig.Transport != nil {
		rt = c.HTTPConfig.Transport
	}
	creds := credentialsFor(c)
	newClient := func(maxRetries int) (*minio.Client, error) {
		return minio.New(c.Endpoint, &minio.Options{
			Creds:        creds,
			Secure:       !c.Insecure,
			Region:       c.Region,
			Transport:    rt,
			BucketLookup: c.BucketLookupType.MinioType(),
			MaxRetries:   maxRetries,
		})
	}
	rc, err := newClient(c.MaxRetries)
	if err != nil {
		return nil, fmt.Errorf("s3store: client for endpoint %q: %w", c.Endpoint, err)
	}
	wc, err := newClient(1) // 1 = no retries: see the package doc
	if err != nil {
		return nil, fmt.Errorf("s3store: client for endpoint %q: %w", c.Endpoint, err)
	}
	if c.DisableDualstack {
		rc.SetS3EnableDualstack(false)
		wc.SetS3EnableDualstack(false)
	}
	return &Store{
		read:   minio.Core{Client: rc},
		write:  wc,
		bucket: c.Bucket,
		prefix: strings.Trim(cfg.Prefix, "/"),
		sse:    sse,
		getSSE: getSSE,
	}, nil
}

func credentialsFor(c s3.Config) *credentials.Credentials {
	wrap := func(p credentials.Provider) credentials.Provider { return p }
	if c.SignatureV2 {
		wrap = func(p credentials.Provider) credentials.Provider { return sigV2{p} }
	}
	var chain []credentials.Provider
	switch {
	case c.AWSSDKAuth:
		chain = []credentials.Provider{wrap(&s3.AWSSDKAuth{Region: c.Region})}
	case c.AccessKey != "":
		chain = []credentials.Provider{wrap(&credentials.Static{Value: credentials.Value{
			AccessKeyID:     c.AccessKey,
			SecretAccessKey: c.SecretKey,
			SessionToken:    c.SessionToken,
			SignerType:      credentials.SignatureV4,
		}})}
	default:
		chain = []credentials.Provider{
			wrap(&credentials.EnvAWS{}),
			wrap(&credentials.FileAWSCredentials{}),
			wrap(&credentials.IAM{Client: &http.Client{Transport: http.DefaultTransport}, Endpoint: c.STSEndpoint}),
		}
	}
	return credentials.NewChainCredentials(chain)
}

// sigV2 forces V2 signatures (objstore's signature_version2).
type sigV2 struct{ credentials.Provider }

func (s sigV2) RetrieveWithCredContext(cc *credentials.CredContext) (credentials.Value, error) {
	v, err := s.Provider.RetrieveWithCredContext(cc)
	if err == nil && !v.SignerType.IsAnonymous() {
		v.SignerType = credentials.SignatureV2
	}
	return v, err
}

// Retrieve is the deprecated form minio-go still calls on some paths; the
// providers treat a nil CredContext as the default one.
func (s sigV2) Retrieve() (credentials.Value, error) { return s.RetrieveWithCredContext(nil) }

// serverSide mirrors objstore's sse_config; SSE-C also applies to reads.
func serverSide(c s3.SSEConfig) (put, get encrypt.ServerSide, err error) {
	switch c.Type {
	case "":
		return nil, nil, nil
	case s3.SSES3:
		return encrypt.NewSSE(), nil, nil
	case s3.SSEKMS:
		if c.KMSKeyID == "" {
			return nil, nil, errors.New("s3store: config: sse_config.kms_key_id must be set for SSE-KMS")
		}
		ctx := c.KMSEncryptionContext
		if ctx == nil {
			ctx = map[string]string{}
		}
		s, err := encrypt.NewSSEKMS(c.KMSKeyID, ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("s3store: config: sse_config: %w", err)
		}
		return s, nil, nil
	case s3.SSEC:
		if c.EncryptionKey == "" {
			return nil, nil, errors.New("s3store: config: sse_config.encryption_key must be set for SSE-C")
		}
		key, err := os.ReadFile(c.EncryptionKey)
		if err != nil {
			return nil, nil, fmt.Errorf("s3store: config: sse_config.encryption_key: %w", err)
		}
		s, err := encrypt.NewSSEC(key)
		if err != nil {
			return nil, nil, fmt.Errorf("s3store: config: sse_config: %w", err)
		}
		return s, s, nil
	}
	return nil, nil, fmt.Errorf("s3store: config: sse_config.type %q is not one of SSE-S3, SSE-KMS, SSE-C", c.Type)
}

// key is the S3 key of object name.
func (s *Store) key(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + "/" + name
}

// errResponse extracts minio-go's S3 error, if err is one.
func errResponse(err error) (minio.ErrorResponse, bool) {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er, true
	}
	var per *minio.ErrorResponse
	if errors.As(err, &per) && per != nil {
		return *per, true
	}
	return er, false
}

// Read implements cas.Store.
func (s *Store) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	if name == "" {
		return nil, "", errors.New("s3store: empty object name")
	}
	key := s.key(name)
	opts := minio.GetObjectOptions{ServerSideEncryption: s.getSSE}
	body, info, _, err := s.read.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		if er, ok := errResponse(err); ok && (er.Code == "NoSuchKey" || (er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket")) {
			return nil, "", fmt.Errorf("%w: s3://%s/%s", cas.ErrNotExist, s.bucket, key)
		}
		return nil, "", fmt.Errorf("s3store: get s3://%s/%s: %w", s.bucket, key, err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, "", fmt.Errorf("s3store: read s3://%s/%s: %w", s.bucket, key, err)
	}
	if info.Size >= 0 && int64(len(b)) != info.Size {
		return nil, "", fmt.Errorf("s3store: read s3://%s/%s: got %d bytes, Content-Length said %d", s.bucket, key, len(b), info.Size)
	}
	if info.ETag == "" {
		return nil, "", fmt.Errorf("s3store: get s3://%s/%s: server returned no ETag", s.bucket, key)
	}
	return b, cas.Version(info.ETag), nil
}

// WriteIf implements cas.Store.
func (s *Store) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	if name == "" {
		return "", errors.New("s3store: empty object name")
	}
	key := s.key(name)
	opts := minio.PutObjectOptions{
		DisableMultipart:     true,
		SendContentMd5:       true,
		ContentType:          "application/octet-stream",
		ServerSideEncryption: s.sse,
	}
	if v == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(string(v))
	}
	info, err := s.write.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		if er, ok := errResponse(err); ok && isConflict(er, v != "") {
			if v == "" {
				return "", fmt.Errorf("%w: s3://%s/%s exists (%s)", cas.ErrConflict, s.bucket, key, er.Code)
			}
			return "", fmt.Errorf("%w: s3://%s/%s is not at version %s (%s)", cas.ErrConflict, s.bucket, key, v, er.Code)
		}
		return "", fmt.Errorf("s3store: conditional put s3://%s/%s (outcome unknown): %w", s.bucket, key, err)
	}
	if info.ETag == "" {
		return "", fmt.Errorf("s3store: put s3://%s/%s: server returned no ETag (outcome: written)", s.bucket, key)
	}
	return cas.Version(info.ETag), nil
}

// isConflict reports whether a PUT error means the precondition failed.
func isConflict(er minio.ErrorResponse, ifMatch bool) bool {
	switch {
	case er.StatusCode == http.StatusPreconditionFailed, er.Code == "PreconditionFailed":
		return true
	case er.Code == "ConditionalRequestConflict":
		// AWS: a concurrent conditional write to the same key is in flight.
		return true
	case ifMatch && (er.Code == "NoSuchKey" || (er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket")):
		// If-Match on a missing object.
		return true
	}
	return false
}

// NewFromYAML returns a store for an objstore bucket YAML: either the full
// client config (type: S3, config: {...}, prefix: ...) or only its S3
// config block. Unknown keys are errors.
func NewFromYAML(conf []byte) (*Store, error) {
	cfg, err := ParseYAML(conf)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// ParseYAML parses what NewFromYAML accepts.
func ParseYAML(conf []byte) (Config, error) {
	var top map[string]yaml.Node
	if err := yaml.Unmarshal(conf, &top); err != nil {
		return Config{}, fmt.Errorf("s3store: parse bucket config YAML: %w", err)
	}
	var cfg Config
	inner := conf
	if _, full := top["type"]; full {
		var bc struct {
			Type   string    `yaml:"type"`
			Config yaml.Node `yaml:"config"`
			Prefix string    `yaml:"prefix"`
		}
		if err := decodeStrict(conf, &bc); err != nil {
			return Config{}, fmt.Errorf("s3store: parse bucket config YAML: %w", err)
		}
		if !strings.EqualFold(bc.Type, "S3") {
			return Config{}, fmt.Errorf("s3store: bucket config type is %q, want S3", bc.Type)
		}
		out, err := yaml.Marshal(&bc.Config)
		if err != nil {
			return Config{}, fmt.Errorf("s3store: bucket config: config: %w", err)
		}
		inner = out
		cfg.Prefix = bc.Prefix
	}
	cfg.S3 = s3.DefaultConfig
	cfg.S3.PutUserMetadata = map[string]string{} // do not share DefaultConfig's map
	if err := decodeStrict(inner, &cfg.S3); err != nil {
		return Config{}, fmt.Errorf("s3store: parse S3 config: %w", err)
	}
	return cfg, nil
}

func decodeStrict(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// YAML renders the full objstore bucket config (type S3) for cfg's basic
// fields: bucket, endpoint, region, access_key, secret_key, insecure,
// bucket_lookup_type and the prefix. objstore's client.NewBucket and
// NewFromYAML both accept it.
func (cfg Config) YAML() []byte {
	type inner struct {
		Bucket     string `yaml:"bucket"`
		Endpoint   string `yaml:"endpoint"`
		Region     string `yaml:"region,omitempty"`
		AccessKey  string `yaml:"access_key,omitempty"`
		SecretKey  string `yaml:"secret_key,omitempty"`
		Insecure   bool   `yaml:"insecure"`
		LookupType string `yaml:"bucket_lookup_type"`
	}
	out, _ := yaml.Marshal(struct {
		Type   string `yaml:"type"`
		Config inner  `yaml:"config"`
		Prefix string `yaml:"prefix,omitempty"`
	}{
		Type: "S3",
		Config: inner{
			Bucket: cfg.S3.Bucket, Endpoint: cfg.S3.Endpoint, Region: cfg.S3.Region,
			AccessKey: cfg.S3.AccessKey, SecretKey: cfg.S3.SecretKey, Insecure: cfg.S3.Insecure,
			LookupType: cfg.S3.BucketLookupType.String(),
		},
		Prefix: cfg.Prefix,
	})
	return out
}
