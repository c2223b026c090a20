// Package bucket opens, from ONE objstore bucket YAML, both the objstore
// bucket that holds batch data and the cas.Store that holds the manifest in
// the same bucket, under the same prefix.
//
// The YAML is objstore's client config:
//
//	type: S3            # FILESYSTEM, S3, GCS, AZURE, or a provider given with WithCAS
//	config: {...}       # the provider's objstore config
//	prefix: some/prefix # optional; applies to data and manifest alike
//
// FILESYSTEM uses fsstore on the same directory, and its data bucket is
// NewDurableFilesystem (objstore's, with an Upload that fsyncs the batch and
// renames it into place before returning); S3, GCS and AZURE use s3store,
// gcsstore and azurestore from the same config; other providers need a CAS
// opener given to Open with WithCAS (no global registry, so callers and
// tests cannot affect each other).
package bucket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/client"
	"gopkg.in/yaml.v3"

	"github.com/bucketq/bucketq/manifest/cas"
	"github.com/bucketq/bucketq/manifest/cas/fsstore"
	"github.com/bucketq/bucketq/manifest/cas/s3store"
)

// CASOpener opens the cas.Store of one provider. It receives the whole
// objstore client YAML (type, config, prefix) and must IGNORE the prefix:
// Open applies it to every store the same way objstore.PrefixedBucket does.
type CASOpener func(ctx context.Context, confYAML []byte) (cas.Store, error)

// builtin are the providers with a manifest store: FILESYSTEM (rename
// under a lock file), S3 (If-Match / If-None-Match), GCS (generation
// preconditions) and AZURE (ETag conditions). It is never modified; a
// caller adds or replaces one for its own Open calls with WithCAS.
var builtin = map[string]CASOpener{
	string(objstore.FILESYSTEM): FilesystemCAS,
	string(objstore.S3):         S3CAS,
	string(objstore.GCS):        GCSCAS,
	string(objstore.AZURE):      AzureCAS,
}

// OpenOption changes one Open call.
type OpenOption func(map[string]CASOpener)

// WithCAS makes Open use open as the manifest store of provider (a type
// such as "GCS"; case-insensitive), adding a provider or replacing a
// built-in one for this call only. See CASOpener for what open receives.
func WithCAS(provider string, open CASOpener) OpenOption {
	return func(m map[string]CASOpener) { m[strings.ToUpper(provider)] = open }
}

func opener(provider string, opts []OpenOption) (CASOpener, []string) {
	m := maps.Clone(builtin)
	for _, o := range opts {
		o(m)
	}
	names := slices.Sorted(maps.Keys(m))
	return m[provider], names
}

// clientConfig is objstore's client.BucketConfig, parsed strictly so a
// misspelt key is reported by name.
type clientConfig struct {
	Type   string    `yaml:"type"`
	Config yaml.Node `yaml:"config"`
	Prefix string    `yaml:"prefix"`
}

func parse(confYAML []byte) (clientConfig, error) {
	var c clientConfig
	if len(bytes.TrimSpace(confYAML)) == 0 {
		return c, errors.New("bucket config: empty YAML; want type, config and optional prefix")
	}
	dec := yaml.NewDecoder(bytes.NewReader(confYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("bucket config: %w (allowed top-level keys: type, config, prefix)", err)
	}
	if c.Type == "" {
		return c, errors.New("bucket config: key \"type\" is missing or empty (FILESYSTEM, S3, GCS, AZURE, ...)")
	}
	return c, nil
}

// Open opens the data bucket and the manifest store described by one
// objstore client YAML. logger may be nil; opts add or replace manifest
// store providers (WithCAS).
func Open(ctx context.Context, confYAML []byte, logger *slog.Logger, opts ...OpenOption) (objstore.Bucket, cas.Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := parse(confYAML)
	if err != nil {
		return nil, nil, err
	}
	provider := strings.ToUpper(c.Type)
	open, known := opener(provider, opts)
	if open == nil {
		return nil, nil, fmt.Errorf("bucket config: type %q has no conditional-write (CAS) store for the manifest; supported types: %s", c.Type, strings.Join(known, ", "))
	}
	store, err := open(ctx, confYAML)
	if err != nil {
		return nil, nil, fmt.Errorf("bucket config (type %s): manifest store: %w", provider, err)
	}
	var bkt objstore.Bucket
	if provider == string(objstore.FILESYSTEM) {
		// objstore's own filesystem Upload does not fsync: use ours.
		var dir string
		if dir, err = filesystemDir(c); err == nil {
			bkt, err = NewDurableFilesystem(dir)
		}
		if bkt != nil {
			bkt = objstore.NewPrefixedBucket(bkt, c.Prefix)
		}
	} else {
		bkt, err = client.NewBucket(kitLogger{logger}, confYAML, "bucketq", nil)
	}
	if err != nil {
		closeStore(store)
		return nil, nil, fmt.Errorf("bucket config (type %s): data bucket: %w", provider, err)
	}
	return bkt, withPrefix(store, c.Prefix), nil
}

// OpenDir opens a FILESYSTEM bucket and its fsstore on dir (--bucket-dir).
func OpenDir(dir string) (objstore.Bucket, cas.Store, error) {
	if dir == "" {
		return nil, nil, errors.New("bucket directory is empty")
	}
	store, err := fsstore.New(dir)
	if err != nil {
		return nil, nil, err
	}
	bkt, err := NewDurableFilesystem(store.Root())
	if err != nil {
		return nil, nil, fmt.Errorf("bucket directory %q: %w", dir, err)
	}
	return bkt, store, nil
}

// FilesystemCAS is the built-in FILESYSTEM opener: fsstore on the config's
// directory.
func FilesystemCAS(_ context.Context, confYAML []byte) (cas.Store, error) {
	c, err := parse(confYAML)
	if err != nil {
		return nil, err
	}
	dir, err := filesystemDir(c)
	if err != nil {
		return nil, err
	}
	return fsstore.New(dir)
}

// filesystemDir is the directory of a FILESYSTEM config.
func filesystemDir(c clientConfig) (string, error) {
	var fc struct {
		Directory string `yaml:"directory"`
	}
	if err := c.Config.Decode(&fc); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	if fc.Directory == "" {
		return "", errors.New("config: key \"directory\" is missing or empty")
	}
	return filepath.Clean(fc.Directory), nil
}

// S3CAS is the built-in S3 opener: s3store from the same config.
func S3CAS(_ context.Context, confYAML []byte) (cas.Store, error) {
	cfg, err := s3store.ParseYAML(confYAML)
	if err != nil {
		return nil, err
	}
	cfg.Prefix = "" // Open applies the prefix
	return s3store.New(cfg)
}

func closeStore(s cas.Store) {
	if c, ok := s.(io.Closer); ok {
		_ = c.Close()
	}
}

// withPrefix maps names as objstore.NewPrefixedBucket does: a prefix of
// only slashes is no prefix, otherwise names become prefix + "/" + name.
func withPrefix(s cas.Store, prefix string) cas.Store {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return s
	}
	return &prefixed{s: s, prefix: prefix + "/"}
}

type prefixed struct {
	s      cas.Store
	prefix string
}

func (p *prefixed) Read(ctx context.Context, name string) ([]byte, cas.Version, error) {
	return p.s.Read(ctx, p.prefix+name)
}

func (p *prefixed) WriteIf(ctx context.Context, name string, data []byte, v cas.Version) (cas.Version, error) {
	return p.s.WriteIf(ctx, p.prefix+name, data, v)
}

// Close closes the underlying store if it has a Close method.
func (p *prefixed) Close() error {
	if c, ok := p.s.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// OpenReader opens a bucket to read only, from the same objstore client
// YAML as Open, for any provider objstore knows (no conditional-write store
// is needed): the source bucket of `bucketq import`. A FILESYSTEM
// directory must exist.
func OpenReader(confYAML []byte, logger *slog.Logger) (objstore.Bucket, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := parse(confYAML)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(c.Type, string(objstore.FILESYSTEM)) {
		dir, err := filesystemDir(c)
		if err != nil {
			return nil, fmt.Errorf("bucket config (type FILESYSTEM): %w", err)
		}
		bkt, err := OpenReaderDir(dir)
		if err != nil {
			return nil, err
		}
		return objstore.NewPrefixedBucket(bkt, c.Prefix), nil
	}
	bkt, err := client.NewBucket(kitLogger{logger}, confYAML, "bucketq-source", nil)
	if err != nil {
		return nil, fmt.Errorf("bucket config (type %s): %w", strings.ToUpper(c.Type), err)
	}
	return bkt, nil
}

// OpenReaderDir opens an existing directory as a bucket to read.
func OpenReaderDir(dir string) (objstore.Bucket, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("bucket directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("bucket directory %q is not a directory", dir)
	}
	return NewDurableFilesystem(dir)
}
