// Package gcsstore is a cas.Store over Google Cloud Storage: an object's
// version is its generation, and conditional writes use the ifGenerationMatch
// precondition (ifGenerationMatch=0, i.e. DoesNotExist, for create-only).
package gcsstore

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"

	"cloud.google.com/go/storage"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/manifest/cas"
)

// Config is the subset of thanos objstore's GCS provider config (the
// "config:" block under "type: GCS") that a CAS store needs. Other keys of
// that block are accepted and ignored, so one YAML opens both the objstore
// bucket and this store.
type Config struct {
	Bucket           string `yaml:"bucket"`
	ServiceAccount   string `yaml:"service_account"`
	UseGRPC          bool   `yaml:"use_grpc"`
	GRPCConnPoolSize int    `yaml:"grpc_conn_pool_size"`
	// MaxRetries > 0 bounds the client's attempts per request (1 = no
	// retries), as in thanos.
	MaxRetries int `yaml:"max_retries"`
}

// ParseConfig parses the GCS provider config block. It accepts either the
// bare block or a full objstore config ("type: GCS" plus "config:").
func ParseConfig(confYAML []byte) (Config, error) {
	var full struct {
		Type   string    `yaml:"type"`
		Config yaml.Node `yaml:"config"`
	}
	if err := yaml.Unmarshal(confYAML, &full); err != nil {
		return Config{}, fmt.Errorf("gcsstore: parse config: %w", err)
	}
	var c Config
	if full.Type != "" || !full.Config.IsZero() {
		if full.Type != "" && full.Type != "GCS" {
			return Config{}, fmt.Errorf("gcsstore: config type is %q, want GCS", full.Type)
		}
		if err := full.Config.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("gcsstore: parse config block: %w", err)
		}
	} else if err := yaml.Unmarshal(confYAML, &c); err != nil {
		return Config{}, fmt.Errorf("gcsstore: parse config: %w", err)
	}
	if c.Bucket == "" {
		return Config{}, errors.New("gcsstore: config field bucket is required")
	}
	return c, nil
}

// Option adjusts how Open connects.
type Option func(*settings)

type settings struct {
	endpoint string
	noAuth   bool
	client   *http.Client
}

// WithEndpoint points the client at an emulator or a private endpoint, e.g.
// "http://127.0.0.1:4443/storage/v1/". It implies no authentication. The
// Go client also honours the STORAGE_EMULATOR_HOST environment variable
// (host:port), which needs no option.
func WithEndpoint(url string) Option {
	return func(s *settings) { s.endpoint = url; s.noAuth = true }
}

// WithHTTPClient makes the client use hc (tests inject faults this way).
// Authentication is then up to hc.
func WithHTTPClient(hc *http.Client) Option {
	return func(s *settings) { s.client = hc }
}

// Store implements cas.Store on one GCS bucket.
type Store struct {
	client *storage.Client
	bkt    *storage.BucketHandle
}

// Open parses a thanos-style GCS config and returns a store.
func Open(ctx context.Context, confYAML []byte, opts ...Option) (*Store, error) {
	c, err := ParseConfig(confYAML)
	if err != nil {
		return nil, err
	}
	return New(ctx, c, opts...)
}

// New returns a store for the bucket in c. Close releases the client.
func New(ctx context.Context, c Config, opts ...Option) (*Store, error) {
	if c.Bucket == "" {
		return nil, errors.New("gcsstore: config field bucket is required")
	}
	var s settings
	for _, o := range opts {
		o(&s)
	}
	var copts []option.ClientOption
	if c.ServiceAccount != "" {
		// service_account holds a service account key (objstore's GCS
		// config): say so, so a JSON of another credential type (an
		// external account that would run a command or fetch a URL) is
		// refused instead of trusted.
		creds, err := google.CredentialsFromJSONWithType(ctx, []byte(c.ServiceAccount), google.ServiceAccount, storage.ScopeFullControl)
		if err != nil {
			return nil, fmt.Errorf("gcsstore: config field service_account: %w", err)
		}
		copts = append(copts, option.WithCredentials(creds))
	}
	if s.endpoint != "" {
		copts = append(copts, option.WithEndpoint(s.endpoint))
	}
	if s.noAuth {
		copts = append(copts, option.WithoutAuthentication())
	}
	if s.client != nil {
		copts = append(copts, option.WithHTTPClient(s.client))
	}
	var (
		cl  *storage.Client
		err error
	)
	if c.UseGRPC {
		if c.GRPCConnPoolSize > 0 {
			copts = append(copts, option.WithGRPCConnectionPool(c.GRPCConnPoolSize))
		}
		cl, err = storage.NewGRPCClient(ctx, copts...)
	} else {
		cl, err = storage.NewClient(ctx, copts...)
	}
	if err != nil {
		return nil, fmt.Errorf("gcsstore: create client for bucket %s: %w", c.Bucket, err)
	}
	bkt := cl.Bucket(c.Bucket)
	if c.MaxRetries > 0 {
		bkt = bkt.Retryer(storage.WithMaxAttempts(c.MaxRetries))
	}
	return &Store{client: cl, bkt: bkt}, nil
}

// Close releases the client.
func (s *Store) Close() error { return s.client.Close() }

// readAttempts bounds how often Read starts over after the body failed its
// CRC32C check or broke off. A read has no side effect, so starting over is
// always safe; fake-gcs-server serves a body and checksum of two different
// generations when the object is replaced mid-read, and real GCS can break a
// download off.
const readAttempts = 4

// Read implements cas.Store. The version is the object's generation.
func (s *Store) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	for n := 1; ; n++ {
		b, v, err := s.readOnce(ctx, name)
		var be *bodyError
		if !errors.As(err, &be) || n == readAttempts || ctx.Err() != nil {
			return b, v, err
		}
	}
}

// bodyError is a read whose headers arrived but whose body did not, whole
// and matching its checksum.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

func (s *Store) readOnce(ctx context.Context, name string) ([]byte, cas.Version, error) {
	r, err := s.bkt.Object(name).NewReader(ctx)
	if errors.Is(err, storage.ErrObjectNotExist) {
		return nil, "", fmt.Errorf("gcsstore: read %s: %w", name, cas.ErrNotExist)
	}
	if err != nil {
		return nil, "", fmt.Errorf("gcsstore: read %s: %w", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, "", &bodyError{fmt.Errorf("gcsstore: read %s body: %w", name, err)}
	}
	// The reader pins the generation it started with, so b is exactly the
	// content of this generation.
	return b, cas.Version(strconv.FormatInt(r.Attrs.Generation, 10)), nil
}

// WriteIf implements cas.Store: create-only when v is empty
// (ifGenerationMatch=0), else only if the live generation is v.
//
// The write is sent exactly once: the storage client would retry a write
// with a generation precondition (it counts as idempotent), and a retry of
// an attempt that landed comes back 412 although the object is ours. Nor
// can "412 but the stored bytes equal ours" be taken as success: two
// consumers fencing from the same epoch write byte-identical manifests and
// both would believe they won. So 412 always means "not written by this
// call", and a 5xx or transport error is returned as an unknown outcome,
// which the manifest queue resolves by re-reading.
func (s *Store) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	cond := storage.Conditions{DoesNotExist: true}
	if v != "" {
		gen, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || gen <= 0 {
			// No GCS object is ever at this version.
			return "", fmt.Errorf("%w: gcsstore: write %s: version %q is not a GCS generation", cas.ErrConflict, name, v)
		}
		cond = storage.Conditions{GenerationMatch: gen}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.bkt.Object(name).If(cond).Retryer(storage.WithPolicy(storage.RetryNever)).NewWriter(ctx)
	w.ContentType = "application/octet-stream"
	w.ChunkSize = 0 // one request: the object is written whole or not at all
	w.SendCRC32C = true
	w.CRC32C = crc32c(data)
	_, werr := w.Write(data)
	cerr := w.Close()
	if werr == nil {
		werr = cerr
	}
	switch {
	case werr == nil:
		return cas.Version(strconv.FormatInt(w.Attrs().Generation, 10)), nil
	case isPrecondition(werr):
		return "", fmt.Errorf("%w: gcsstore: write %s (if %s): %v", cas.ErrConflict, name, describe(v), werr)
	}
	return "", fmt.Errorf("gcsstore: write %s (if %s), outcome unknown: %w", name, describe(v), werr)
}

func describe(v cas.Version) string {
	if v == "" {
		return "absent"
	}
	return "generation " + string(v)
}

// isPrecondition reports whether err is GCS's "precondition failed": HTTP
// 412 on the JSON/XML APIs, FailedPrecondition on gRPC.
func isPrecondition(err error) bool {
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed {
		return true
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
		return true
	}
	return false
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c lets the server reject a body damaged in transit.
func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
